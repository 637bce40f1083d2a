/**
 * Passphrases in job arguments: found under the SECRET_ARGUMENTS keys, and scrubbed from any text
 * that leaves the job (an error message, a log line), whatever produced that text. Plain code
 * only: the worker chunk imports this, and must not pull in the contract's zod.
 */
/** The job arguments that hold passphrases (contract.ts's Passphrase); messages are scrubbed of their values. */
export const SECRET_ARGUMENTS = ['passphrase', 'newPassphrase'] as const;
/** The job argument that lists passphrases of encrypted volumes inside the guest: each entry's `passphrase` is a secret too. */
export const VOLUME_PASSPHRASES_ARGUMENT = 'volumePassphrases';

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
  const volumes = Object.hasOwn(record, VOLUME_PASSPHRASES_ARGUMENT) ? record[VOLUME_PASSPHRASES_ARGUMENT] : undefined;
  if (Array.isArray(volumes)) {
    for (const entry of volumes as unknown[]) {
      const value = typeof entry === 'object' && entry !== null && Object.hasOwn(entry, 'passphrase') ? (entry as Record<string, unknown>).passphrase : undefined;
      if (typeof value === 'string' && value !== '') found.push(value);
    }
  }
  // Longest first, so a passphrase that contains another is replaced whole.
  return found.sort((a, b) => b.length - a.length);
}

/**
 * Shorter secrets are left alone: a string of a few characters turns up in any message's own words
 * ("a", "pass"), and marking each place it does would give the passphrase away instead of hiding it.
 */
export const SHORTEST_SCRUBBED = 8;

/**
 * `text` with every occurrence of each secret (of SHORTEST_SCRUBBED characters or more) replaced by
 * a placeholder. Placeholders already there (text scrubbed before, on its way out) stay whole.
 */
export function scrubSecrets(text: string, secrets: readonly string[]): string {
  const scrubbed = secrets.filter((secret) => secret.length >= SHORTEST_SCRUBBED);
  if (scrubbed.length === 0) return text;
  // Each secret is looked for between the placeholders, never inside one put there before it.
  return scrubbed.reduce((done, secret) => done.split(REDACTED).map((part) => part.split(secret).join(REDACTED)).join(REDACTED), text);
}
