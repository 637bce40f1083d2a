/** `npm start [-- IMAGE...]`: the desktop app (Electron's binary fetched by its own installer on first start), or browser mode where it cannot be had. */
import { spawn } from 'node:child_process';
import { ensureBuilt } from './lib/build.ts';
import { runBrowserMode } from './lib/browser-mode.ts';
import { ensureElectronBinary } from './lib/electron-binary.ts';
import { fail } from './lib/fail.ts';
import { parseLaunchOptions } from './lib/options.ts';
import { projectPath } from './lib/project.ts';

try {
  const options = parseLaunchOptions(process.argv.slice(2));
  if (options.build) ensureBuilt();
  const electron = ensureElectronBinary();
  if (electron.binary === null) {
    console.log(`No desktop window: Electron's binary could not be installed (${electron.reason}); starting browser mode instead.`);
    await runBrowserMode(options);
  } else {
    const child = spawn(electron.binary, [projectPath(), '--', ...options.images], { stdio: 'inherit' });
    child.on('exit', (code, signal) => process.exit(code ?? (signal === null ? 0 : 1)));
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
  }
} catch (error) {
  fail(error);
}
