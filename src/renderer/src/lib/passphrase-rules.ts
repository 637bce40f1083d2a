/** What a new passphrase must be before a dialog sends it: typed, typed again the same, and no longer than the contract takes. */

/** The contract's limit (Passphrase in contract.ts), in the same units: UTF-16 code units. */
export const MAX_PASSPHRASE_LENGTH = 1024;

/** Which of the two fields a problem is about: the passphrase, or its repetition. */
export type NewPassphraseField = 'passphrase' | 'repeat';

/**
 * Why the new passphrase and its repetition cannot be used yet, in words, and which field that is
 * about; null when they can. Two empty fields are not yet a problem to shout about: the action is
 * only disabled.
 */
export function newPassphraseIssue(passphrase: string, repeat: string): { field: NewPassphraseField; text: string } | null {
  if (passphrase === '' && repeat === '') return null;
  if (passphrase === '') return { field: 'passphrase', text: 'Type the new passphrase in the first field.' };
  if (passphrase.length > MAX_PASSPHRASE_LENGTH) return { field: 'passphrase', text: `A passphrase can be at most ${MAX_PASSPHRASE_LENGTH} characters long.` };
  if (passphrase.includes('\0')) return { field: 'passphrase', text: 'A passphrase cannot contain a NUL character.' };
  if (repeat === '') return { field: 'repeat', text: 'Type the new passphrase again, to be sure of it.' };
  if (passphrase !== repeat) return { field: 'repeat', text: 'The two passphrases differ.' };
  return null;
}

export function newPassphraseProblem(passphrase: string, repeat: string): string | null {
  return newPassphraseIssue(passphrase, repeat)?.text ?? null;
}

/** Whether the fields hold a passphrase the dialog may send. */
export function newPassphraseReady(passphrase: string, repeat: string): boolean {
  return passphrase !== '' && newPassphraseProblem(passphrase, repeat) === null;
}
