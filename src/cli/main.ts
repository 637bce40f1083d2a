/** The `cowbell` command: bin/cowbell runs its bundle (out/cli/cowbell.mjs), or this file on Node 24. */
import { runCli } from './run.ts';
import { hasTerminal, readSecretFromTerminal } from './terminal-secret.ts';
import { cliRuntime } from './runtime.ts';

// Bundled, this entry is out/cli/cowbell.mjs and the compressing thread's module sits beside it.
if (import.meta.url.endsWith('.mjs')) cliRuntime.compressWorker = new URL('./compress-worker.mjs', import.meta.url);

process.exitCode = await runCli(process.argv.slice(2), {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  // Asked only when a passphrase is wanted: process.stdin makes its stream (milliseconds) when first touched.
  get readSecret() {
    return hasTerminal() ? readSecretFromTerminal : undefined;
  },
});
