/** The `cowbell` command: bin/cowbell runs its bundle (out/cli/cowbell.mjs), or this file on Node 24. */
import { EXIT_USAGE, type CliIo } from './command.ts';
import { descriptorOutput, spareOutputsTheExitSync } from './output.ts';
import { exactArguments } from './exact-arguments.ts';
import { runCli } from './run.ts';
import { hasTerminal, readSecretFromTerminal } from './terminal-secret.ts';
import { cliRuntime, HELPER_START_VARIABLE, helperStartFrom } from './runtime.ts';

// Bundled, this entry is out/cli/cowbell.mjs and the helper threads' modules sit beside it.
if (import.meta.url.endsWith('.mjs')) {
  cliRuntime.compressWorker = new URL('./compress-worker.mjs', import.meta.url);
  cliRuntime.earlyVerifyWorker = new URL('./early-verify-worker.mjs', import.meta.url);
}
cliRuntime.helperStartMs = helperStartFrom(process.env[HELPER_START_VARIABLE]);

const stdout = descriptorOutput(1);
const stderr = descriptorOutput(2);
const io: CliIo = {
  out: (text) => stdout.write(text),
  err: (text) => stderr.write(text),
  outputFailure: () => stdout.failure(),
  // Asked only when a command wants a secret: creating process.stdin to see whether it is a
  // terminal costs a command that never reads it milliseconds of start-up.
  get readSecret() {
    return hasTerminal() ? readSecretFromTerminal : undefined;
  },
};
process.exitCode = await runWithExactArguments();

/** The command, unless an argument holds bytes that are not UTF-8 (exact-arguments.ts): a usage error then, nothing done. */
async function runWithExactArguments(): Promise<number> {
  let argv: string[];
  try {
    argv = exactArguments(process.argv.slice(2));
  } catch (error) {
    io.err(`cowbell: ${(error as Error).message}\n`);
    return EXIT_USAGE;
  }
  return runCli(argv, io);
}
// The last output is written: nothing reaches the two descriptors after the command's own exit.
process.once('exit', spareOutputsTheExitSync);
