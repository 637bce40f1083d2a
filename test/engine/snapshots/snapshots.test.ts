/**
 * Snapshots made, applied, deleted and renamed by qemu-img and by Cowbell in turn on the same
 * image, over the format's variants. After every step qemu-img check is clean, both tools list the
 * same snapshots, and every snapshot still holds what the disk held when it was taken.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, it, type ExpectStatic } from 'vitest';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { applySnapshot, createSnapshot, deleteSnapshot } from '../../../src/shared/qcow2/snapshots/snapshots.ts';
import { changeSnapshotName, removeSnapshot, revertToSnapshot, takeSnapshot } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { KiB, MiB } from '../../helpers/image-matrix.ts';
import { qemuCheck, qemuImg, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { compressibleBytes, SeededRandom } from '../../helpers/seeded-random.ts';
import { expectCheckClean, expectSameSnapshots, fileHash, SnapshotScenario } from '../../helpers/snapshot-scenario.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

interface Variant {
  name: string;
  options: string;
  clusterSize: number;
  version: 2 | 3;
  size: number;
  /** How the image starts: empty, converted from compressible data with -c, or an overlay on a backing file. */
  start: 'empty' | 'compressed' | 'backing';
}

const variants: Variant[] = [
  { name: 'v3, 512-byte clusters, 64-bit refcounts', options: 'compat=1.1,cluster_size=512,refcount_bits=64', clusterSize: 512, version: 3, size: 512 * KiB, start: 'empty' },
  { name: 'v2, 512-byte clusters, overlay on a raw backing file', options: 'compat=0.10,cluster_size=512', clusterSize: 512, version: 2, size: 512 * KiB + 1536, start: 'backing' },
  { name: 'v2, 64 KiB clusters, compressed by qemu-img convert -c', options: 'compat=0.10,cluster_size=65536', clusterSize: 64 * KiB, version: 2, size: 3 * MiB, start: 'compressed' },
  { name: 'v3, 64 KiB clusters, extended L2, overlay on a qcow2 backing file', options: 'compat=1.1,cluster_size=65536,extended_l2=on', clusterSize: 64 * KiB, version: 3, size: 3 * MiB, start: 'backing' },
];

/** Makes the variant's image with qemu-img and returns what its guest reads at first. */
async function makeImage(variant: Variant, caseFolder: string, seed: number): Promise<{ image: string; initial: Uint8Array }> {
  fs.mkdirSync(caseFolder, { recursive: true });
  const image = path.join(caseFolder, 'disk.qcow2');
  const initial = new Uint8Array(variant.size);
  if (variant.start === 'empty') {
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', variant.options, image, String(variant.size)]);
  } else if (variant.start === 'compressed') {
    initial.set(compressibleBytes(Math.floor(variant.size * 0.75), seed));
    fs.writeFileSync(`${image}.src`, initial);
    await qemuImg(['convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', variant.options, `${image}.src`, image]);
    fs.rmSync(`${image}.src`);
    const check = await qemuCheck(image);
    if ((check.report?.['compressed-clusters'] ?? 0) === 0) throw new Error('convert -c made no compressed clusters');
  } else {
    initial.set(new SeededRandom(seed).bytes(variant.size - 3 * variant.clusterSize));
    const rawBase = variant.options.includes('0.10');
    const base = path.join(caseFolder, rawBase ? 'base.raw' : 'base.qcow2');
    if (rawBase) fs.writeFileSync(base, initial);
    else {
      fs.writeFileSync(`${base}.src`, initial);
      await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', `${base}.src`, base]);
      fs.rmSync(`${base}.src`);
    }
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', variant.options, '-b', path.basename(base), '-F', rawBase ? 'raw' : 'qcow2', image], { cwd: caseFolder });
  }
  return { image, initial };
}

