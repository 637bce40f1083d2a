/**
 * Passphrases inside a pool worker. They arrive as strings in the job's arguments (a string cannot
 * be wiped); the engine is handed UTF-8 copies this job owns, which are zeroed the moment the job
 * returns or throws, so no key-derivation input outlives the job in a buffer.
 */
const encoder = new TextEncoder();

type Secrets<T extends readonly (string | undefined)[]> = { [I in keyof T]: T[I] extends string ? Uint8Array : Uint8Array | undefined };

/** Runs a synchronous engine call with byte copies of `values`, zeroed afterwards however it ends. */
export function withSecretBytes<const T extends readonly (string | undefined)[], R>(values: T, run: (secrets: Secrets<T>) => R): R {
  const secrets = values.map((value) => (value === undefined ? undefined : encoder.encode(value)));
  try {
    const result = run(secrets as Secrets<T>);
    if (result instanceof Promise) throw new TypeError('withSecretBytes runs synchronous engine calls only');
    return result;
  } finally {
    for (const secret of secrets) secret?.fill(0);
  }
}

/** withSecretBytes for an engine call that awaits (files/ readers): the copies are zeroed once it settles. */
export async function withSecretBytesAsync<const T extends readonly (string | undefined)[], R>(values: T, run: (secrets: Secrets<T>) => Promise<R>): Promise<R> {
  const secrets = values.map((value) => (value === undefined ? undefined : encoder.encode(value)));
  try {
    return await run(secrets as Secrets<T>);
  } finally {
    for (const secret of secrets) secret?.fill(0);
  }
}
