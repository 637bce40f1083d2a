import { readFileSync } from 'node:fs';
import { Qcow2Error } from '../shared/qcow2/errors.ts';
import { parseCommandArgs } from './args.ts';
import { StoppedBySignal } from './cancellable-job.ts';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError, type CliIo, type Command } from './command.ts';
import { commands, type CommandEntry } from './commands/index.ts';
import { printable, printableMessage, terminalSafe } from './printable.ts';

const OUTPUT_LAYOUT = new Set(['\n', '\t']);

/** What a command prints, with no control character a name inside the disk could have brought (printable.ts). */
function safeForTerminal(io: CliIo): CliIo {
  return {
    out: (text) => io.out(terminalSafe(text, OUTPUT_LAYOUT)),
    // A progress line ends in a carriage return, to be written over; one anywhere else could hide what precedes it.
    err: (text) => io.err(text.endsWith('\r') ? `${terminalSafe(text.slice(0, -1), OUTPUT_LAYOUT)}\r` : terminalSafe(text, OUTPUT_LAYOUT)),
    // Asked only when needed: finding whether there is a terminal loads Node's tty and net modules.
    get readSecret() {
      return io.readSecret;
    },
  };
}

/** Runs one `cowbell` command line and resolves with its exit code; never throws. */
export async function runCli(argv: string[], io: CliIo, table: readonly CommandEntry[] = commands): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.err(await usage(table));
    return EXIT_USAGE;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    io.out(await usage(table));
    return EXIT_OK;
  }
  if (name === '--version' || name === '-V') {
    io.out(`cowbell ${version()}\n`);
    return EXIT_OK;
  }
  const entry = table.find((candidate) => candidate.name === name);
  if (entry === undefined) {
    io.err(`cowbell: unknown command '${printable(name)}' (try 'cowbell --help')\n`);
    return EXIT_USAGE;
  }
  let command: Command | null = null;
  try {
    command = await entry.load();
    // After `--` every argument is a name (a snapshot called --help, a file named -h).
    const options = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
    if (options.includes('--help') || options.includes('-h')) {
      io.out(`usage: cowbell ${command.name} ${command.usage}\n  ${command.summary}\n${command.help ?? ''}`);
      return EXIT_OK;
    }
    // `-o help` lists the options before anything else is asked for (qemu-img create -f qcow2 -o help needs no file name).
    if (command.optionsHelp !== undefined && optionValues(options).some((value) => value.split(',').some((part) => part === 'help' || part === '?'))) {
      io.out(command.optionsHelp);
      return EXIT_OK;
    }
    const args = parseCommandArgs(command, command.prepareArgv?.(rest) ?? rest);
    const code = await command.run(args, safeForTerminal(io));
    return afterLostOutput(io, code, command.printsItsResult?.(args) ?? false);
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`cowbell: ${printableMessage(error.message)}\n`);
      return command?.usageExitCode ?? EXIT_USAGE;
    }
    if (error instanceof Qcow2Error) {
      io.err(`cowbell: ${printableMessage(error.message)}\n`);
      return afterLostOutput(io, error instanceof StoppedBySignal ? error.exitCode : EXIT_FAILURE, false, false);
    }
    const detail = error instanceof Error ? error.message : String(error);
    io.err(`cowbell: internal error: ${printableMessage(detail)}\n`);
    return EXIT_FAILURE;
  }
}

/**
 * The exit code once the command is done, given what became of its standard output: lost output
 * fails a command whose output is its result (info > /dev/full), and is only said for one whose
 * work is done (a snapshot made, a file written: a script must not think it was not, and do it
 * again). A command that failed (`workDone` false) keeps its failure, and says nothing of work done.
 */
function afterLostOutput(io: CliIo, code: number, printsItsResult: boolean, workDone = true): number {
  const failure = io.outputFailure?.() ?? null;
  if (failure === null) return code;
  io.err(`cowbell: ${printableMessage(failure.message)}${printsItsResult || !workDone ? '' : '; the command did its work, only what it printed is lost'}\n`);
  return printsItsResult && code === EXIT_OK ? EXIT_FAILURE : code;
}

async function usage(entries: readonly CommandEntry[]): Promise<string> {
  const table: Command[] = await Promise.all(entries.map((entry) => entry.load()));
  const width = Math.max(...table.map((command) => command.name.length));
  const lines = table.map((command) => `  ${command.name.padEnd(width)}  ${command.summary}`);
  return `usage: cowbell COMMAND [OPTIONS] ARGS\n\nCommands:\n${lines.join('\n')}\n\nRun 'cowbell COMMAND --help' for a command's options.\n`;
}

function version(): string {
  try {
    const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof manifest.version === 'string' ? manifest.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The values given to `-o`/`--options` in raw arguments: `-o V`, `-oV`, `--options V`, `--options=V`. */
function optionValues(argv: readonly string[]): string[] {
  const values: string[] = [];
  for (let index = 0; index < argv.length; index++) {
    const argument = argv[index] ?? '';
    if (argument === '-o' || argument === '--options') {
      const value = argv[index + 1];
      if (value !== undefined) values.push(value);
      index++;
    } else if (argument.startsWith('--options=')) values.push(argument.slice('--options='.length));
    else if (argument.startsWith('-o') && !argument.startsWith('--')) values.push(argument.slice(2));
  }
  return values;
}
