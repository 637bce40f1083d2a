import { runCli } from '../../src/cli/run.ts';

export interface CliRun {
  code: number;
  out: string;
  err: string;
}

/** `cowbell ARGV…` in this process, with what it printed on stdout and stderr. */
export async function run(...argv: string[]): Promise<CliRun> {
  let out = '';
  let err = '';
  const code = await runCli(argv, { out: (text) => (out += text), err: (text) => (err += text) });
  return { code, out, err };
}

export interface PromptedRun extends CliRun {
  /** The prompts the command put to the stand-in terminal, in order. */
  prompts: string[];
}

/** `cowbell ARGV…` in this process; `typed`: what a terminal gives at each prompt, in order (none: no terminal). */
export async function runWithPrompts(argv: string[], typed?: string[]): Promise<PromptedRun> {
  let out = '';
  let err = '';
  const prompts: string[] = [];
  const answers = typed === undefined ? undefined : [...typed];
  const readSecret =
    answers === undefined
      ? undefined
      : async (prompt: string): Promise<Uint8Array> => {
          prompts.push(prompt);
          const answer = answers.shift();
          if (answer === undefined) throw new Error(`unexpected prompt: ${prompt}`);
          return new TextEncoder().encode(answer);
        };
  const code = await runCli(argv, { out: (text) => (out += text), err: (text) => (err += text), ...(readSecret === undefined ? {} : { readSecret }) });
  return { code, out, err, prompts };
}
