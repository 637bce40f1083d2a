/**
 * Passphrases in job arguments: found under the SECRET_ARGUMENTS keys, and scrubbed from any text
 * that leaves the job (an error message, a log line), whatever produced that text. Plain code
 * only: the worker chunk imports this, and must not pull in the contract's zod.
 */
/** The job arguments that hold passphrases (contract.ts's Passphrase); messages are scrubbed of their values. */
export const SECRET_ARGUMENTS = ['passphrase', 'newPassphrase'] as const;

const REDACTED = '[passphrase]';

/** The passphrases `args` holds (also of arguments that failed validation): non-empty strings only. */
export function secretsIn(args: unknown): string[] {
  if (typeof args !== 'object' || args === null) return [];
  const record = args as Record<string, unknown>;
  const found: string[] = [];
  for (const key of SECRET_ARGUMENTS) {
    const value = Object.hasOwn(record, key) ? record[key] : undefined;
    if (typeof value === 'string' && value !== '') found.push(value);
  }
  // Longest first, so a passphrase that contains another is replaced whole.
  return found.sort((a, b) => b.length - a.length);
}

/** `text` with every occurrence of each secret replaced by a placeholder. */
export function scrubSecrets(text: string, secrets: readonly string[]): string {
  let scrubbed = text;
  for (const secret of secrets) scrubbed = scrubbed.split(secret).join(REDACTED);
  return scrubbed;
}
