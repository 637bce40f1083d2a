/** The `cowbell` command (bin/cowbell runs this file on Node 24). */
import { runCli } from './run.ts';
import { hasTerminal, readSecretFromTerminal } from './terminal-secret.ts';

process.exitCode = await runCli(process.argv.slice(2), {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  ...(hasTerminal() ? { readSecret: readSecretFromTerminal } : {}),
});
