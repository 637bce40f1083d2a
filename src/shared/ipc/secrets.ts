/**
 * Passphrases in job arguments: found by the contract's SECRET_ARGUMENTS keys, and scrubbed from
 * any text that leaves the job (an error message, a log line), whatever produced that text.
 */
import { SECRET_ARGUMENTS } from './contract.ts';

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
