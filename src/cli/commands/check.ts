import { checkExitCode, checkImagePath, type RepairMode } from '../../shared/qcow2/check/check.ts';
import { readBackingChain } from '../../shared/qcow2/chain/chain.ts';
import { backingProtocolProblem } from '../../shared/qcow2/image/image.ts';
import { readImageInfo } from '../../shared/qcow2/image/info.ts';
import type { CheckResult, RepairLoss } from '../../shared/qcow2/model.ts';
import { flag, option, outputForm } from '../args.ts';
import { EXIT_FAILURE, UsageError, type Command } from '../command.ts';
import { unencryptedWarning } from './info.ts';

/**
 * `cowbell check [--json] [-r leaks|all] IMAGE`, like `qemu-img check`: findings go to stderr
 * one per line, the summary to stdout; exit 0 clean, 1 the check failed, 2 corruptions remain,
 * 3 only leaked clusters remain; a wrong command line 1, as qemu-img (2 would read as corruptions).
 */
export const check: Command = {
  name: 'check',
  summary: 'check an image for refcount errors, leaks and corrupt tables; -r leaks|all repairs them',
  usage: '[--json | --output=json|human] [-r leaks|all] [-f qcow2] [-q] [-U] IMAGE',
  options: {
    json: { type: 'boolean' },
    output: { type: 'string' },
    repair: { type: 'string', short: 'r' },
    format: { type: 'string', short: 'f' },
    quiet: { type: 'boolean', short: 'q' },
    'force-share': { type: 'boolean', short: 'U' },
    help: { type: 'boolean', short: 'h' },
  },
  positionals: { min: 1, max: 1 },
  // 2 says "corruptions": a script must not take a typo for a damaged disk (qemu-img exits 1 too).
  usageExitCode: EXIT_FAILURE,
  // Without -r the report is what it was asked for (its exit code alone says less); a repair is work done.
  printsItsResult: (args) => option(args, 'repair') === undefined,
  async run(args, io) {
    const output = outputForm(args, 'check');
    const format = option(args, 'format');
    if (format !== undefined && format !== 'qcow2') throw new UsageError(`check: only qcow2 images can be checked, not ${format}`);
    const repair = option(args, 'repair');
    if (repair !== undefined && repair !== 'leaks' && repair !== 'all') throw new UsageError(`check: -r takes leaks or all, not ${repair}`);
    const imagePath = args.positionals[0] ?? '';
    const result = checkImagePath(imagePath, { repair: repair as RepairMode | undefined }, undefined, { refuseInUse: !flag(args, 'force-share') });
    // The disk's own tables are checked without its backing file; qemu-img, which opens the chain,
    // fails (exit 1) where a backing file is missing or loops, and a script takes 0 for a usable disk.
    const chainProblem = unopenableBacking(imagePath);
    if (chainProblem !== null) {
      result['check-errors'] += 1;
      result.messages.push(`ERROR the disk cannot be read as a whole: ${chainProblem}`);
    }
    // -q (qemu-img's quiet): the exit code alone says what was found; a failure still says why.
    const quiet = flag(args, 'quiet');
    if (!quiet) for (const message of result.messages) io.err(`${message}\n`);
    // A warning, not a corruption: the exit code stays qemu-img's.
    const unencrypted = unencryptedWarning(result['unencrypted-bytes'], undefined, encryptionOf(imagePath, result['unencrypted-bytes']));
    if (unencrypted !== null && !quiet) io.err(`${unencrypted}\n`);
    if (quiet) {
      // Nothing on stdout.
    } else if (output === 'json') {
      const { messages: _messages, ...report } = result;
      io.out(`${JSON.stringify(report, null, 4)}\n`);
    } else {
      io.out(describeCheck(result));
    }
    const code = checkExitCode(result);
    if (code === 1) io.err('cowbell: Check failed\n');
    return code;
  },
};

/**
 * Why the disk's backing chain cannot be opened — a missing file, a loop, a chain too long — or
 * null. A file this reader cannot read is not judged (a block device, which QEMU opens, or a
 * protocol name such as nbd:): the check of the disk itself stands.
 */
