/**
 * Snapshot notes on real images: kept in Cowbell's record, they survive qemu-img's own snapshot
 * -c, -d and -a on other snapshots and Cowbell's rewrites; qemu-img check stays clean and
 * qemu-img still lists every snapshot; refusals write nothing, and no record grows past QEMU's
 * 1024 bytes of extra data.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, it, type ExpectStatic } from 'vitest';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { parseHeader } from '../../../src/shared/qcow2/format/header.ts';
import { readCowbellRecord, withCowbellRecord } from '../../../src/shared/qcow2/format/cowbell-record.ts';
import { parseSnapshotTable, serializeSnapshotTable, snapshotTableLength, type SnapshotEntry } from '../../../src/shared/qcow2/format/snapshot-table.ts';
import { readImageInfo } from '../../../src/shared/qcow2/image/info.ts';
import { MAX_SNAPSHOT_NOTE_BYTES, type SnapshotTree } from '../../../src/shared/qcow2/model.ts';
import { rewriteImage } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { changeSnapshotNote, changeSnapshotName, readSnapshotTree, removeSnapshot, revertToSnapshot, takeSnapshot } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { MiB } from '../../helpers/image-matrix.ts';
import { qemuImg, qemuInfo, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { expectCheckClean, fileHash, rawSnapshotEntries } from '../../helpers/snapshot-scenario.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

const CLUSTER = 64 * 1024;
const LONG_NOTE = `${'Vor dem Upgrade — ünïcödé ✓ '.repeat(20)}`.slice(0, 400);

async function newImage(name: string): Promise<string> {
  const image = folder.file(name);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${CLUSTER}`, image, String(4 * MiB)]);
  return image;
}

async function writeClusters(image: string, first: number, count: number, pattern: number): Promise<void> {
  await qemuIo(image, [`write -P ${pattern} ${first * CLUSTER} ${count * CLUSTER}`]);
}

function notes(tree: SnapshotTree): Record<string, string | undefined> {
  return Object.fromEntries(tree.snapshots.map((node) => [node.name, node.note]));
}

/** qemu-img check is clean, and qemu-img info and snapshot -l list exactly these snapshots. */
async function expectQemuHappy(expect: ExpectStatic, image: string, names: string[], label: string): Promise<void> {
  await expectCheckClean(expect, image, label);
  expect(((await qemuInfo(image)).snapshots ?? []).map((snapshot) => snapshot.name), `${label}: qemu-img info`).toEqual(names);
  const listed = await qemuImg(['snapshot', '-l', image]);
  expect(listed.code, `${label}: qemu-img snapshot -l`).toBe(0);
  for (const name of names) expect(listed.stdout, `${label}: qemu-img snapshot -l lists ${name}`).toContain(` ${name} `);
}

function codeOf(work: () => unknown): string {
  try {
    work();
  } catch (error) {
    return error instanceof Qcow2Error ? error.code : `not a Qcow2Error: ${String(error)}`;
  }
  return 'no error';
}

