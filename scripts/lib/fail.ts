/** One line on stderr and a failing exit code; no stack trace for an expected failure. */
export function fail(error: unknown): never {
  const message = error instanceof Error ? error.message : String(error);
  console.error(`cowbell: ${message}`);
  process.exit(1);
}