function unopenableBacking(imagePath: string): string | null {
  const chain = readBackingChain(imagePath);
  const broken = chain.files.slice(1).find((file) => file.problem !== null);
  if (broken === undefined || broken.problem === null || broken.problem.kind === 'unreadable' || backingProtocolProblem(broken.name) !== null) return null;
  return broken.problem.message;
}

/** One loss on one line: which snapshot, what of it, why. */
export function describeLoss(loss: RepairLoss): string {
  const snapshot = loss['snapshot-id'] === null ? 'a snapshot whose id and name could not be read' : `snapshot ${loss['snapshot-id']} "${loss['snapshot-name'] ?? ''}"`;
  if (loss.what === 'snapshot') return `${snapshot}: removed (${loss.reason})`;
  const start = loss['guest-offset'] ?? 0;
  const end = start + (loss.length ?? 0);
  return `${snapshot}: guest bytes ${start}-${end} now read as zeros (${loss.reason})`;
}

/** The human summary, worded as qemu-img words it. */
export function describeCheck(result: CheckResult): string {
  const lines: string[] = [];
  const leaksFixed = result['leaks-fixed'] ?? 0;
  const corruptionsFixed = result['corruptions-fixed'] ?? 0;
  if (leaksFixed > 0 || corruptionsFixed > 0) {
    lines.push(
      'The following inconsistencies were found and repaired:',
      '',
      `    ${leaksFixed} leaked clusters`,
      `    ${corruptionsFixed} corruptions`,
      '',
    );
  }
  if (result.lost !== undefined && result.lost.length > 0) {
    lines.push('Lost in the repair (broken beyond repair, as qemu-img check -r all discards it too):', ...result.lost.map((loss) => `    ${describeLoss(loss)}`), '');
  }
  if (leaksFixed > 0 || corruptionsFixed > 0) lines.push('Double checking the fixed image now...');
  const corruptions = result.corruptions ?? 0;
  const leaks = result.leaks ?? 0;
  const errors = result['check-errors'];
  if (corruptions === 0 && leaks === 0 && errors === 0) lines.push('No errors were found on the image.');
  if (corruptions > 0) lines.push('', `${corruptions} errors were found on the image.`, 'Data may be corrupted, or further writes to the image may corrupt it.');
  if (leaks > 0) lines.push('', `${leaks} leaked clusters were found on the image.`, 'This means waste of disk space, but no harm to data.');
  if (errors > 0) lines.push('', `${errors} internal errors have occurred during the check.`);
  const total = result['total-clusters'] ?? 0;
  const allocated = result['allocated-clusters'] ?? 0;
  if (total > 0 && allocated > 0) {
    const percent = (part: number, whole: number): string => printfFixed((part * 100) / whole, 2);
    lines.push(
      `${allocated}/${total} = ${percent(allocated, total)}% allocated, ${percent(result['fragmented-clusters'] ?? 0, allocated)}% fragmented, ` +
        `${percent(result['compressed-clusters'] ?? 0, allocated)}% compressed clusters`,
    );
  }
  if (result['image-end-offset'] !== undefined) lines.push(`Image end offset: ${result['image-end-offset']}`);
  return `${lines.join('\n')}\n`;
}

/** The disk's encrypt.format where the check found plaintext in it (its remedy depends on it); undefined otherwise. */
function encryptionOf(imagePath: string, unencryptedBytes: number | undefined): string | undefined {
  if (unencryptedBytes === undefined || unencryptedBytes === 0) return undefined;
  try {
    return readImageInfo(imagePath)['format-specific'].data.encrypt?.format;
  } catch {
    return undefined;
  }
}

/**
 * `value` with `digits` decimals as C's printf("%.*f") gives it (qemu-img's figures): toFixed takes
 * the larger of two equally near (2/64 = 3.125% became 3.13), printf the even one (3.12).
 */
export function printfFixed(value: number, digits: number): string {
  const scaled = value * 10 ** digits;
  const floor = Math.floor(scaled);
  if (Number.isFinite(scaled) && scaled - floor === 0.5 && floor % 2 === 0) return (floor / 10 ** digits).toFixed(digits);
  return value.toFixed(digits);
}