describe('snapshot notes survive qemu-img snapshot -c, -d and -a', { timeout: 60_000 }, () => {
  it('notes Cowbell sets stay through qemu-img working on the other snapshots, with qemu-img check clean', async ({ expect }) => {
    const image = await newImage('survive.qcow2');
    await writeClusters(image, 0, 4, 1);
    takeSnapshot(image, 'A', undefined, 'fresh install');
    await writeClusters(image, 10, 1, 2);
    takeSnapshot(image, 'B');
    changeSnapshotNote(image, 'B', LONG_NOTE);
    await writeClusters(image, 20, 1, 3);
    takeSnapshot(image, 'C', undefined, 'C: 🚀');
    const expected = { A: 'fresh install', B: LONG_NOTE, C: 'C: 🚀' };
    expect(notes(readSnapshotTree(image))).toEqual(expected);
    await expectQemuHappy(expect, image, ['A', 'B', 'C'], 'after notes');
    expect(readImageInfo(image).snapshots?.map((snapshot) => snapshot.note)).toEqual(['fresh install', LONG_NOTE, 'C: 🚀']);
    const entries = rawSnapshotEntries(image);

    const step = async (args: string[], names: string[], label: string): Promise<void> => {
      await qemuImg(['snapshot', ...args, image]);
      await expectQemuHappy(expect, image, names, label);
      const tree = readSnapshotTree(image);
      for (const name of ['A', 'B', 'C'].filter((kept) => names.includes(kept))) {
        expect(tree.snapshots.find((node) => node.name === name)?.note, `${label}: ${name}'s note`).toBe(expected[name as keyof typeof expected]);
        const id = tree.snapshots.find((node) => node.name === name)?.id ?? '';
        expect(rawSnapshotEntries(image).get(id), `${label}: ${name}'s entry byte for byte`).toEqual(entries.get(id));
      }
    };
    await step(['-c', 'Q'], ['A', 'B', 'C', 'Q'], 'qemu-img snapshot -c Q');
    await step(['-a', 'A'], ['A', 'B', 'C', 'Q'], 'qemu-img snapshot -a A');
    await step(['-d', 'Q'], ['A', 'B', 'C'], 'qemu-img snapshot -d Q');
    await step(['-d', 'B'], ['A', 'C'], 'qemu-img snapshot -d B (a noted one)');
    // The tree is still read: C's parent B is gone, so C's is inferred; the notes are unaffected.
    expect(readSnapshotTree(image).snapshots.map((node) => [node.name, node.parentInferred])).toEqual([['A', false], ['C', true]]);
  });

  it("a note on a snapshot qemu-img made survives qemu-img's own operations, and that snapshot's parent stays inferred", async ({ expect }) => {
    const image = await newImage('qemu-made.qcow2');
    await writeClusters(image, 0, 2, 1);
    await qemuImg(['snapshot', '-c', 'Q1', image]);
    await writeClusters(image, 5, 1, 2);
    await qemuImg(['snapshot', '-c', 'Q2', image]);
    changeSnapshotNote(image, 'Q2', 'noted by Cowbell');
    await expectQemuHappy(expect, image, ['Q1', 'Q2'], 'note on Q2');
    let tree = readSnapshotTree(image);
    expect(tree.snapshots.map((node) => [node.name, node.parentId, node.parentInferred, node.note])).toEqual([
      ['Q1', null, false, undefined],
      ['Q2', '1', true, 'noted by Cowbell'],
    ]);
    await qemuImg(['snapshot', '-a', 'Q1', image]);
    await qemuImg(['snapshot', '-c', 'Q3', image]);
    await qemuImg(['snapshot', '-d', 'Q1', image]);
    await expectQemuHappy(expect, image, ['Q2', 'Q3'], 'after qemu-img -a, -c, -d');
    tree = readSnapshotTree(image);
    expect(notes(tree)).toEqual({ Q2: 'noted by Cowbell', Q3: undefined });
  });

  it("a note on qemu-img's snapshot does not revive Cowbell's mark of the current state's parent from before it", async ({ expect }) => {
    const image = await newImage('mark.qcow2');
    await writeClusters(image, 0, 2, 1);
    takeSnapshot(image, 'A');
    // Q is taken right after A (the same state), then the disk moves on: Q is the later of two equally close snapshots.
    await qemuImg(['snapshot', '-c', 'Q', image]);
    await writeClusters(image, 8, 1, 2);
    const before = readSnapshotTree(image);
    expect({ parent: before.currentParentId, inferred: before.currentParentInferred }).toEqual({ parent: '2', inferred: true });
    changeSnapshotNote(image, 'Q', 'taken by qemu-img');
    const after = readSnapshotTree(image);
    expect({ parent: after.currentParentId, inferred: after.currentParentInferred }).toEqual({ parent: '2', inferred: true });
  });
});

describe('setting, changing and clearing a note', { timeout: 60_000 }, () => {
  it('a note can be changed and cleared; rename, revert and delete of other snapshots keep it', async ({ expect }) => {
    const image = await newImage('edit.qcow2');
    await writeClusters(image, 0, 1, 1);
    takeSnapshot(image, 'one', undefined, 'first words');
    takeSnapshot(image, 'two', undefined, 'to be deleted');
    changeSnapshotNote(image, '1', 'second words');
    expect(notes(readSnapshotTree(image))).toEqual({ one: 'second words', two: 'to be deleted' });
    changeSnapshotName(image, 'one', 'uno');
    revertToSnapshot(image, 'two');
    takeSnapshot(image, 'three');
    removeSnapshot(image, 'two');
    expect(notes(readSnapshotTree(image))).toEqual({ uno: 'second words', three: undefined });
    changeSnapshotNote(image, 'uno', '');
    expect(notes(readSnapshotTree(image))).toEqual({ uno: undefined, three: undefined });
    expect(readImageInfo(image).snapshots?.some((snapshot) => 'note' in snapshot)).toBe(false);
    await expectQemuHappy(expect, image, ['uno', 'three'], 'after the edits');
  });

  it('a longer note, a NUL, and an unknown snapshot are refused with nothing written', async ({ expect }) => {
    const image = await newImage('refuse.qcow2');
    await writeClusters(image, 0, 1, 1);
    takeSnapshot(image, 'one', undefined, 'kept');
    const hash = fileHash(image);
    expect(codeOf(() => changeSnapshotNote(image, 'one', 'x'.repeat(MAX_SNAPSHOT_NOTE_BYTES + 1)))).toBe('NOTE_TOO_LONG');
    expect(codeOf(() => changeSnapshotNote(image, 'one', 'ü'.repeat(MAX_SNAPSHOT_NOTE_BYTES / 2 + 1)))).toBe('NOTE_TOO_LONG');
    expect(codeOf(() => changeSnapshotNote(image, 'one', 'a\0b'))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => changeSnapshotNote(image, 'nope', 'x'))).toBe('SNAPSHOT_NOT_FOUND');
    expect(codeOf(() => takeSnapshot(image, 'two', undefined, 'x'.repeat(MAX_SNAPSHOT_NOTE_BYTES + 1)))).toBe('NOTE_TOO_LONG');
    expect(fileHash(image)).toBe(hash);
    expect(notes(readSnapshotTree(image))).toEqual({ one: 'kept' });
  });

  it("a snapshot whose extra data holds another program's bytes gets no note (FOREIGN_EXTRA_DATA), and nothing is written", async ({ expect }) => {
    const image = await newImage('foreign.qcow2');
    await writeClusters(image, 0, 1, 1);
    await qemuImg(['snapshot', '-c', 'foreign', image]);
    appendForeignExtraData(image, 'foreign');
    await expectCheckClean(expect, image, 'patched');
    const hash = fileHash(image);
    expect(codeOf(() => changeSnapshotNote(image, 'foreign', 'hello'))).toBe('FOREIGN_EXTRA_DATA');
    expect(fileHash(image)).toBe(hash);
  });
});

