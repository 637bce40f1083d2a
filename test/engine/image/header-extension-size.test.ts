/**
 * A header extension whose length runs past the header area (the first cluster, or the backing
 * file name where there is one) is refused exactly where qemu-img 7.2 refuses it ("Header extension
 * too large"), and accepted where qemu-img opens the image, on images qemu-img made and then poked.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { readImageInfo } from '../../../src/shared/qcow2/image/info.ts';
import { readU64, writeU64 } from '../../helpers/qcow2-poke.ts';
import { qemuImg, tempDir, type TempDir } from '../../helpers/qemu.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

const UNKNOWN_EXTENSION = 0x1234_5678n;

interface Variant {
  name: string;
  createOptions: string;
  backing: boolean;
}

const variants: Variant[] = [
  { name: 'v3, 64 KiB clusters', createOptions: 'compat=1.1,cluster_size=65536', backing: false },
  { name: 'v3, 512-byte clusters', createOptions: 'compat=1.1,cluster_size=512', backing: false },
  { name: 'v2, 4 KiB clusters', createOptions: 'compat=0.10,cluster_size=4096', backing: false },
  { name: 'v3 with a backing file (the area ends at its name)', createOptions: 'compat=1.1,cluster_size=4096', backing: true },
];

/** Where the extension area's end marker is, and where the area must end (the backing file name, or the cluster's end). */
function extensionArea(image: string): { endMarker: number; areaEnd: number } {
  const version = Number(readU64(image, 0) & 0xffff_ffffn);
  const backingOffset = Number(readU64(image, 8));
  const clusterBits = Number(readU64(image, 16) & 0xffff_ffffn);
  const headerLength = version === 2 ? 72 : Number(readU64(image, 96) & 0xffff_ffffn);
  let position = headerLength;
  for (;;) {
    const word = readU64(image, position);
    if (word >> 32n === 0n) break;
    position += 8 + Math.ceil(Number(word & 0xffff_ffffn) / 8) * 8;
  }
  return { endMarker: position, areaEnd: backingOffset !== 0 ? backingOffset : 2 ** clusterBits };
}

async function qemuOpens(image: string): Promise<{ opens: boolean; output: string }> {
  const result = await qemuImg(['info', image], { okCodes: [0, 1] });
  return { opens: result.code === 0, output: result.stderr };
}

function cowbellOpens(image: string): { opens: boolean; code?: string; message?: string } {
  try {
    readImageInfo(image);
    return { opens: true };
  } catch (error) {
    if (error instanceof Qcow2Error) return { opens: false, code: error.code, message: error.message };
    throw error;
  }
}

describe.each(variants)('$name', (variant) => {
  it('opens or refuses an unknown extension of each length as qemu-img does', async () => {
    const base = folder.file(`base-${variant.name.length}.qcow2`);
    if (variant.backing) await qemuImg(['create', '-q', '-f', 'qcow2', base, '1M']);
    const outcomes: string[] = [];
    let refusals = 0;
    // Relative to the room left for the data: exactly fitting, one and eight bytes over, and lengths that overflow 32-bit sums.
    for (const over of [-8, 0, 1, 8, 'huge', 'max'] as const) {
      const image = folder.file(`poked-${variant.name.length}-${String(over)}.qcow2`);
      const create = ['create', '-q', '-f', 'qcow2', '-o', variant.createOptions];
      if (variant.backing) create.push('-b', base, '-F', 'qcow2');
      await qemuImg([...create, image, '1M']);
      const { endMarker, areaEnd } = extensionArea(image);
      const room = areaEnd - endMarker - 8;
      const length = over === 'huge' ? 0x7fff_ffff : over === 'max' ? 0xffff_ffff : Math.max(0, room + over);
      writeU64(image, endMarker, (UNKNOWN_EXTENSION << 32n) | BigInt(length));
      const qemu = await qemuOpens(image);
      const cowbell = cowbellOpens(image);
      if (!qemu.opens) {
        refusals++;
        expect(qemu.output).toContain('Header extension too large');
      }
      outcomes.push(`${String(over)}: qemu ${qemu.opens ? 'opens' : 'refuses'}, cowbell ${cowbell.opens ? 'opens' : `refuses (${cowbell.code})`}`);
      expect(cowbell.opens, outcomes.at(-1)).toBe(qemu.opens);
      if (!cowbell.opens) expect(cowbell.code).toBe('CORRUPT');
      if (!cowbell.opens) expect(cowbell.message).toMatch(/too large/);
    }
    expect(refusals, outcomes.join('\n')).toBeGreaterThanOrEqual(3);
  });
});
