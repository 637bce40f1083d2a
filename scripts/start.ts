/** `npm start [-- IMAGE...]`: the desktop app, or browser mode where Electron's binary is missing. */
import { spawn } from 'node:child_process';
import { ensureBuilt } from './lib/build.ts';
import { runBrowserMode } from './lib/browser-mode.ts';
import { electronBinary } from './lib/electron-binary.ts';
import { fail } from './lib/fail.ts';
import { parseLaunchOptions } from './lib/options.ts';
import { projectPath } from './lib/project.ts';

try {
  const options = parseLaunchOptions(process.argv.slice(2));
  if (options.build) ensureBuilt();
  const binary = electronBinary();
  if (binary === null) {
    console.log("Electron's binary is not installed here; starting browser mode instead.");
    await runBrowserMode(options);
  } else {
    const child = spawn(binary, [projectPath(), '--', ...options.images], { stdio: 'inherit' });
    child.on('exit', (code, signal) => process.exit(code ?? (signal === null ? 0 : 1)));
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
  }
} catch (error) {
  fail(error);
}