describe.concurrent('qemu-img and Cowbell take turns on one image', { timeout: 120_000 }, () => {
  variants.forEach((variant, index) => {
    it(`${variant.name}: create, write, apply, delete in the middle, rename, reopen — each step checked by both tools`, async ({ expect }) => {
      const { image, initial } = await makeImage(variant, folder.file(`mixed-${index}`), 100 + index);
      const scenario = new SnapshotScenario({ image, initial, clusterSize: variant.clusterSize, version: variant.version, hasBacking: variant.start === 'backing', seed: 100 + index });
      const step = async (label: string, work: () => unknown): Promise<void> => {
        await work();
        await scenario.verify(expect, `${variant.name}, ${label}`);
      };

      await scenario.qemuWrite();
      await step('Cowbell creates "a"', () => scenario.cowbellCreate('a'));
      scenario.engineWrite();
      await step('qemu-img creates "b"', () => scenario.qemuCreate('b'));
      await scenario.qemuWrite();
      await step('Cowbell creates "c"', () => scenario.cowbellCreate('c'));
      scenario.engineWrite();
      await step('qemu-img applies "a" (made by Cowbell)', () => scenario.qemuApply('a'));
      scenario.engineWrite();
      await step('Cowbell creates "d" on a branch from "a"', () => scenario.cowbellCreate('d'));
      await step('Cowbell applies "b" (made by qemu-img)', () => scenario.cowbellApply('b'));
      await scenario.qemuWrite();
      await step('qemu-img deletes "c" (Cowbell\'s, with no children)', () => scenario.qemuDelete('c'));
      await step('Cowbell renames "d" to "branch d"', () => scenario.cowbellRename('d', 'branch d'));
      await expectSameSnapshots(expect, image, `${variant.name}, qemu-img snapshot -l after the rename`, { textListing: true });
      await step('qemu-img creates "e"', () => scenario.qemuCreate('e'));
      scenario.engineWrite();
      await step('Cowbell deletes "b" (qemu-img\'s, in the middle of a → b → e)', () => scenario.cowbellDelete('b'));
      await step('qemu-img deletes "a" (the root, in the middle of a → branch d)', () => scenario.qemuDelete('a'));

      // Several operations in one session of an image kept open, then closed and reopened.
      const opened = Qcow2Image.open(image);
      try {
        scenario.engineWriteOpen(opened);
        createSnapshot(opened, { name: 'f' });
        scenario.recordCreated('f');
        scenario.engineWriteOpen(opened);
        applySnapshot(opened, 'branch d');
        scenario.recordApplied('branch d');
        scenario.engineWriteOpen(opened);
        deleteSnapshot(opened, 'e');
        scenario.recordDeleted('e');
        scenario.engineWriteOpen(opened);
      } finally {
        opened.close();
      }
      await scenario.verify(expect, `${variant.name}, one session: create, apply, delete with writes between`);
      await step('qemu-img applies "f" (made in that session)', () => scenario.qemuApply('f'));
      await scenario.qemuWrite();
      await step('Cowbell deletes "branch d"', () => scenario.cowbellDelete('branch d'));
      await step('qemu-img deletes "f", the last one', () => scenario.qemuDelete('f'));
      await step('Cowbell creates "g" on an image with no snapshots left', () => scenario.cowbellCreate('g'));
    });
  });
});

describe('snapshot names', () => {
  async function namedImage(name: string): Promise<string> {
    const image = folder.file(name);
    await qemuImg(['create', '-q', '-f', 'qcow2', image, String(4 * MiB)]);
    await qemuIo(image, ['write -P 7 0 1M']);
    takeSnapshot(image, 'first');
    await qemuImg(['snapshot', '-c', 'second', image]);
    return image;
  }

  function expectError(expect: ExpectStatic, code: string, work: () => unknown): void {
    let caught: unknown = null;
    try {
      work();
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(Qcow2Error);
    expect((caught as Qcow2Error).code).toBe(code);
  }

  it('a duplicate name is SNAPSHOT_EXISTS and an unknown one SNAPSHOT_NOT_FOUND, and the file stays byte for byte the same', async ({ expect }) => {
    const image = await namedImage('names.qcow2');
    const before = fileHash(image);
    expectError(expect, 'SNAPSHOT_EXISTS', () => takeSnapshot(image, 'first'));
    expectError(expect, 'SNAPSHOT_EXISTS', () => takeSnapshot(image, 'second'));
    expectError(expect, 'SNAPSHOT_EXISTS', () => changeSnapshotName(image, 'first', 'second'));
    expectError(expect, 'SNAPSHOT_NOT_FOUND', () => revertToSnapshot(image, 'third'));
    expectError(expect, 'SNAPSHOT_NOT_FOUND', () => removeSnapshot(image, 'third'));
    expectError(expect, 'SNAPSHOT_NOT_FOUND', () => changeSnapshotName(image, 'third', 'fourth'));
    expectError(expect, 'INVALID_ARGUMENT', () => takeSnapshot(image, ''));
    expect(fileHash(image)).toBe(before);
    await expectCheckClean(expect, image, 'after the refused operations');
  });

  it('renaming a snapshot to its own name changes nothing; ids find snapshots as qemu-img does', async ({ expect }) => {
    const image = await namedImage('ids.qcow2');
    const before = fileHash(image);
    changeSnapshotName(image, 'first', 'first');
    expect(fileHash(image)).toBe(before);
    // qemu-img looks a snapshot up by id too: both find "second" as "2".
    changeSnapshotName(image, '2', 'renamed');
    const listed = await qemuImg(['snapshot', '-l', image]);
    expect(listed.stdout).toMatch(/^2 +renamed /m);
    await expectCheckClean(expect, image, 'after renaming by id');
  });
});
