/**
 * Hostile NTFS bytes: each damage a reader must refuse with FILESYSTEM_CORRUPT (torn records,
 * attributes past their record, runs outside the volume, index cycles, impossible sizes, foreign
 * extension records), then a seeded-random campaign of damaged volumes through the fuzz harness's
 * ntfs-walk target (test/engine/fuzz/ntfs-targets.ts), where anything but a typed error, a hang or a huge allocation is a finding.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../../src/shared/qcow2/errors.ts';
import type { VolumeBytes } from '../../../../src/shared/qcow2/files/filesystem.ts';
import { NTFS_READER } from '../../../../src/shared/qcow2/files/ntfs/ntfs-reader.ts';
import { ntfsinfoModifiedSeconds, ntfsls } from '../../../helpers/ntfs-tools.ts';
import { tempDir, type TempDir } from '../../../helpers/qemu.ts';
import { runWalkCampaign } from '../../fuzz/walk-campaign.ts';
import { findNtfsStructures, randomNtfsDamage, type NtfsStructures } from './ntfs-mutations.ts';
import { unpackNtfsFixture } from './ntfs-fixture.ts';

const CASES = Number(process.env.NTFS_FUZZ_CASES ?? 60);
const BASE_SEED = Number(process.env.FUZZ_SEED ?? 22);

let folder: TempDir;
let pristine: Uint8Array;
let structures: NtfsStructures;

beforeAll(() => {
  folder = tempDir();
  pristine = new Uint8Array(fs.readFileSync(unpackNtfsFixture(folder.file('ntfs.img'))));
  structures = findNtfsStructures(pristine);
});
afterAll(() => folder.cleanup());

function memoryVolume(bytes: Uint8Array): VolumeBytes {
  return {
    length: bytes.length,
    read: async (buffer, offset) => {
      if (offset < 0 || offset + buffer.length > bytes.length) throw new RangeError(`read at ${offset} outside the volume`);
      buffer.set(bytes.subarray(offset, offset + buffer.length));
    },
  };
}

const view = (bytes: Uint8Array): DataView => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/**
 * The in-use base record of a file or folder named `name`, found by its UTF-16 bytes (a folder's
 * record holds its children's names too, and an extension record may hold the file's name).
 */
function recordNamed(bytes: Uint8Array, name: string, directory = false): number {
  const needle = Buffer.from(name, 'utf16le');
  const isDirectory = (offset: number): boolean => (view(bytes).getUint16(offset + 0x16, true) & 2) !== 0;
  const holder = structures.records.find(
    (offset) => isDirectory(offset) === directory && Buffer.from(bytes.subarray(offset, offset + structures.recordSize)).includes(needle),
  );
  if (holder === undefined) throw new Error(`no record named ${name}`);
  const base = Number(view(bytes).getBigUint64(holder + 0x20, true) & 0xffff_ffff_ffffn);
  if (base === 0) return holder;
  const record = structures.records.find((offset) => view(bytes).getUint32(offset + 0x2c, true) === base);
  if (record === undefined) throw new Error(`no base record ${base} for ${name}`);
  return record;
}

/** Offsets (in the image) of a record's attributes of one type. */
function attributesOfType(bytes: Uint8Array, record: number, type: number): number[] {
  const data = view(bytes);
  const found: number[] = [];
  let position = record + data.getUint16(record + 0x14, true);
  while (data.getUint32(position, true) !== 0xffffffff) {
    if (data.getUint32(position + 4, true) === 0) throw new Error('an attribute of length 0');
    if (data.getUint32(position, true) === type) found.push(position);
    position += data.getUint32(position + 4, true);
  }
  return found;
}

/** Index entries (offsets in the image) from an index header at `header`. */
function indexEntries(bytes: Uint8Array, header: number): number[] {
  const data = view(bytes);
  const entries: number[] = [];
  let position = header + data.getUint32(header, true);
  for (;;) {
    entries.push(position);
    if (data.getUint16(position + 0x0c, true) & 2) return entries;
    position += data.getUint16(position + 8, true);
  }
}

async function expectCorrupt(bytes: Uint8Array, use: (filesystem: Awaited<ReturnType<typeof NTFS_READER.open>>) => Promise<unknown>): Promise<string> {
  const error = await (async () => {
    try {
      await use(await NTFS_READER.open(memoryVolume(bytes)));
      return null;
    } catch (thrown) {
      return thrown;
    }
  })();
  expect(error).toBeInstanceOf(Qcow2Error);
  expect((error as Qcow2Error).code).toBe('FILESYSTEM_CORRUPT');
  return (error as Qcow2Error).message;
}

