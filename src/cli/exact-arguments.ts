/**
 * Node decodes the command line as UTF-8 and puts U+FFFD where its bytes are not UTF-8 (a Latin-1
 * snapshot name typed in a shell): the byte is lost, and the argument names something else —
 * `snapshot delete IMG $'caf\xe9'` deleted a snapshot literally named "caf\uFFFD", and create,
 * rename and rebase -u stored the replacement character. On Linux the bytes themselves are in
 * /proc/self/cmdline: such an argument is read from them without loss (format/byte-string.ts: each
 * stray byte a lone surrogate, as the engine decodes names in the file), so it names exactly what
 * was typed. Where the bytes cannot be had, the argument is refused rather than taken for another.
 */
import { decodeByteString } from '../shared/qcow2/format/byte-string.ts';
import { UsageError } from './command.ts';

const REPLACEMENT = '\uFFFD';

/** The command's arguments (process.argv after the script) as typed; throws UsageError for one that cannot be recovered. */
export function exactArguments(argv: readonly string[], readCommandLine: () => Uint8Array | null = procCommandLine): string[] {
  if (!argv.some((argument) => argument.includes(REPLACEMENT))) return [...argv];
  const raw = readCommandLine();
  const parts = raw === null ? [] : splitNul(raw);
  // Node's own options are not in process.argv; the command's arguments are the command line's last ones.
  const tail = parts.slice(Math.max(0, parts.length - argv.length));
  return argv.map((argument, index) => {
    if (!argument.includes(REPLACEMENT)) return argument;
    const bytes = tail.length === argv.length ? tail[index] : undefined;
    // The bytes must be the ones Node decoded (a U+FFFD typed as such is UTF-8, and stays).
    if (bytes === undefined || Buffer.from(bytes).toString('utf8') !== argument) {
      throw new UsageError(`argument ${index + 1} holds bytes that are not UTF-8, which Cowbell cannot read exactly here; name a snapshot by its id (snapshot.id=ID)`);
    }
    return decodeByteString(bytes);
  });
}

function splitNul(bytes: Uint8Array): Uint8Array[] {
  const parts: Uint8Array[] = [];
  let start = 0;
  for (let at = 0; at < bytes.length; at++) {
    if (bytes[at] !== 0) continue;
    parts.push(bytes.subarray(start, at));
    start = at + 1;
  }
  if (start < bytes.length) parts.push(bytes.subarray(start));
  return parts;
}

function procCommandLine(): Uint8Array | null {
  const fs = process.getBuiltinModule?.('node:fs');
  try {
    return fs === undefined ? null : new Uint8Array(fs.readFileSync('/proc/self/cmdline'));
  } catch {
    return null;
  }
}
