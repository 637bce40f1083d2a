/**
 * Where the running command line lives: from its TypeScript sources, or from the bundle
 * (scripts/build-cli.ts) whose entry sets the helper threads' modules to the bundled ones (the
 * engine's defaults name the source files, which a bundle does not ship next to it); and how long
 * a rewrite waits for those threads to start (HELPER_START_MS unless the environment says).
 */
export const cliRuntime: { compressWorker: URL | undefined; earlyVerifyWorker: URL | undefined; helperStartMs: number | undefined } = {
  compressWorker: undefined,
  earlyVerifyWorker: undefined,
  helperStartMs: undefined,
};

/** Tests on a loaded machine, where a thread can take longer than HELPER_START_MS to start, set it to see the threads' work without racing that bound. */
export const HELPER_START_VARIABLE = 'COWBELL_HELPER_START_MS';

/** The wait a positive whole number in `value` (the environment variable) asks for; undefined otherwise. */
export function helperStartFrom(value: string | undefined): number | undefined {
  if (value === undefined || !/^[1-9]\d{0,6}$/.test(value)) return undefined;
  return Number(value);
}