describe('NTFS reader on damaged volumes', { timeout: 60_000 }, () => {
  it('reads the undamaged volume (so each damage below is what fails)', async () => {
    const filesystem = await NTFS_READER.open(memoryVolume(pristine));
    expect((await filesystem.list('/many')).length).toBe(400);
    expect((await filesystem.stat('/fragmented.bin')).size).toBe(819_200);
    expect((await filesystem.list('/links')).length).toBe(21);
  });

  it('refuses a torn MFT record (update sequence mismatch)', async () => {
    const damaged = new Uint8Array(pristine);
    const documents = recordNamed(damaged, 'Documents', true);
    damaged[documents + 510] = damaged[documents + 510]! ^ 0xff;
    expect(await expectCorrupt(damaged, (filesystem) => filesystem.stat('/Documents'))).toMatch(/update sequence/);
  });

  it('still lists a file whose record is torn, from its folder index, but refuses its stat and read', async () => {
    const damaged = new Uint8Array(pristine);
    const report = recordNamed(damaged, 'report.txt');
    damaged[report + 1022] = damaged[report + 1022]! ^ 0xff;
    // ntfsls skips an entry whose record fails: compare with the undamaged volume. ntfs-3g refreshes the index's copy of
    // the times when a file's times change (the record's own $FILE_NAME keeps its creation-time copy), so it matches the file's own.
    const [indexed] = (await ntfsls(folder.file('ntfs.img'), '/Documents')).filter((entry) => entry.name === 'report.txt');
    const listed = (await (await NTFS_READER.open(memoryVolume(damaged))).list('/Documents')).find((entry) => entry.name === 'report.txt');
    expect(listed).toMatchObject({ kind: 'file', size: indexed!.size, path: '/Documents/report.txt' });
    expect(Math.floor(listed!.mtimeMs! / 1000)).toBe(await ntfsinfoModifiedSeconds(folder.file('ntfs.img'), '/Documents/report.txt'));
    await expectCorrupt(damaged, (filesystem) => filesystem.stat('/Documents/report.txt'));
    await expectCorrupt(damaged, (filesystem) => filesystem.read('/Documents/report.txt', new Uint8Array(8), 0));
  });

  it('refuses a boot sector whose volume is larger than its partition, or whose clusters are absurd', async () => {
    const larger = new Uint8Array(pristine);
    view(larger).setBigUint64(0x28, BigInt(pristine.length / 512 + 8), true);
    await expectCorrupt(larger, async () => undefined);
    const clusters = new Uint8Array(pristine);
    clusters[0x0d] = 0x7f;
    await expectCorrupt(clusters, async () => undefined);
  });

  it('refuses an attribute whose length runs past its record', async () => {
    const damaged = new Uint8Array(pristine);
    const [data] = attributesOfType(damaged, recordNamed(damaged, 'fragmented.bin'), 0x80);
    expect(data).toBeDefined();
    view(damaged).setUint32(data! + 4, 0x2000, true);
    expect(await expectCorrupt(damaged, (filesystem) => filesystem.stat('/fragmented.bin'))).toMatch(/past the record/);
  });

  it('refuses data runs that point outside the volume or overrun the attribute', async () => {
    const outside = new Uint8Array(pristine);
    const record = recordNamed(outside, 'fragmented.bin');
    const [data] = attributesOfType(outside, record, 0x80);
    const runs = data! + view(outside).getUint16(data! + 0x20, true);
    // The first run's header says how wide its fields are; its LCN field is made the largest positive value.
    const header = outside[runs]!;
    const lengthSize = header & 0x0f;
    const offsetSize = header >> 4;
    for (let index = 0; index < offsetSize; index++) outside[runs + 1 + lengthSize + index] = index === offsetSize - 1 ? 0x7f : 0xff;
    expect(await expectCorrupt(outside, (filesystem) => filesystem.read('/fragmented.bin', new Uint8Array(16), 0))).toMatch(/outside the volume/);

    const overrun = new Uint8Array(pristine);
    for (let index = 0; index < lengthSize; index++) overrun[runs + 1 + index] = 0xff;
    await expectCorrupt(overrun, (filesystem) => filesystem.stat('/fragmented.bin'));
  });

  it('refuses sizes beyond the clusters a file has', async () => {
    const damaged = new Uint8Array(pristine);
    const [data] = attributesOfType(damaged, recordNamed(damaged, 'sparse.vhd'), 0x80);
    for (const field of [0x28, 0x30, 0x38]) view(damaged).setBigUint64(data! + field, 1n << 52n, true);
    expect(await expectCorrupt(damaged, (filesystem) => filesystem.stat('/sparse.vhd'))).toMatch(/clusters/);
  });

  it('refuses a directory index whose sub-nodes lead to one block twice (a cycle), or a block at the wrong VCN', async () => {
    const cycle = new Uint8Array(pristine);
    const many = recordNamed(cycle, 'many', true);
    const [root] = attributesOfType(cycle, many, 0x90);
    const value = root! + view(cycle).getUint16(root! + 0x14, true);
    const entries = indexEntries(cycle, value + 0x10).filter((entry) => view(cycle).getUint16(entry + 0x0c, true) & 1);
    expect(entries.length).toBeGreaterThanOrEqual(2);
    const subnode = (entry: number): number => entry + view(cycle).getUint16(entry + 8, true) - 8;
    view(cycle).setBigUint64(subnode(entries[1]!), view(cycle).getBigUint64(subnode(entries[0]!), true), true);
    expect(await expectCorrupt(cycle, (filesystem) => filesystem.list('/many'))).toMatch(/reached twice/);

    const moved = new Uint8Array(pristine);
    const block = structures.indexBlocks.find((offset) => Buffer.from(moved.subarray(offset, offset + 4096)).includes(Buffer.from('entry-', 'utf16le')))!;
    view(moved).setBigUint64(block + 0x10, 77n, true);
    expect(await expectCorrupt(moved, (filesystem) => filesystem.list('/many'))).toMatch(/VCN/);
  });

  it('refuses an index entry naming a record past the MFT, and an extension record that belongs to another file', async () => {
    const reference = new Uint8Array(pristine);
    const block = structures.indexBlocks.find((offset) => Buffer.from(reference.subarray(offset, offset + 4096)).includes(Buffer.from('entry-', 'utf16le')))!;
    const [first] = indexEntries(reference, block + 0x18);
    view(reference).setBigUint64(first!, 0x0001_0000_7fff_fff0n, true);
    const name = Buffer.from(reference.subarray(first! + 0x52, first! + 0x52 + reference[first! + 0x50]! * 2)).toString('utf16le');
    // The folder still lists (the entry from its index); the entry itself is refused.
    expect((await (await NTFS_READER.open(memoryVolume(reference))).list('/many')).length).toBe(400);
    expect(await expectCorrupt(reference, (filesystem) => filesystem.stat(`/many/${name}`))).toMatch(/past the MFT/);

    const foreign = new Uint8Array(pristine);
    const original = recordNamed(foreign, 'original.txt');
    const originalNumber = view(foreign).getUint32(original + 0x2c, true);
    const extension = structures.records.find((offset) => Number(view(foreign).getBigUint64(offset + 0x20, true) & 0xffff_ffff_ffffn) === originalNumber);
    expect(extension).toBeDefined();
    view(foreign).setBigUint64(extension! + 0x20, 0x0001_0000_0000_0005n, true);
    expect(await expectCorrupt(foreign, (filesystem) => filesystem.stat('/links/original.txt'))).toMatch(/does not extend it/);
  });

  it('survives seeded-random damage to boot sector, records, attributes, runs and index blocks with typed errors only', async () => {
    const { pristineOutcome, tally, findings } = await runWalkCampaign({
      folder: folder.file('fuzz'),
      target: 'ntfs-walk',
      pristine,
      cases: CASES,
      seed: BASE_SEED,
      damage: (random) => Array.from({ length: 1 + random.int(0, 3) }, () => randomNtfsDamage(pristine, structures, random)).flat(),
      lanes: 2,
    });
    expect(pristineOutcome).toBe('ok');
    expect(findings).toEqual([]);
    // The damage reaches the reader's checks and also leaves volumes that still read.
    expect(tally['FILESYSTEM_CORRUPT'] ?? 0).toBeGreaterThan(CASES / 20);
    expect(tally['ok'] ?? 0).toBeGreaterThan(CASES / 20);
  }, 600_000);
});