describe("QEMU's bound on extra data", { timeout: 60_000 }, () => {
  it('a revert whose mark would push a full record past 1024 bytes is refused before anything is written', async ({ expect }) => {
    const image = await newImage('bound.qcow2');
    await writeClusters(image, 0, 1, 1);
    takeSnapshot(image, 'A');
    takeSnapshot(image, 'B');
    // B's record with a 456-byte parent id and a full note takes exactly 1024 bytes; the
    // current-parent mark (8 bytes of L1 checksum) would not fit beside them.
    rewriteEntries(image, (entry) => {
      if (entry.name !== 'B') return entry;
      const record = readCowbellRecord(entry);
      if (record === null) throw new Error("B has no Cowbell record");
      const extraData = withCowbellRecord(entry, { ...record, parentId: '9'.repeat(456), currentParent: false, activeL1Checksum: undefined, note: 'n'.repeat(MAX_SNAPSHOT_NOTE_BYTES) }, 4 * MiB);
      expect(extraData.length).toBe(1024);
      return { ...entry, extraData };
    });
    await expectCheckClean(expect, image, 'with a 1024-byte record');
    const hash = fileHash(image);
    expect(codeOf(() => revertToSnapshot(image, 'B'))).toBe('NOTE_TOO_LONG');
    expect(fileHash(image)).toBe(hash);
    // Clearing the note makes room again.
    changeSnapshotNote(image, 'B', '');
    revertToSnapshot(image, 'B');
    await expectQemuHappy(expect, image, ['A', 'B'], 'after the revert');
  });
});

describe("Cowbell's rewrites keep the notes", { timeout: 120_000 }, () => {
  for (const compression of ['compress', 'keep'] as const) {
    it(`${compression === 'compress' ? 'compress' : 'compact'}: every note as it was, qemu-img check clean`, async ({ expect }) => {
      const image = await newImage(`rewrite-${compression}.qcow2`);
      await writeClusters(image, 0, 3, 1);
      takeSnapshot(image, 'A', undefined, 'α');
      await writeClusters(image, 4, 2, 2);
      takeSnapshot(image, 'B', undefined, LONG_NOTE);
      await qemuImg(['snapshot', '-c', 'Q', image]);
      changeSnapshotNote(image, 'Q', 'qemu-made, noted');
      await writeClusters(image, 7, 1, 3);
      const before = readSnapshotTree(image);
      rewriteImage({ source: image, compression });
      const after = readSnapshotTree(image);
      expect(notes(after)).toEqual(notes(before));
      expect(notes(after)).toEqual({ A: 'α', B: LONG_NOTE, Q: 'qemu-made, noted' });
      await expectQemuHappy(expect, image, ['A', 'B', 'Q'], `after ${compression}`);
    });
  }
});

/** Gives the named snapshot 16 bytes of extra data Cowbell does not know (another program's), in place. */
function appendForeignExtraData(image: string, name: string): void {
  rewriteEntries(image, (entry) => {
    if (entry.name !== name) return entry;
    const extraData = new Uint8Array(entry.extraData.length + 16).fill(0xa5);
    extraData.set(entry.extraData);
    return { ...entry, extraData };
  });
}

/** Rewrites the snapshot table in place with `change` applied to each entry (the table must stay inside its clusters). */
function rewriteEntries(image: string, change: (entry: SnapshotEntry) => SnapshotEntry): void {
  const bytes = new Uint8Array(fs.readFileSync(image));
  const header = parseHeader(bytes.subarray(0, 1024 * 1024), bytes.length);
  const tableBytes = bytes.subarray(header.snapshotsOffset);
  const oldLength = snapshotTableLength(tableBytes, header.snapshotCount);
  const entries = parseSnapshotTable(tableBytes, header.snapshotCount, header.version).map(change);
  const table = serializeSnapshotTable(entries);
  if (Math.ceil(table.length / CLUSTER) > Math.ceil(oldLength / CLUSTER)) throw new Error('the patched snapshot table outgrew its clusters');
  const fd = fs.openSync(image, 'r+');
  try {
    fs.writeSync(fd, table, 0, table.length, header.snapshotsOffset);
  } finally {
    fs.closeSync(fd);
  }
}
