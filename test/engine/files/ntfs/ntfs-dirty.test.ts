/**
 * An NTFS volume Windows had mounted (VOLUME_IS_DIRTY in $Volume's VOLUME_INFORMATION: a snapshot of
 * a running Windows guest, or one not shut down cleanly) reads, with a caution: Cowbell does not
 * replay $LogFile, so changes Windows had not written home may be missing (ntfs-3g says so too).
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withFiles } from '../../../helpers/memory-guest.ts';
import { mkntfs, volumeFlagsOffset } from '../../../helpers/ntfs-tools.ts';
import { tempDir, type TempDir } from '../../../helpers/qemu.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

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
