/**
 * Resize round-trips with qemu-img: after every step `qemu-img check` is clean, `qemu-img info`
 * gives the new size, the guest reads what a model says, and every snapshot keeps its own size
 * and data. Small clusters (512 bytes: an L2 table covers 32 KiB, an L1 cluster 2 MiB) make the
 * active L1 grow, and outgrow its cluster, on small disks.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { rewriteImage } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { readResizePreview, resizeImagePath } from '../../../src/shared/qcow2/snapshots/resize.ts';
import { readSnapshotTree, takeSnapshot } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { KiB, MiB } from '../../helpers/image-matrix.ts';
import { firstDifference, qemuCheck, qemuImg, qemuInfo, qemuIo, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { checkEncrypted, createLuksImage, imageOpts, qemuIoEncrypted, rawOfEncrypted, readLuksArea, secret } from '../../helpers/encrypted-images.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';
import { expectCheckClean, fileHash } from '../../helpers/snapshot-scenario.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

let counter = 0;
async function makeImage(options: string, size: number): Promise<string> {
  const image = folder.file(`disk-${counter++}.qcow2`);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', options, image, String(size)]);
  return image;
}

/** Fills [offset, offset+length) with a pattern byte through qemu-io, and the model likewise. */
async function pattern(image: string, model: Uint8Array, offset: number, length: number, value: number): Promise<void> {
  await qemuIo(image, [`write -P ${value} ${offset} ${length}`]);
  model.fill(value, offset, offset + length);
}

function grown(model: Uint8Array, size: number): Uint8Array {
  const next = new Uint8Array(size);
  next.set(model.subarray(0, Math.min(size, model.length)));
  return next;
}

/**
 * The guest data of the current state, or of a snapshot as qemu-img applies it to a copy (reading
 * a snapshot with `convert -l` would give it the current disk's size, not its own).
 */
async function expectGuest(image: string, model: Uint8Array, label: string, snapshot?: string): Promise<void> {
  let source = image;
  if (snapshot !== undefined) {
    source = folder.file(`applied-${counter++}.qcow2`);
    fs.copyFileSync(image, source);
    await qemuImg(['snapshot', '-a', snapshot, source]);
  }
  const raw = await rawOf(source);
  if (source !== image) fs.rmSync(source);
  expect(raw.length, `${label}: size`).toBe(model.length);
  expect(Buffer.compare(Buffer.from(raw), Buffer.from(model)), `${label}: guest data`).toBe(0);
}

function snapshotSizes(image: string): Map<string, number | null> {
  const opened = Qcow2Image.open(image, { readOnly: true });
  try {
    return new Map(opened.snapshots.map((entry) => [entry.name, entry.diskSize]));
  } finally {
    opened.close();
  }
}

function errorCode(work: () => unknown): string {
  try {
    work();
  } catch (error) {
    if (error instanceof Qcow2Error) return error.code;
    throw error;
  }
  return 'none';
}

