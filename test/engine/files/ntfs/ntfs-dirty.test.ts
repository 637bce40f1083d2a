/**
 * An NTFS volume Windows had mounted (VOLUME_IS_DIRTY in $Volume's VOLUME_INFORMATION: a snapshot of
 * a running Windows guest, or one not shut down cleanly) reads, with a caution: Cowbell does not
 * replay $LogFile, so changes Windows had not written home may be missing (ntfs-3g says so too).
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withFiles } from '../../../helpers/memory-guest.ts';
import { mkntfs } from '../../../helpers/ntfs-tools.ts';
import { tempDir, type TempDir } from '../../../helpers/qemu.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

/** The byte holding $Volume's VOLUME_INFORMATION flags (record 3; its value's offset 10), found as the format lays it out. */
function volumeFlagsOffset(bytes: Uint8Array): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const clusterBytes = view.getUint16(0x0b, true) * (bytes[0x0d] as number);
  const perRecord = view.getInt8(0x40);
  const recordBytes = perRecord < 0 ? 2 ** -perRecord : perRecord * clusterBytes;
  const record = Number(view.getBigUint64(0x30, true)) * clusterBytes + 3 * recordBytes;
  for (let at = record + view.getUint16(record + 0x14, true); view.getUint32(at, true) !== 0xffffffff; at += view.getUint32(at + 4, true)) {
    if (view.getUint32(at, true) === 0x70) return at + view.getUint16(at + 20, true) + 10;
  }
  throw new Error('no VOLUME_INFORMATION in $Volume');
}

describe('an NTFS volume Windows had mounted', () => {
  it('reads, with a caution that changes may be missing; a clean one has none', async () => {
    const image = folder.file('dirty.ntfs');
    fs.writeFileSync(image, '');
    fs.truncateSync(image, 16 * 2 ** 20);
    await mkntfs(image, 'Windows');
    const clean = new Uint8Array(fs.readFileSync(image));
    await withFiles(clean, async (files) => {
      expect(files.volumes[0]).toMatchObject({ filesystem: 'ntfs', label: 'Windows' });
      expect(files.volumes[0]?.caution).toBeUndefined();
    });
    const dirty = clean.slice();
    const flags = volumeFlagsOffset(dirty);
    expect((dirty[flags] as number) & 1).toBe(0);
    dirty[flags] = (dirty[flags] as number) | 1;
    await withFiles(dirty, async (files) => {
      expect(files.volumes[0]?.caution).toMatch(/Windows had this volume mounted/);
      expect(files.volumes[0]?.problem).toBeUndefined();
      // It still reads.
      expect(Array.isArray(await files.list('/'))).toBe(true);
    });
  });
});
