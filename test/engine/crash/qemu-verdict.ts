/**
 * `qemu-img check` as the final referee of a crash state. Its JSON only counts corruptions, so
 * its messages (stderr) say which kind each one is: a COPIED flag *missing* on a cluster whose
 * refcount is 1 is harmless (it costs one extra copy on the next write); every other error — a
 * COPIED flag on a shared cluster, a refcount below its references, an unreadable table — is not.
 * Leaks are allowed.
 */
import { imageOpts, secret } from '../../helpers/encrypted-images.ts';
import { qemuImg } from '../../helpers/qemu.ts';

export interface QemuVerdict {
  code: number;
  corruptions: number;
  leaks: number;
  checkErrors: number;
  /** Messages of corruptions that are not the harmless missing-COPIED kind. */
  harmful: string[];
  harmlessCopiedMissing: number;
  output: string;
}

const COPIED_MESSAGE = /^ERROR OFLAG_COPIED (?:data|L2) cluster: (?:l1_index=\d+ l1_entry|l2_entry)=([0-9a-f]+) refcount=(\d+)/;
const COPIED_BIT = 1n << 63n;

export function classifyCheckMessages(stderr: string): { harmful: string[]; harmlessCopiedMissing: number } {
  const harmful: string[] = [];
  let harmlessCopiedMissing = 0;
  for (const line of stderr.split('\n')) {
    const text = line.trim();
    if (text === '' || text.startsWith('Leaked cluster')) continue;
    const copied = COPIED_MESSAGE.exec(text);
    if (copied !== null) {
      const entry = BigInt(`0x${copied[1] ?? '0'}`);
      const refcount = Number(copied[2]);
      if ((entry & COPIED_BIT) === 0n && refcount === 1) harmlessCopiedMissing++;
      else harmful.push(text);
      continue;
    }
    harmful.push(text);
  }
  return { harmful, harmlessCopiedMissing };
}

/** qemu-img check of the image; an encrypted one's with its passphrase (qemu-img cannot check it without). */
export async function qemuVerdict(imagePath: string, passphrase?: string): Promise<QemuVerdict> {
  return qemuVerdictOf(passphrase === undefined ? ['-f', 'qcow2', imagePath] : [...secret('sec0', passphrase), '--image-opts', imageOpts(imagePath, 'sec0')]);
}

/** qemu-img check of the image `opened` names to qemu-img (its file and format, or secrets and --image-opts). */
export async function qemuVerdictOf(opened: string[]): Promise<QemuVerdict> {
  const result = await qemuImg(['check', '--output=json', ...opened], { okCodes: [0, 1, 2, 3] });
  let report: { corruptions?: number; leaks?: number; 'check-errors'?: number } = {};
  try {
    report = JSON.parse(result.stdout) as typeof report;
  } catch {
    report = { 'check-errors': 1 };
  }
  const { harmful, harmlessCopiedMissing } = classifyCheckMessages(result.stderr);
  const corruptions = report.corruptions ?? 0;
  const checkErrors = report['check-errors'] ?? 0;
  // A corruption qemu-img counted but we could not attribute to a harmless message is harmful.
  if (corruptions > harmlessCopiedMissing && harmful.length === 0) harmful.push(`${corruptions - harmlessCopiedMissing} corruption(s) without a recognised message`);
  if (checkErrors > 0 || result.code === 1) harmful.push(`qemu-img could not check the image (exit ${result.code}, ${checkErrors} check errors)`);
  return { code: result.code, corruptions, leaks: report.leaks ?? 0, checkErrors, harmful, harmlessCopiedMissing, output: result.stdout + result.stderr };
}

/** Clean: nothing at all to report (no leaks, no corruptions of any kind). */
export function isClean(verdict: QemuVerdict): boolean {
  return verdict.code === 0 && verdict.corruptions === 0 && verdict.leaks === 0 && verdict.checkErrors === 0;
}