describe('growing', () => {
  it('grows the active L1 past its cluster and keeps a snapshot at its own size', async () => {
    const image = await makeImage('cluster_size=512', 100 * KiB);
    let model: Uint8Array = new Uint8Array(100 * KiB);
    await pattern(image, model, 0, 8 * KiB, 0x11);
    await pattern(image, model, 90 * KiB, 10 * KiB, 0x22);
    takeSnapshot(image, 'before');
    const snapshotModel = model.slice();
    await pattern(image, model, 4 * KiB, 2 * KiB, 0x33);
    const l1Before = Qcow2Image.open(image, { readOnly: true });
    const l1Entries = l1Before.l1.size;
    l1Before.close();

    // 3 MiB needs 96 L1 entries: more than the 64 one 512-byte cluster holds.
    const preview = readResizePreview(image, 3 * MiB);
    expect(preview).toMatchObject({ currentSize: 100 * KiB, newSize: 3 * MiB, direction: 'grow', l1Grows: true, pastEnd: [] });
    const result = resizeImagePath(image, 3 * MiB);
    expect(result).toMatchObject({ previousSize: 100 * KiB, newSize: 3 * MiB, l1Grown: true, discardedBytes: 0 });
    model = grown(model, 3 * MiB);

    await expectCheckClean(expect, image, 'after the grow');
    expect((await qemuInfo(image))['virtual-size']).toBe(3 * MiB);
    const after = Qcow2Image.open(image, { readOnly: true });
    expect(after.l1.size).toBe(96);
    expect(after.l1.size).toBeGreaterThan(l1Entries);
    after.close();
    await expectGuest(image, model, 'current');
    await expectGuest(image, snapshotModel, 'snapshot', 'before');
    expect(snapshotSizes(image).get('before')).toBe(100 * KiB);
    // The tree still knows the current state's parent (the mark followed the L1).
    const tree = readSnapshotTree(image);
    expect(tree.currentParentId).toBe(tree.snapshots[0]?.id);
    expect(tree.currentParentInferred).toBe(false);

    // qemu writes into the new space, and reverting goes back to the snapshot's size.
    await pattern(image, model, 3 * MiB - 4 * KiB, 4 * KiB, 0x44);
    await pattern(image, model, 2 * MiB, 512, 0x55);
    await expectCheckClean(expect, image, 'after qemu-io wrote past the old end');
    await expectGuest(image, model, 'current after qemu-io');
    await qemuImg(['snapshot', '-a', 'before', image]);
    expect((await qemuInfo(image))['virtual-size']).toBe(100 * KiB);
    await expectGuest(image, snapshotModel, 'current after qemu-img applied the snapshot');
    await expectCheckClean(expect, image, 'after the apply');
  });

  it('grows within the L1 it has, with extended L2 entries', async () => {
    const image = await makeImage('cluster_size=16384,extended_l2=on', 64 * KiB);
    let model: Uint8Array = new Uint8Array(64 * KiB);
    await pattern(image, model, 1024, 3 * KiB, 0x66);
    const before = Qcow2Image.open(image, { readOnly: true });
    const l1 = { offset: before.l1.offset, size: before.l1.size };
    before.close();
    const result = resizeImagePath(image, 8 * MiB);
    expect(result.l1Grown).toBe(false);
    model = grown(model, 8 * MiB);
    const after = Qcow2Image.open(image, { readOnly: true });
    expect({ offset: after.l1.offset, size: after.l1.size }).toEqual(l1);
    after.close();
    await expectCheckClean(expect, image, 'extended L2 grow');
    await expectGuest(image, model, 'extended L2 grow');
  });

  it('grows a v2 image without snapshots, and refuses one with snapshots as qemu-img does, until it is upgraded to compat 1.1', async () => {
    const image = await makeImage('compat=0.10,cluster_size=512', 40 * KiB);
    let model: Uint8Array = new Uint8Array(40 * KiB);
    await pattern(image, model, 32 * KiB, 8 * KiB, 0x77);
    resizeImagePath(image, 1 * MiB);
    model = grown(model, 1 * MiB);
    await expectCheckClean(expect, image, 'v2 grow');
    await expectGuest(image, model, 'v2 grow');

    await qemuImg(['snapshot', '-c', 'one', image]);
    const hash = fileHash(image);
    expect(errorCode(() => resizeImagePath(image, 2 * MiB))).toBe('INVALID_ARGUMENT');
    const qemu = await qemuImg(['resize', image, String(2 * MiB)], { okCodes: [0, 1] });
    expect(qemu.code).toBe(1);
    expect(fileHash(image)).toBe(hash);

    // The way the refusal names: upgraded (every snapshot kept, each now with its size), it grows and the snapshot keeps its size.
    expect(rewriteImage({ source: image, compression: 'keep', version: 3 }).upgradedToVersion3).toBe(true);
    resizeImagePath(image, 2 * MiB);
    await expectCheckClean(expect, image, 'v2 upgraded, then grown');
    await expectGuest(image, grown(model, 2 * MiB), 'v2 upgraded, then grown');
    await expectGuest(image, model, 'the snapshot, at its own size', 'one');
  });

  it('zeroes what a cluster holds past an old end that is not a whole cluster before the disk grows over it', async () => {
    const image = await makeImage('cluster_size=65536', 256 * KiB);
    let model: Uint8Array = new Uint8Array(256 * KiB);
    await pattern(image, model, 0, 256 * KiB, 0x5a);
    // qemu-img shrinks to 100 KiB + 512: the cluster at 64 KiB keeps its bytes past the end.
    await qemuImg(['resize', '-q', '--shrink', image, String(100 * KiB + 512)]);
    model = model.slice(0, 100 * KiB + 512);
    takeSnapshot(image, 'unaligned');
    const snapshotModel = model.slice();
    resizeImagePath(image, 200 * KiB);
    model = grown(model, 200 * KiB);
    await expectCheckClean(expect, image, 'grow over a stale tail');
    await expectGuest(image, model, 'grow over a stale tail');
    await expectGuest(image, snapshotModel, 'the snapshot, unchanged', 'unaligned');
  });

  it('refuses sizes that are not whole sectors or too large, and leaves the file as it was', async () => {
    const image = await makeImage('cluster_size=512', 64 * KiB);
    const hash = fileHash(image);
    expect(errorCode(() => resizeImagePath(image, 64 * KiB + 100))).toBe('INVALID_ARGUMENT');
    // 512-byte clusters: 32 MiB of L1 entries map 128 GiB at most.
    expect(errorCode(() => resizeImagePath(image, 256 * 1024 * MiB))).toBe('INVALID_ARGUMENT');
    expect(fileHash(image)).toBe(hash);
  });
});

