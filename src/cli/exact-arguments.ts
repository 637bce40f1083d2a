/**
 * Node decodes the command line as UTF-8 and puts U+FFFD where its bytes are not UTF-8 (a Latin-1
 * snapshot name or file name typed in a shell): the byte is lost, and the argument names something
 * else — `snapshot delete IMG $'caf\xe9'` deleted a snapshot literally named "caf\uFFFD", create and
 * rename stored the replacement character, and a path would lead to another file whose name holds a
 * real U+FFFD. Such an argument is refused (exit 2), nothing done. Whether an argument's U+FFFD was
 * typed as such (its UTF-8 bytes, taken as they are) is told from the command line's own bytes:
 * /proc/self/cmdline on Linux, or what bin/cowbell passes on when it starts a second Node
 * (COWBELL_ARGUMENT_BYTES); where they cannot be had, any U+FFFD is refused.
 *
 * Such arguments are refused rather than read exactly: most of the engine's file calls take a path
 * as a string, which Node encodes back with U+FFFD — an exact path reached another file.
 */
import { UsageError } from './command.ts';

const REPLACEMENT = '\uFFFD';
/** Set by bin/cowbell for the Node it starts: the original arguments' bytes, each base64, joined by ','. */
export const ARGUMENT_BYTES_VARIABLE = 'COWBELL_ARGUMENT_BYTES';

/** The command's arguments (process.argv after the script); throws UsageError for one whose bytes are not UTF-8. */
export function exactArguments(argv: readonly string[], readArguments: (count: number) => Uint8Array[] | null = originalArguments): string[] {
  if (!argv.some((argument) => argument.includes(REPLACEMENT))) return [...argv];
  const raw = readArguments(argv.length);
  argv.forEach((argument, index) => {
    if (!argument.includes(REPLACEMENT)) return;
    const bytes = raw?.[index];
    if (bytes === undefined || !isUtf8(bytes)) {
      throw new UsageError(
        `argument ${index + 1} holds bytes that are not UTF-8, which Cowbell cannot take exactly (Node reads them as "\uFFFD", another name): name a snapshot by its id (snapshot.id=ID), a file by a name or link in UTF-8`,
      );
    }
  });
  return [...argv];
}

const strict = new TextDecoder('utf-8', { fatal: true });

function isUtf8(bytes: Uint8Array): boolean {
  try {
    strict.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** The last `count` arguments as the process was given them, or null where they cannot be had. */
function originalArguments(count: number): Uint8Array[] | null {
  const passed = process.env[ARGUMENT_BYTES_VARIABLE];
  if (passed !== undefined) {
    const parts = passed === '' ? [] : passed.split(',').map((part) => new Uint8Array(Buffer.from(part, 'base64')));
    return parts.length === count ? parts : null;
  }
  const fs = process.getBuiltinModule?.('node:fs');
  let bytes: Uint8Array;
  try {
    if (fs === undefined) return null;
    bytes = new Uint8Array(fs.readFileSync('/proc/self/cmdline'));
  } catch {
    return null;
  }
  const parts = splitNul(bytes);
  // Node's own options are not in process.argv; the command's arguments are the command line's last ones.
  return parts.length >= count ? parts.slice(parts.length - count) : null;
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
