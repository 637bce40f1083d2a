/**
 * Issue 21 part 1: a change on an image whose metadata it would follow is damaged refuses up
 * front with CORRUPT and the advice to repair, leaving the file byte-identical; a leak (a refcount
 * above its references) is harmless and does not stop a change. The corpus (test/engine/corrupt)
 * runs every damage kind; these are the messages, one per kind of reference.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { parseCryptoHeaderExtension } from '../../../src/shared/qcow2/format/crypto-header-extension.ts';
import { EXT_CRYPTO_HEADER, findExtension } from '../../../src/shared/qcow2/format/header.ts';
import { REPAIR_ADVICE, refuseUnsoundMetadata } from '../../../src/shared/qcow2/image/change-validation.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { changeSnapshotName, removeSnapshot, revertToSnapshot, takeSnapshot, withImage } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { rewriteImage } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { appendCluster, COPIED, getRefcount, hostClusterOf, l2EntryPosition, layout, readU64, setRefcount, snapshotTable, writeU64 } from '../../helpers/qcow2-poke.ts';
import { resizeImagePath } from '../../../src/shared/qcow2/snapshots/resize.ts';
import { checkExitCode, checkImagePath } from '../../../src/shared/qcow2/check/check.ts';
import { createLuksImage, qemuIoEncrypted } from '../../helpers/encrypted-images.ts';
import { qemuCheck, qemuImg, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';

let folder: TempDir;
let pristine: string;
beforeAll(async () => {
  folder = tempDir();
  pristine = folder.file('pristine.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', pristine, '4M']);
  await qemuIo(pristine, ['write -P 1 0 128k']);
  await qemuImg(['snapshot', '-c', 'one', pristine]);
  await qemuIo(pristine, ['write -P 2 0 64k']);
});
afterAll(() => folder.cleanup());

const CHANGES: [string, (file: string) => unknown][] = [
  ['snapshot create', (file) => takeSnapshot(file, 'new')],
  ['snapshot apply', (file) => revertToSnapshot(file, 'one')],
  ['snapshot delete', (file) => removeSnapshot(file, 'one')],
  ['snapshot rename', (file) => changeSnapshotName(file, 'one', 'renamed')],
  ['guest write', (file) => withImage(file, 'write', (image) => image.write(new Uint8Array(512).fill(7), 0))],
  ['compact', (file) => rewriteImage({ source: file, compression: 'keep' })],
];

function damaged(name: string, damage: (file: string) => void): string {
  const file = folder.file(`${name}.qcow2`);
  fs.copyFileSync(pristine, file);
  damage(file);
  return file;
}

/** Where the data of the image's encryption header extension (offset, then length) lies in the file. */
function cryptoExtensionDataAt(file: string): number {
  const bytes = fs.readFileSync(file);
  let position = bytes.readUInt32BE(100);
  for (;;) {
    const type = bytes.readUInt32BE(position);
    const length = bytes.readUInt32BE(position + 4);
    if (type === EXT_CRYPTO_HEADER) return position + 8;
    if (type === 0) throw new Error(`${file} has no encryption header extension`);
    position += 8 + Math.ceil(length / 8) * 8;
  }
}

