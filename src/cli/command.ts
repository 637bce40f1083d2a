import type { ParseArgsOptionsConfig } from 'node:util';

/** Where a command writes; the real one is the process's streams, tests collect the text. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  /**
   * Asks for a secret on the terminal without echoing it (passphrases): absent when there is no
   * terminal to ask on. Resolves with its UTF-8 bytes.
   */
  readSecret?(prompt: string): Promise<Uint8Array>;
  /**
   * Why standard output could not be written, once it could not (a full disk, an I/O error behind
   * a redirection); null while it can. Writing goes on regardless: a command finishes its work.
   */
  outputFailure?(): Error | null;
}

export type OptionValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

export interface ParsedArgs {
  values: OptionValues;
  positionals: string[];
}

/** One `cowbell` subcommand; each lives in its own file under commands/. */
export interface Command {
  name: string;
  /** One line for `cowbell --help`. */
  summary: string;
  /** The argument part of the usage line, e.g. `[--json] IMAGE`. */
  usage: string;
  /** More lines for `cowbell NAME --help` (what an option does, exit codes). */
  help?: string;
  options: ParseArgsOptionsConfig;
  positionals: { min: number; max: number };
  /** What `-o help` (or `-o ?`) prints, for a command that takes `-o`: the options it takes, as qemu-img lists them. */
  optionsHelp?: string;
  /** Rewrites the raw arguments before they are parsed (resize: a `-10G` size is not an option). */
  prepareArgv?(argv: string[]): string[];
  /** Resolves with the exit code; throws a Qcow2Error or UsageError on failure. */
  run(args: ParsedArgs, io: CliIo): Promise<number>;
  /** The exit code of a wrong command line, where 2 means something else (check: corruptions). */
  usageExitCode?: number;
  /**
   * Whether what it prints is its result (info, map, a listing), so that output it could not write
   * fails it; a command that changes or writes files keeps its exit code then (its work is done).
   */
  printsItsResult?(args: ParsedArgs): boolean;
}

/** The command line itself is wrong: exit code 2, with a pointer to the usage. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/**
 * The copy was made, but not all of it: `convert --rescue` wrote zeros for guest ranges it could not
 * read; `copy-out` skipped entries of a folder it could not read.
 */
export const EXIT_PARTIAL = 3;
