/** `npm run serve [-- --port N] [--no-build] [IMAGE...]`: Cowbell in a browser, on 127.0.0.1. */
import { ensureBuilt } from './lib/build.ts';
import { runBrowserMode } from './lib/browser-mode.ts';
import { fail } from './lib/fail.ts';
import { parseLaunchOptions } from './lib/options.ts';

try {
  const options = parseLaunchOptions(process.argv.slice(2));
  if (options.build) ensureBuilt();
  await runBrowserMode(options);
} catch (error) {
  fail(error);
}