describe('shrinking', () => {
  async function imageWithDataPastEnd(): Promise<{ image: string; model: Uint8Array; snapshotModel: Uint8Array }> {
    const image = await makeImage('cluster_size=512', 2 * MiB + 64 * KiB);
    const model = new Uint8Array(2 * MiB + 64 * KiB);
    await pattern(image, model, 0, 16 * KiB, 0x01);
    await pattern(image, model, 1 * MiB, 64 * KiB, 0x02);
    await pattern(image, model, 2 * MiB, 64 * KiB, 0x03);
    takeSnapshot(image, 'full');
    const snapshotModel = model.slice();
    await pattern(image, model, 1 * MiB + 32 * KiB, 4 * KiB, 0x04);
    return { image, model, snapshotModel };
  }

  it('needs the shrink option, and refuses data past the new end unless it is discarded', async () => {
    const { image } = await imageWithDataPastEnd();
    const hash = fileHash(image);
    expect(errorCode(() => resizeImagePath(image, 512 * KiB))).toBe('INVALID_ARGUMENT');
    expect(errorCode(() => resizeImagePath(image, 512 * KiB, { shrink: true }))).toBe('DATA_PAST_END');
    expect(fileHash(image)).toBe(hash);
    const preview = readResizePreview(image, 512 * KiB);
    expect(preview.direction).toBe('shrink');
    expect(preview.pastEnd).toEqual([
      { state: 'current', id: null, name: null, diskSize: 2 * MiB + 64 * KiB, bytes: 128 * KiB, kept: false },
      { state: 'snapshot', id: '1', name: 'full', diskSize: 2 * MiB + 64 * KiB, bytes: 128 * KiB, kept: true },
    ]);
    expect(readResizePreview(image, 2 * MiB + 32 * KiB).pastEnd.map((entry) => entry.bytes)).toEqual([32 * KiB, 32 * KiB]);
  });

  it('does not count clusters of a preallocated disk the guest never wrote (holes of the file: they read zeros) as data past the new end', async () => {
    const image = await makeImage('preallocation=metadata', 64 * MiB);
    const model = new Uint8Array(64 * MiB);
    await pattern(image, model, 1 * MiB, 64 * KiB, 0x11);
    await pattern(image, model, 40 * MiB, 64 * KiB, 0x22);
    takeSnapshot(image, 'written');
    // Every cluster is mapped; only the two written ones hold data.
    expect(readResizePreview(image, 32 * MiB).pastEnd).toEqual([
      { state: 'current', id: null, name: null, diskSize: 64 * MiB, bytes: 64 * KiB, kept: false },
      { state: 'snapshot', id: '1', name: 'written', diskSize: 64 * MiB, bytes: 64 * KiB, kept: true },
    ]);
    // Past the written cluster only never-written clusters: the shrink needs no --discard-data.
    expect(readResizePreview(image, 48 * MiB).pastEnd).toEqual([]);
    resizeImagePath(image, 48 * MiB, { shrink: true });
    await expectCheckClean(expect, image, 'after the shrink');
    await expectGuest(image, model.subarray(0, 48 * MiB), 'shrunk past never-written clusters');
    expect(errorCode(() => resizeImagePath(image, 32 * MiB, { shrink: true }))).toBe('DATA_PAST_END');
  });

  it('counts what an overlay shows of its backing chain past the new end as its data (it was dropped unasked), not what the chain leaves empty or the overlay hides', async () => {
    const base = await makeImage('cluster_size=65536', 4 * MiB);
    await qemuIo(base, ['write -P 0x5a 3M 512K']);
    const middle = folder.file(`middle-${counter++}.qcow2`);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', middle]);
    await qemuIo(middle, ['write -P 0x6b 2560K 256K']);
    const top = folder.file(`top-${counter++}.qcow2`);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', '-b', middle, '-F', 'qcow2', top]);
    // The overlay hides 128 KiB of the base's data with zeros and holds 64 KiB of its own.
    await qemuIo(top, ['write -z 3M 128K', 'write -P 0x7c 3584K 64K']);
    const hash = fileHash(top);
    expect(errorCode(() => resizeImagePath(top, 2 * MiB, { shrink: true }))).toBe('DATA_PAST_END');
    expect(fileHash(top)).toBe(hash);
    // The middle file's 256 KiB, the base's 512 KiB less the 128 KiB hidden, the overlay's own 64 KiB.
    expect(readResizePreview(top, 2 * MiB).pastEnd).toEqual([{ state: 'current', id: null, name: null, diskSize: 4 * MiB, bytes: 256 * KiB + 384 * KiB + 64 * KiB, kept: false }]);
    // Past everything the chain holds: nothing to drop.
    expect(readResizePreview(top, 3584 * KiB + 64 * KiB).pastEnd).toEqual([]);
    const model = new Uint8Array(await rawOf(top));
    resizeImagePath(top, 3 * MiB, { shrink: true, discardData: true });
    await expectCheckClean(expect, top, 'shrunk');
    await expectGuest(top, model.subarray(0, 3 * MiB), 'shrunk with --discard-data');
  });

  it('with the data discarded: check clean, no leaks, the snapshot whole at its own size', async () => {
    const { image, model, snapshotModel } = await imageWithDataPastEnd();
    const result = resizeImagePath(image, 1 * MiB + 16 * KiB, { shrink: true, discardData: true });
    expect(result).toMatchObject({ previousSize: 2 * MiB + 64 * KiB, newSize: 1 * MiB + 16 * KiB, discardedBytes: 112 * KiB });
    await expectCheckClean(expect, image, 'after the shrink');
    expect((await qemuInfo(image))['virtual-size']).toBe(1 * MiB + 16 * KiB);
    await expectGuest(image, model.slice(0, 1 * MiB + 16 * KiB), 'current after the shrink');
    await expectGuest(image, snapshotModel, 'the snapshot after the shrink', 'full');
    expect(snapshotSizes(image).get('full')).toBe(2 * MiB + 64 * KiB);

    // Growing back shows zeros where the dropped data was; the snapshot still has it.
    resizeImagePath(image, 2 * MiB + 64 * KiB);
    await expectCheckClean(expect, image, 'grown back');
    await expectGuest(image, grown(model.slice(0, 1 * MiB + 16 * KiB), 2 * MiB + 64 * KiB), 'grown back');
    await qemuImg(['snapshot', '-a', 'full', image]);
    await expectGuest(image, snapshotModel, 'snapshot applied by qemu-img');
    await expectCheckClean(expect, image, 'after the apply');
  });

  // Was: the app sent only "discard" — 1 MiB shown, and data another program wrote past the end meanwhile went too.
  it('with a bound on the data discarded (what a dialog showed): more past the end than that is refused, nothing changed; within it, done', async () => {
    const { image } = await imageWithDataPastEnd();
    const shown = readResizePreview(image, 1 * MiB + 16 * KiB).pastEnd.find((entry) => entry.state === 'current')?.bytes ?? 0;
    expect(shown).toBe(112 * KiB);
    await qemuIo(image, [`write -P 0x77 ${1 * MiB + 512 * KiB} 64k`]);
    const before = fs.readFileSync(image);
    expect(() => resizeImagePath(image, 1 * MiB + 16 * KiB, { shrink: true, discardData: true, discardUpTo: shown })).toThrow(
      expect.objectContaining({ code: 'DATA_PAST_END', message: expect.stringMatching(/more than the 114688 agreed/) }),
    );
    expect(fs.readFileSync(image).equals(before)).toBe(true);
    const now = readResizePreview(image, 1 * MiB + 16 * KiB).pastEnd.find((entry) => entry.state === 'current')?.bytes ?? 0;
    expect(resizeImagePath(image, 1 * MiB + 16 * KiB, { shrink: true, discardData: true, discardUpTo: now }).discardedBytes).toBe(now);
    await expectCheckClean(expect, image, 'after the shrink');
  });

  it('frees the clusters it drops, and the file gives back those at its end: qemu-img check counts none in use past the end', async () => {
    const image = await makeImage('cluster_size=512', 1 * MiB);
    const model = new Uint8Array(1 * MiB);
    await pattern(image, model, 0, 1 * MiB, 0x09);
    const allocatedBefore = (await qemuCheck(image)).report?.['allocated-clusters'] ?? 0;
    resizeImagePath(image, 256 * KiB, { shrink: true, discardData: true });
    const check = await qemuCheck(image);
    expect(check.code).toBe(0);
    expect(check.report?.leaks ?? 0).toBe(0);
    expect(check.report?.['allocated-clusters']).toBe(512);
    expect(allocatedBefore).toBe(2048);
    // The file ends where qemu-img check says the image's last cluster in use ends.
    expect(fs.statSync(image).size).toBe(check.report?.['image-end-offset']);
    await expectGuest(image, model.slice(0, 256 * KiB), 'shrunk');
  });

  it('shrinks without asking when only a snapshot holds data past the end (the snapshot keeps it)', async () => {
    const image = await makeImage('cluster_size=512', 512 * KiB);
    const model = new Uint8Array(512 * KiB);
    await pattern(image, model, 400 * KiB, 8 * KiB, 0x0a);
    takeSnapshot(image, 'keeps');
    const snapshotModel = model.slice();
    await qemuIo(image, [`discard 256K 256K`]);
    const preview = readResizePreview(image, 256 * KiB);
    expect(preview.pastEnd).toEqual([{ state: 'snapshot', id: '1', name: 'keeps', diskSize: 512 * KiB, bytes: 8 * KiB, kept: true }]);
    resizeImagePath(image, 256 * KiB, { shrink: true });
    await expectCheckClean(expect, image, 'shrunk');
    await expectGuest(image, snapshotModel, 'snapshot kept', 'keeps');
  });

  it('clears what the last cluster holds past a new end inside it, so that qemu-img growing the disk again shows zeros', async () => {
    const image = await makeImage('cluster_size=65536', 256 * KiB);
    const model = new Uint8Array(256 * KiB);
    await pattern(image, model, 0, 256 * KiB, 0x3c);
    takeSnapshot(image, 'whole');
    const snapshotModel = model.slice();
    resizeImagePath(image, 100 * KiB + 512, { shrink: true, discardData: true });
    await expectCheckClean(expect, image, 'shrunk inside a cluster');
    await qemuImg(['resize', '-q', image, String(256 * KiB)]);
    await expectCheckClean(expect, image, 'grown by qemu-img');
    await expectGuest(image, grown(model.slice(0, 100 * KiB + 512), 256 * KiB), 'grown by qemu-img');
    await expectGuest(image, snapshotModel, 'the snapshot, unchanged', 'whole');
  });

  it('drops compressed clusters and unaligned tails as qemu-img check expects', async () => {
    const source = folder.file(`compressible-${counter++}.raw`);
    const random = new SeededRandom(7);
    const data = new Uint8Array(768 * KiB);
    for (let offset = 0; offset < data.length; offset += 4 * KiB) data.fill(random.int(1, 255), offset, offset + 3 * KiB);
    fs.writeFileSync(source, data);
    const image = folder.file(`compressed-${counter++}.qcow2`);
    await qemuImg(['convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096', source, image]);
    resizeImagePath(image, 300 * KiB + 512, { shrink: true, discardData: true });
    await expectCheckClean(expect, image, 'compressed shrink');
    await expectGuest(image, data.slice(0, 300 * KiB + 512), 'compressed shrink');
  });
});

