import { parseArgs } from 'node:util';
import { UsageError, type Command, type ParsedArgs } from './command.ts';

/** Parses a command's arguments strictly: unknown options and wrong positional counts are usage errors. */
export function parseCommandArgs(command: Command, argv: string[]): ParsedArgs {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: command.options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(argumentError(command, error));
  }
  const count = parsed.positionals.length;
  if (count < command.positionals.min) throw new UsageError(`${command.name}: missing argument (usage: cowbell ${command.name} ${command.usage})`);
  if (count > command.positionals.max) throw new UsageError(`${command.name}: too many arguments (usage: cowbell ${command.name} ${command.usage})`);
  return { values: parsed.values, positionals: parsed.positionals };
}

/** Node's parseArgs message in a command's words: its own suggests `--` (with an unbalanced quote), no help for a qemu-img option Cowbell lacks. */
function argumentError(command: Command, error: unknown): string {
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  const option = /^Unknown option '([^']*)'/.exec(message)?.[1];
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option !== undefined) {
    return `${command.name}: unknown option ${option} (cowbell ${command.name} --help lists its options; a file name starting with - goes after --)`;
  }
  return `${command.name}: ${message}`;
}

export function flag(args: ParsedArgs, name: string): boolean {
  return args.values[name] === true;
}

export function option(args: ParsedArgs, name: string): string | undefined {
  const value = args.values[name];
  return typeof value === 'string' ? value : undefined;
}

/** qemu-img's `--output=json|human`, or Cowbell's `--json`: json or human (human when neither is given). */
export function outputForm(args: ParsedArgs, command: string): 'json' | 'human' {
  const output = option(args, 'output') ?? (flag(args, 'json') ? 'json' : 'human');
  if (output !== 'json' && output !== 'human') throw new UsageError(`${command}: --output must be json or human, not ${output}`);
  return output;
}

/** `-f FORMAT` where only qcow2 is read (qemu-img's scripts pass `-f qcow2`): a usage error for any other. */
export function refuseFormatOtherThanQcow2(args: ParsedArgs, command: string): void {
  const format = option(args, 'format');
  if (format !== undefined && format !== 'qcow2') throw new UsageError(`${command}: Cowbell reads qcow2 images here, not ${format}`);
}