function refusal(file: string, change: (file: string) => unknown): Qcow2Error {
  const before = fs.readFileSync(file);
  let caught: unknown = null;
  try {
    change(file);
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(Qcow2Error);
  expect(fs.readFileSync(file).equals(before)).toBe(true);
  return caught as Qcow2Error;
}

/** What is damaged, the refusal's words, the damage, and whether a rewrite (which computes refcounts afresh) must refuse too. */
const DAMAGES: [string, RegExp, (file: string) => void, boolean?][] = [
  ['an unaligned data cluster', /unaligned host offset/, (file) => writeU64(file, l2EntryPosition(file, 0), COPIED | (readU64(file, l2EntryPosition(file, 0)) + 0x2a00n))],
  ['a data cluster past the end of the file', /past the end of the file/, (file) => writeU64(file, l2EntryPosition(file, 0), COPIED | 0xff_ffff_0000n)],
  ['guest data in a refcount block', /overlaps a refcount block/, (file) => writeU64(file, l2EntryPosition(file, 0), COPIED | readU64(file, layout(file).refcountTableOffset))],
  ['a data cluster whose refcount is 0', /referenced 1 time but its refcount is 0/, (file) => setRefcount(file, Number(readU64(file, l2EntryPosition(file, 0)) & 0xff_ffff_fe00n) / 65536, 0), false],
  ['an unaligned refcount block', /refcount table entry 0 is invalid/, (file) => writeU64(file, layout(file).refcountTableOffset, readU64(file, layout(file).refcountTableOffset) + 0x200n)],
];

describe('a change on damaged metadata', () => {
  for (const [what, message, damage, rewriteRefuses] of DAMAGES) {
    it(`${what}: every change refuses with CORRUPT and the advice to repair, and the file stays as it was`, () => {
      const file = damaged(what.replaceAll(' ', '-'), damage);
      for (const [change, run] of CHANGES.filter(([name]) => rewriteRefuses !== false || name !== 'compact')) {
        const error = refusal(file, run);
        expect({ change, code: error.code }).toEqual({ change, code: 'CORRUPT' });
        expect(error.message).toMatch(message);
        if (change !== 'compact') expect(error.message).toContain(REPAIR_ADVICE);
      }
    });
  }

  // Was: the validation walked an L2 table once however many L1 tables named it, so a data cluster
  // in a table a snapshot shares with the current state needed one reference, where QEMU counts one
  // per state; with its refcount 1 (not 2), deleting the snapshot freed it under the current state.
  it('a data cluster in an L2 table a snapshot shares, one refcount short: every change refuses, as check reports it', async () => {
    const file = folder.file('shared-l2-short.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', file, '4M']);
    await qemuIo(file, ['write -P 0xa1 0 64k']);
    await qemuImg(['snapshot', '-c', 'one', file]);
    const cluster = hostClusterOf(file, 0);
    expect(getRefcount(file, cluster)).toBe(2);
    setRefcount(file, cluster, 1);
    expect(checkImagePath(file).corruptions).toBeGreaterThan(0);
    for (const [change, run] of CHANGES.filter(([name]) => name !== 'compact')) {
      const error = refusal(file, run);
      expect({ change, code: error.code }).toEqual({ change, code: 'CORRUPT' });
      expect(error.message).toMatch(/referenced 2 times but its refcount is 1/);
    }
  });

  // Found by an audit: QEMU refuses to read a zero flag in a version 2 image; Cowbell read zeros,
  // and snapshot create and compact kept the entry (compact's "verified" copy unreadable to QEMU too).
  it('a zero flag in a compat 0.10 image: every change refuses, pointing to the upgrade that makes it valid', async () => {
    const file = folder.file('v2-zero-flag.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', file, '1M']);
    await qemuIo(file, ['write -P 0x11 0 64k', 'write -P 0x22 64k 64k']);
    await qemuImg(['snapshot', '-c', 'one', file]);
    writeU64(file, l2EntryPosition(file, 64 * 1024), 1n);
    await expect(qemuIo(file, ['read 64k 4k'])).rejects.toThrow(/exited with 1/);
    const before = fs.readFileSync(file);
    for (const [change, run] of CHANGES) {
      const error = refusal(file, run);
      expect({ change, code: error.code }).toEqual({ change, code: 'CORRUPT' });
      expect(error.message).toMatch(/compat 0\.10.*qemu-img amend -o compat=1\.1/);
      expect(error.message).not.toContain(REPAIR_ADVICE);
    }
    expect(fs.readFileSync(file).equals(before)).toBe(true);
  });

  // Found by an audit: the advice to run check -r all, which cannot fix it, was given again and again.
  it('an extended L2 subcluster both allocated and zero: refused with no repair advice (none can fix it), convert --rescue named', async () => {
    const file = folder.file('alloc-and-zero.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on', file, '1M']);
    await qemuIo(file, ['write -P 0x11 0 64k']);
    const bitmap = l2EntryPosition(file, 0, true) + 8;
    writeU64(file, bitmap, readU64(file, bitmap) | (1n << 32n));
    const error = refusal(file, (path) => takeSnapshot(path, 'new'));
    expect(error.code).toBe('CORRUPT');
    expect(error.message).toMatch(/both allocated and zero.*convert --rescue/);
    expect(error.message).not.toContain(REPAIR_ADVICE);
  });

  // Found by the damaged-images audit: commit and a shrink rewrote the table in place, changing the snapshot with it.
  it("a snapshot whose L1 table is the current state's own: every change in place refuses with the repair advice (qemu-img's repair fails there); check -r all gives the snapshot its own copy, and so does compact", async () => {
    const file = folder.file('l1-alias.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', file, '8M']);
    await qemuIo(file, ['write -P 0xa1 0 1M', 'write -P 0xa6 6M 1M']);
    await qemuImg(['snapshot', '-c', 'one', file]);
    await qemuIo(file, ['write -P 0xbb 2M 1M']);
    const [entry] = snapshotTable(file);
    if (entry === undefined) throw new Error('no snapshot');
    writeU64(file, entry.position, BigInt(layout(file).l1Offset));
    // What the damaged snapshot reads now: the current state (its own table is lost to the damage).
    const current = await qemuImg(['convert', '-O', 'raw', file, folder.file('alias-current.raw')]).then(() => fs.readFileSync(folder.file('alias-current.raw')));
    // Every refcount raised to its references, as a repair that only raises would (qemu-img's own fails here and marks the image corrupt).
    for (const line of checkImagePath(file).messages) {
      const low = /^ERROR cluster (\d+) refcount=(\d+) reference=(\d+)$/.exec(line);
      if (low !== null) setRefcount(file, Number(low[1]), Number(low[3]));
    }
    const before = fs.readFileSync(file);
    const changes: [string, (path: string) => unknown][] = [
      ...CHANGES.filter(([change]) => change !== 'compact'),
      ['shrink', (path) => resizeImagePath(path, 4 * 1024 * 1024, { shrink: true, discardData: true })],
      ['grow', (path) => resizeImagePath(path, 16 * 1024 * 1024)],
    ];
    for (const [change, run] of changes) {
      const error = refusal(file, run);
      expect({ change, code: error.code }).toEqual({ change, code: 'CORRUPT' });
      expect(error.message).toMatch(/is also the current state's L1 table/);
      expect(error.message).toContain(REPAIR_ADVICE);
    }
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    const snapshotOne = async (image: string, name: string): Promise<Buffer> =>
      qemuImg(['convert', '-l', 'snapshot.name=one', '-O', 'raw', image, folder.file(name)]).then(() => fs.readFileSync(folder.file(name)));

    const copy = folder.file('l1-alias-compacted.qcow2');
    rewriteImage({ source: file, target: copy, compression: 'keep' });
    expect((await qemuCheck(copy)).code).toBe(0);
    const [copied] = snapshotTable(copy);
    expect(copied?.l1Offset).not.toBe(layout(copy).l1Offset);
    expect((await snapshotOne(copy, 'one-compacted.raw')).equals(current)).toBe(true);

    const repaired = checkImagePath(file, { repair: 'all' });
    expect(checkExitCode(repaired), repaired.messages.slice(-3).join('\n')).toBe(0);
    expect(repaired.messages.join('\n')).toMatch(/Repairing snapshot 1 "one": its L1 table at 0x[0-9a-f]+ is another state's; it now has its own copy/);
    expect((await qemuCheck(file)).code).toBe(0);
    expect(snapshotTable(file)[0]?.l1Offset).not.toBe(layout(file).l1Offset);
    // Now a change in place goes ahead, and the snapshot keeps what it read.
    resizeImagePath(file, 16 * 1024 * 1024);
    await qemuIo(file, ['write -P 0xcc 0 1M']);
    expect((await qemuCheck(file)).code).toBe(0);
    // (qemu-img 7.2 reads a snapshot at the disk's current size: its first 8 MiB are the snapshot's.)
    expect((await snapshotOne(file, 'one-repaired.raw')).subarray(0, current.length).equals(current)).toBe(true);
  });

  it('the rest of an open whose change was refused is read-only', () => {
    const file = damaged('read-only-after', DAMAGES[0]?.[2] ?? (() => {}));
    const image = Qcow2Image.open(file);
    try {
      expect(() => image.write(new Uint8Array(512), 0)).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
      expect(() => image.write(new Uint8Array(512), 0)).toThrow(expect.objectContaining({ code: 'READ_ONLY' }));
    } finally {
      image.close();
    }
  });

  it('the LUKS area counts as referenced: with its refcount 0 (allocation would hand out the key material) a snapshot is refused', async () => {
    const file = folder.file('luks.qcow2');
    await createLuksImage(file, 'cowbell');
    const image = Qcow2Image.open(file, { readOnly: true });
    const extension = findExtension(image.header, EXT_CRYPTO_HEADER);
    image.close();
    if (extension === undefined) throw new Error('qemu-img made a LUKS image without its extension');
    const area = parseCryptoHeaderExtension(extension.data, 65536);
    setRefcount(file, area.offset / 65536, 0);
    const error = refusal(file, (target) => takeSnapshot(target, 'new'));
    expect(error.code).toBe('CORRUPT');
    expect(error.message).toMatch(/referenced 1 time but its refcount is 0/);
  });

  // Was: check counted only the extension's stated range, so the key slots past a damaged length were
  // "leaked clusters", freed by a repair and overwritten by the next allocation: the disk was lost for good.
  it('a LUKS area whose extension length was damaged: check keeps the key material the LUKS header names; repair and a snapshot leave it', async () => {
    const file = folder.file('luks-short.qcow2');
    await createLuksImage(file, 'cowbell');
    await qemuIoEncrypted(file, 'cowbell', ['write -P 0xab 0 4M']);
    const lengthAt = cryptoExtensionDataAt(file) + 8;
    const length = readU64(file, lengthAt);
    writeU64(file, lengthAt, 4096n);
    const found = checkImagePath(file);
    expect(found.corruptions ?? 0, 'the short area, reported').toBe(1);
    expect(found.leaks ?? 0, 'the key slots past it, not leaks').toBe(0);
    checkImagePath(file, { repair: 'leaks' });
    checkImagePath(file, { repair: 'all' });
    takeSnapshot(file, 'after the repairs');
    // With the length mended, QEMU unlocks the disk and reads its data.
    writeU64(file, lengthAt, length);
    expect(await qemuIoEncrypted(file, 'cowbell', ['read -P 0xab 0 4M'])).toMatch(/read 4194304\/4194304 bytes/);
  });

  it('data in an external data file is not a reference into this file: such an image passes the validation', async () => {
    const file = folder.file('data-file.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `data_file=${folder.file('data-file.raw')},data_file_raw=on`, file, '4M']);
    await qemuIo(file, ['write -P 5 0 1M']);
    const image = Qcow2Image.open(file, { readOnly: true });
    try {
      expect(() => refuseUnsoundMetadata(image)).not.toThrow();
    } finally {
      image.close();
    }
  });

  it('a leak (a refcount above its references) does not stop a change, and qemu-img check stays leaks-only', async () => {
    const file = damaged('leak', (target) => setRefcount(target, appendCluster(target), 1));
    expect((await qemuCheck(file)).code).toBe(3);
    takeSnapshot(file, 'new');
    revertToSnapshot(file, 'one');
    changeSnapshotName(file, 'one', 'renamed');
    withImage(file, 'write', (image) => image.write(new Uint8Array(512).fill(7), 0));
    removeSnapshot(file, 'renamed');
    const after = await qemuCheck(file);
    expect(after.report?.corruptions ?? 0).toBe(0);
  });
});