describe('mixed with qemu-img resize', () => {
  it('alternates grows and shrinks with qemu-img, the snapshots untouched throughout', async () => {
    const image = await makeImage('cluster_size=512,refcount_bits=8', 64 * KiB);
    let model: Uint8Array = new Uint8Array(64 * KiB);
    await pattern(image, model, 0, 64 * KiB, 0x10);
    await qemuImg(['snapshot', '-c', 'q1', image]);
    const q1 = model.slice();
    const steps: { tool: 'cowbell' | 'qemu'; size: number }[] = [
      { tool: 'cowbell', size: 3 * MiB },
      { tool: 'qemu', size: 5 * MiB },
      { tool: 'cowbell', size: 2 * MiB + 512 },
      { tool: 'qemu', size: 1 * MiB },
      { tool: 'cowbell', size: 6 * MiB },
      { tool: 'qemu', size: 96 * KiB },
    ];
    for (const [index, step] of steps.entries()) {
      await pattern(image, model, model.length - 4 * KiB, 4 * KiB, 0x20 + index);
      if (step.tool === 'cowbell') resizeImagePath(image, step.size, { shrink: true, discardData: true });
      else await qemuImg(['resize', '-q', ...(step.size < model.length ? ['--shrink'] : []), image, String(step.size)]);
      model = grown(model, step.size);
      await expectCheckClean(expect, image, `step ${index} (${step.tool} to ${step.size})`);
      expect((await qemuInfo(image))['virtual-size']).toBe(step.size);
      await expectGuest(image, model, `step ${index}`);
      await expectGuest(image, q1, `snapshot at step ${index}`, 'q1');
      expect(snapshotSizes(image).get('q1')).toBe(64 * KiB);
    }
  }, 60_000);
});

