/**
 * How hard a new passphrase is to guess, by zxcvbn-ts (Dropbox's zxcvbn in TypeScript): it matches
 * the passphrase against lists of common passwords, English words and names, keyboard patterns,
 * dates, repeats and l33t spellings, and scores what is left 0 to 4. Its dictionaries are large, so
 * they load on first use, as their own chunk, and only into the page that asks.
 */
export type StrengthScore = 0 | 1 | 2 | 3 | 4;

export interface PassphraseStrength {
  score: StrengthScore;
  /** "Very weak" … "Very strong". */
  label: string;
  /** What makes it guessable, when something does. */
  warning: string | null;
  suggestions: string[];
}

export type StrengthEstimator = (passphrase: string, userInputs?: readonly string[]) => PassphraseStrength;

export const STRENGTH_LABELS: Record<StrengthScore, string> = { 0: 'Very weak', 1: 'Weak', 2: 'Fair', 3: 'Strong', 4: 'Very strong' };

/** Below this a passphrase is shown as a worry: an attacker with the file could guess it. */
export const ADVISED_SCORE: StrengthScore = 3;

let loading: Promise<StrengthEstimator> | null = null;

/** The estimator, loaded once; later calls share the first load. */
export function loadStrengthEstimator(): Promise<StrengthEstimator> {
  loading ??= buildEstimator().catch((error: unknown) => {
    loading = null;
    throw error;
  });
  return loading;
}

async function buildEstimator(): Promise<StrengthEstimator> {
  const [{ ZxcvbnFactory }, common, english] = await Promise.all([import('@zxcvbn-ts/core'), import('@zxcvbn-ts/language-common'), import('@zxcvbn-ts/language-en')]);
  const zxcvbn = new ZxcvbnFactory({
    dictionary: { ...common.dictionary, ...english.dictionary },
    graphs: common.adjacencyGraphs,
    translations: english.translations,
    useLevenshteinDistance: true,
  });
  return (passphrase, userInputs = []) => {
    const result = zxcvbn.check(passphrase, [...userInputs]);
    const score = result.score as StrengthScore;
    return { score, label: STRENGTH_LABELS[score], warning: result.feedback.warning || null, suggestions: result.feedback.suggestions };
  };
}
