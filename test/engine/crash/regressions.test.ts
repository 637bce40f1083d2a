/**
 * Each engine ordering bug the crash harness found, pinned as its own small test: the operation
 * runs on a FaultFile and every cut (keep-all and lose-all) is walked for what used to go wrong.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeBlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { Qcow2Image, type OpenImageOptions } from '../../../src/shared/qcow2/image/image.ts';
import { applySnapshot, createSnapshot } from '../../../src/shared/qcow2/snapshots/snapshots.ts';
import { crashPoints, crashState, describeCrashPoint, FaultFile } from '../../helpers/fault-file.ts';
import { tempDir, type TempDir } from '../../helpers/qemu.ts';
import { buildImage } from './setups.ts';
import { walkImage, type FindingKind } from './image-walk.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

/** Findings of `kind` at every cut of `run` (keep-all and lose-all), with where they happened. */
function findingsAtCuts(imagePath: string, run: (image: Qcow2Image) => void, kind: FindingKind, open: OpenImageOptions = {}): string[] {
  const initial = new Uint8Array(fs.readFileSync(imagePath));
  const fault = new FaultFile(imagePath, initial);
  const image = Qcow2Image.openFile(fault, open);
  run(image);
  image.close();
  const found: string[] = [];
  for (const point of crashPoints(fault.log, 0, 0)) {
    const walk = walkImage(crashState(imagePath, initial, fault.log, point));
    for (const finding of walk.findings) if (finding.kind === kind) found.push(`${describeCrashPoint(fault.log, point)}: ${finding.message}`);
  }
  return found;
}

const V3_512 = 'compat=1.1,cluster_size=512,refcount_bits=16';

describe('engine ordering fixes found by the crash harness', () => {
  it('snapshot create drops COPIED flags before it raises refcounts, so no cut shows COPIED on a refcount-2 cluster', async () => {
    // Found: the L1 copy's refcount increments were flushed first, leaving the active L1 and L2
    // entries with COPIED over clusters whose refcount was already 2 until the flags were cleared.
    const imagePath = folder.file('create.qcow2');
    await buildImage(imagePath, V3_512, 64 * 1024, [{ io: 'write -P 0x11 0 12k' }]);
    const found = findingsAtCuts(imagePath, (image) => void createSnapshot(image, { name: 'new' }), 'copied-on-shared');
    expect(found).toEqual([]);
  });

  it("snapshot apply strips COPIED flags from the snapshot's own L2 tables before they become shared", async () => {
    // Found: qemu-img snapshot -d sets COPIED in a surviving snapshot's L2 tables wherever a
    // refcount fell to 1; apply shared those tables as they were, so even the finished apply left
    // COPIED on refcount-2 clusters — and QEMU, which trusts the flag, would then write the
    // snapshot's clusters in place.
    const imagePath = folder.file('apply.qcow2');
    await buildImage(imagePath, V3_512, 64 * 1024, [{ io: 'write -P 0x31 0 20k' }, { snapshot: 's1' }, { snapshot: 's2' }, { io: 'write -P 0x32 0 20k' }, { deleteSnapshot: 's2' }]);
    const file = NodeBlockFile.open(imagePath, { readOnly: true });
    const setupWalk = walkImage(file);
    file.close();
    // The setup really has COPIED flags in s1's tables (refcount 1, so harmless as they stand).
    expect(setupWalk.harmful).toEqual([]);
    const found = findingsAtCuts(imagePath, (image) => applySnapshot(image, 's1'), 'copied-on-shared');
    expect(found).toEqual([]);
  });

  it('an L2 table evicted from the cache reaches the disk only after the refcount table links the blocks it needs', async () => {
    // Found with caches of four tables: eviction flushed the refcount blocks but not the
    // refcount-table entries of blocks created since the last flush, so an evicted L2 table
    // could point at a cluster whose refcount, as read from disk, was 0 — free for reuse.
    const imagePath = folder.file('evict.qcow2');
    await buildImage(imagePath, 'compat=1.1,cluster_size=512,refcount_bits=64', 1024 * 1024, Array.from({ length: 12 }, (_, table) => ({ io: `write -P ${table + 1} ${table * 32 * 1024} 512` })));
    const run = (image: Qcow2Image): void => {
      for (let write = 0; write < 72; write++) image.write(new Uint8Array(512).fill(write + 1), (write % 12) * 32 * 1024 + 512 * (1 + Math.floor(write / 12)));
    };
    const found = findingsAtCuts(imagePath, run, 'refcount-below-references', { cacheBytes: { l2Tables: 0, refcountBlocks: 0 } });
    expect(found).toEqual([]);
  });
});