describe('encrypted and overlay disks', { timeout: 60_000 }, () => {
  it('LUKS: grows without the passphrase (no data is read, the LUKS header untouched); over a stale old end it needs it', async () => {
    const image = folder.file(`luks-${counter++}.qcow2`);
    await createLuksImage(image, 'moo', { size: '256K', clusterSize: 4096 });
    await qemuIoEncrypted(image, 'moo', ['write -P 0x11 0 256k']);
    const luksHeader = readLuksArea(image).headerBytes.slice();

    resizeImagePath(image, 1 * MiB);
    expect(Buffer.from(readLuksArea(image).headerBytes).equals(Buffer.from(luksHeader))).toBe(true);
    let model: Uint8Array = grown(new Uint8Array(256 * KiB).fill(0x11), 1 * MiB);
    expect(Buffer.compare(Buffer.from(await rawOfEncrypted(image, 'moo')), Buffer.from(model))).toBe(0);

    // qemu-img shrinks to a size inside a cluster; growing over it must zero what lies past that end.
    await qemuImg(['resize', '-q', '--shrink', ...secret('sec0', 'moo'), '--image-opts', imageOpts(image, 'sec0'), String(130 * KiB + 512)]);
    model = model.slice(0, 130 * KiB + 512);
    const hash = fileHash(image);
    expect(errorCode(() => resizeImagePath(image, 512 * KiB))).toBe('LOCKED');
    expect(fileHash(image)).toBe(hash);
    resizeImagePath(image, 512 * KiB, {}, undefined, { passphrase: 'moo' });
    model = grown(model, 512 * KiB);
    expect(Buffer.compare(Buffer.from(await rawOfEncrypted(image, 'moo')), Buffer.from(model))).toBe(0);
    const check = await checkEncrypted(image, 'moo');
    expect(check.output).not.toMatch(/ERROR|Leaked/);
    expect(check.code).toBe(0);
  });

  it('an overlay grows; where its larger backing file would show past the old end, zero clusters hide it (as qemu-img resize does); v2 refuses that', async () => {
    const base = folder.file(`base-${counter++}.qcow2`);
    await qemuImg(['create', '-q', '-f', 'qcow2', base, String(4 * MiB)]);
    await qemuIo(base, ['write -P 0x51 0 4M']);
    const overlay = folder.file(`overlay-${counter++}.qcow2`);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', '-b', base, '-F', 'qcow2', overlay, String(1 * MiB)]);
    await qemuIo(overlay, ['write -P 0x52 4k 4k']);
    takeSnapshot(overlay, 'small');
    const qemuCopy = folder.file(`overlay-qemu-${counter++}.qcow2`);
    fs.copyFileSync(overlay, qemuCopy);

    // 1 MiB + 512: the cluster across the old end shows the backing file too; 3 MiB needs a larger L1 (2 MiB per L1 cluster).
    resizeImagePath(overlay, 3 * MiB + 512);
    await qemuImg(['resize', '-q', qemuCopy, String(3 * MiB + 512)]);
    const model = grown(new Uint8Array(1 * MiB).fill(0x51), 3 * MiB + 512);
    model.fill(0x52, 4 * KiB, 8 * KiB);
    await expectCheckClean(expect, overlay, 'grown overlay');
    await expectGuest(overlay, model, 'grown overlay');
    await expectGuest(qemuCopy, model, 'the same overlay grown by qemu-img');
    await expectGuest(overlay, model.slice(0, 1 * MiB), 'the snapshot, at its own size', 'small');

    const v2 = folder.file(`overlay-v2-${counter++}.qcow2`);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'compat=0.10,cluster_size=512', '-b', base, '-F', 'qcow2', v2, String(1 * MiB)]);
    const hash = fileHash(v2);
    expect(errorCode(() => resizeImagePath(v2, 2 * MiB))).toBe('INVALID_ARGUMENT');
    expect(fileHash(v2)).toBe(hash);
  });

  it('an overlay whose old end cuts a cluster it has no L2 table for reads zeros from the old end on, as after qemu-img resize', async () => {
    const base = folder.file(`base-${counter++}.qcow2`);
    await qemuImg(['create', '-q', '-f', 'qcow2', base, String(16 * MiB)]);
    await qemuIo(base, ['write -P 0x09 0 16M']);
    for (const ownWrite of [null, 'write -P 0x05 8M 512']) {
      const overlay = folder.file(`overlay-${counter++}.qcow2`);
      await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', '-b', base, '-F', 'qcow2', overlay, String(8 * MiB + 1536)]);
      if (ownWrite !== null) await qemuIo(overlay, [ownWrite]);
      const qemuCopy = folder.file(`overlay-qemu-${counter++}.qcow2`);
      fs.copyFileSync(overlay, qemuCopy);
      resizeImagePath(overlay, 12 * MiB);
      await qemuImg(['resize', '-q', qemuCopy, String(12 * MiB)]);
      const model = grown(new Uint8Array(8 * MiB + 1536).fill(0x09), 12 * MiB);
      if (ownWrite !== null) model.fill(0x05, 8 * MiB, 8 * MiB + 512);
      await expectCheckClean(expect, overlay, `grown overlay (${ownWrite ?? 'nothing of its own'})`);
      await expectGuest(qemuCopy, model, 'the same overlay grown by qemu-img');
      await expectGuest(overlay, model, `grown overlay (${ownWrite ?? 'nothing of its own'})`);
    }
  });

  it('an external data file (raw or not) follows the size as qemu-img resize makes it', async () => {
    for (const raw of [true, false]) {
      const dataName = folder.file(`resize-data-${raw}.raw`);
      const image = await makeImage(`data_file=${dataName},data_file_raw=${raw ? 'on' : 'off'}`, 1 * MiB);
      let model: Uint8Array = new Uint8Array(1 * MiB);
      await pattern(image, model, 0, 1 * MiB, 0x3c);
      const beforeDataFile = fs.statSync(dataName).size;
      // qemu-img's own resize of a copy is the reference for the data file's length.
      const reference = folder.file(`resize-reference-${raw}.qcow2`);
      const referenceData = folder.file(`resize-reference-${raw}.raw`);
      await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `data_file=${referenceData},data_file_raw=${raw ? 'on' : 'off'}`, reference, String(1 * MiB)]);
      await qemuIo(reference, ['write -P 0x3c 0 1M']);

      resizeImagePath(image, 3 * MiB);
      await qemuImg(['resize', '-q', reference, String(3 * MiB)]);
      model = grown(model, 3 * MiB);
      expect(fs.statSync(dataName).size).toBe(fs.statSync(referenceData).size);
      expect(fs.statSync(dataName).size).toBe(3 * MiB);
      expect(beforeDataFile).toBe(1 * MiB);
      await expectCheckClean(expect, image, `data file raw=${raw}`);
      expect(Buffer.from(await rawOf(image)).equals(Buffer.from(model))).toBe(true);

      resizeImagePath(image, 512 * KiB, { shrink: true, discardData: true });
      await qemuImg(['resize', '-q', '--shrink', reference, String(512 * KiB)]);
      expect(fs.statSync(dataName).size).toBe(fs.statSync(referenceData).size);
      await expectCheckClean(expect, image, `data file raw=${raw}`);
      expect(Buffer.from(await rawOf(image)).equals(Buffer.from(model.subarray(0, 512 * KiB)))).toBe(true);
      if (raw) expect(Buffer.from(fs.readFileSync(dataName)).equals(Buffer.from(model.subarray(0, 512 * KiB)))).toBe(true);
    }
  });

  it('an external data file, a new end inside a cluster: the end cluster is cleared in place (guest cluster N stays at offset N), nothing else overwritten', async () => {
    for (const raw of [true, false]) {
      const dataName = folder.file(`tail-data-${raw}.raw`);
      const image = await makeImage(`data_file=${dataName},data_file_raw=${raw ? 'on' : 'off'}`, 2 * MiB);
      const model = new Uint8Array(2 * MiB);
      await pattern(image, model, 0, 1 * MiB, 0x11);
      await pattern(image, model, 1 * MiB, 1 * MiB, 0x22);
      const newEnd = 1 * MiB + 512;
      resizeImagePath(image, newEnd, { shrink: true, discardData: true });
      await expectCheckClean(expect, image, `shrunk into a cluster, data file raw=${raw}`);
      // qemu-img reads it (it refuses an L2 entry whose host offset is not its guest offset).
      expect(firstDifference(await rawOf(image), model.subarray(0, newEnd)), `qemu-img's read after the shrink, raw=${raw}`).toBe(-1);
      resizeImagePath(image, 2 * MiB);
      await expectCheckClean(expect, image, `grown again, data file raw=${raw}`);
      const grownModel = grown(model.subarray(0, newEnd), 2 * MiB);
      expect(firstDifference(await rawOf(image), grownModel), `qemu-img's read after growing again, raw=${raw}`).toBe(-1);
    }
  });
});
