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
