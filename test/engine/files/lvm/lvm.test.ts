/**
 * LVM2 logical volumes inside a state: the disk made by pvcreate/vgcreate/lvcreate/lvextend and
 * mke2fs (fixtures/make-lvm-fixture.sh); what lvs reported (lvm-layout.json) is the reference for
 * where each volume lies, and debugfs on a volume's bytes (gathered from those places) the
 * reference for its files. files-diff inside a volume in two pieces, and hostile metadata.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../../src/shared/qcow2/errors.ts';
import { diffStatesByName } from '../../../../src/shared/qcow2/files/files-diff.ts';
import { isLvmPhysicalVolume, readLogicalVolumes } from '../../../../src/shared/qcow2/files/lvm.ts';
import { parseLvmMetadata } from '../../../../src/shared/qcow2/files/lvm-metadata-text.ts';
import { openStateFiles } from '../../../../src/shared/qcow2/files/state-files.ts';
import { readDiff } from '../../../../src/shared/qcow2/snapshots/operations.ts';
import { writeChangedPieces } from '../../../helpers/changed-ext-disk.ts';
import { debugfsFacts } from '../../../helpers/guest-filesystems.ts';
import { memoryVolumeBytes } from '../../../helpers/raw-volume-bytes.ts';
import { SeededRandom } from '../../../helpers/seeded-random.ts';
import { vouchingOpener } from '../../../helpers/vouching-opener.ts';
import { qemuImg, runTool, tempDir, type TempDir } from '../../../helpers/qemu.ts';

interface Layout {
  group: string;
  partitionOffset: number;
  secondPartitionOffset: number;
  volumes: Record<string, { offset: number; length: number }[]>;
}

const FIXTURES = path.join(import.meta.dirname, 'fixtures');
const layout = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'lvm-layout.json'), 'utf8')) as Layout;
const BIG = (size: number): Buffer => Buffer.from(Array.from({ length: size }, (_, n) => (n * 7 + Math.floor(n / 4096)) % 251));

let folder: TempDir;
let raw = '';
let disk = '';

/** A logical volume's bytes, gathered from where lvs said its extents lie. */
function volumeImage(rawDisk: Buffer, name: string, target: string): void {
  fs.writeFileSync(target, Buffer.concat((layout.volumes[name] ?? []).map((segment) => rawDisk.subarray(segment.offset, segment.offset + segment.length))));
}

beforeAll(async () => {
  folder = tempDir();
  raw = folder.file('lvm.raw');
  fs.writeFileSync(raw, gunzipSync(fs.readFileSync(path.join(FIXTURES, 'lvm-disk.img.gz'))));
  disk = folder.file('lvm.qcow2');
  await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', raw, disk]);
});
afterAll(() => folder.cleanup());

describe('LVM logical volumes', { timeout: 120_000 }, () => {
  it('are listed after their physical volume, named as device-mapper names them, where lvs says their extents lie', async () => {
    const files = await openStateFiles(disk, 'current');
    try {
      const byName = new Map(files.volumes.map((volume) => [volume.name, volume]));
      for (const pv of ['2', '3']) {
        expect(byName.get(pv)).toMatchObject({ physicalVolumeOf: 'fixture-vg', filesystem: null });
        expect(byName.get(pv)?.problem).toBeUndefined();
      }
      for (const [name, segments] of Object.entries(layout.volumes)) {
        const volume = byName.get(`fixture--vg-${name}`);
        expect(volume, name).toMatchObject({ logicalVolume: { group: 'fixture-vg', name }, filesystem: 'ext', segments, length: segments.reduce((total, segment) => total + segment.length, 0) });
      }
      expect(layout.volumes['root']).toHaveLength(2);
      // span lies on both physical volumes of the group, partitions 2 and 3.
      expect(layout.volumes['span']!.map((segment) => segment.offset >= layout.secondPartitionOffset)).toEqual([false, true]);
      expect((await files.list('/')).map((entry) => entry.name)).toEqual(['1', '2', '3', 'fixture--vg-root', 'fixture--vg-data', 'fixture--vg-span']);
    } finally {
      await files.close();
    }
  });

  it('on a disk that is a physical volume itself (no partition table, as a data disk often is) are the disk\'s volumes', async () => {
    const whole = folder.file('whole-pv.raw');
    fs.writeFileSync(whole, fs.readFileSync(raw).subarray(layout.partitionOffset));
    const wholeDisk = folder.file('whole-pv.qcow2');
    await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', whole, wholeDisk]);
    const files = await openStateFiles(wholeDisk, 'current');
    try {
      expect(files.volumes.map((volume) => [volume.name, volume.table, volume.filesystem])).toEqual([
        ['fixture--vg-root', 'none', 'ext'],
        ['fixture--vg-data', 'none', 'ext'],
        ['fixture--vg-span', 'none', null],
      ]);
      // Its second PV (partition 3 of the original disk) is not a volume of this one.
      expect(files.volumes[2]?.problem).toMatch(/span lies partly on a physical volume of fixture-vg that is not on this disk/);
      expect(files.volumes[0]?.segments).toEqual(layout.volumes['root']!.map((segment) => ({ offset: segment.offset - layout.partitionOffset, length: segment.length })));
      expect((await files.list('/')).map((entry) => entry.name)).toEqual(['fixture--vg-root', 'fixture--vg-data', 'fixture--vg-span']);
      expect((await files.list('/fixture--vg-data/srv')).map((entry) => entry.name)).toEqual(['readme.txt']);
    } finally {
      await files.close();
    }
  });

  it('read their files as debugfs reads the same volume, across the two pieces of one and across two physical volumes', async () => {
    const rawDisk = fs.readFileSync(raw);
    const rootImage = folder.file('root.ext4');
    volumeImage(rawDisk, 'root', rootImage);
    const files = await openStateFiles(disk, 'current');
    try {
      const listed = (await files.list('/fixture--vg-root/home/me')).map((entry) => `${entry.name} ${entry.size}`).sort();
      const debugfsListing = (await runTool('debugfs', ['-R', 'ls -l /home/me', rootImage])).stdout;
      for (const line of listed) expect(debugfsListing).toContain(line.split(' ')[0]);
      const notes = Buffer.alloc(64);
      const count = await files.read('/fixture--vg-root/home/me/notes.txt', notes, 0);
      expect(notes.subarray(0, count).toString()).toBe((await runTool('debugfs', ['-R', 'cat /home/me/notes.txt', rootImage])).stdout);
      // big.bin runs from the first piece into the second (its blocks past the first piece's 20 MiB).
      const facts = await debugfsFacts(rootImage, '/home/me/big.bin');
      expect(Math.max(...facts.blocks) * facts.blockBytes).toBeGreaterThan(layout.volumes['root']![0]!.length);
      const big = Buffer.alloc(facts.size);
      for (let offset = 0; offset < big.length; ) offset += await files.read('/fixture--vg-root/home/me/big.bin', big.subarray(offset, offset + 1024 * 1024), offset);
      expect(big.equals(BIG(facts.size))).toBe(true);
      // span's across.bin runs from the first physical volume (partition 2) onto the second (partition 3).
      const across = Buffer.alloc(18 * 1024 * 1024);
      for (let offset = 0; offset < across.length; ) offset += await files.read('/fixture--vg-span/across.bin', across.subarray(offset, offset + 1024 * 1024), offset);
      expect(across.equals(Buffer.from(Array.from({ length: across.length }, (_, n) => (n * 13 + Math.floor(n / 4096)) % 241)))).toBe(true);
      const spanImage = folder.file('span.ext4');
      volumeImage(rawDisk, 'span', spanImage);
      const acrossFacts = await debugfsFacts(spanImage, '/across.bin');
      expect(Math.max(...acrossFacts.blocks) * acrossFacts.blockBytes).toBeGreaterThan(layout.volumes['span']![0]!.length);
    } finally {
      await files.close();
    }
  });

  it('files-diff sees a file changed behind the filesystem’s back in the second piece of a volume (its blocks mapped through the pieces), as the full walk does', async () => {
    const changedDisk = folder.file('changed.qcow2');
    await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', raw, changedDisk]);
    await qemuImg(['snapshot', '-c', 'before', changedDisk]);
    const before = fs.readFileSync(raw);
    const after = Buffer.from(before);
    // big.bin's last block lies in the second piece: its bytes changed there, size and time as they were.
    const rootImage = folder.file('root-for-diff.ext4');
    volumeImage(before, 'root', rootImage);
    const facts = await debugfsFacts(rootImage, '/home/me/big.bin');
    const lastBlock = facts.blocks.at(-1)!;
    const [first, second] = layout.volumes['root']!;
    const volumeOffset = lastBlock * facts.blockBytes;
    expect(volumeOffset).toBeGreaterThanOrEqual(first!.length);
    after.write('changed in the second piece', second!.offset + (volumeOffset - first!.length));
    await writeChangedPieces(changedDisk, new Uint8Array(before), new Uint8Array(after), folder.path);

    const vouched: string[] = [];
    const open = (shortcut: boolean) => vouchingOpener(changedDisk, shortcut, vouched);
    const ranges = () => readDiff(changedDisk, 'before', 'current').ranges;
    expect(ranges().every((range) => range.offset >= second!.offset && range.offset < second!.offset + second!.length)).toBe(true);
    const result = await diffStatesByName(open(true), 'before', 'current', ranges);
    // The only guest bytes that changed lie in root's second piece: mapped as if root were in one
    // piece from its first, big.bin's last block would be looked for in the data volume's bytes.
    expect(result.differences.map((difference) => `${difference.change} ${difference.path} ${(difference.reasons ?? []).join(',')}`)).toEqual(['changed /fixture--vg-root/home/me/big.bin content']);
    expect(vouched.length).toBeGreaterThan(0);
    expect(result).toEqual(await diffStatesByName(open(false), 'before', 'current', ranges));
  });
});

/** The fixture disk's metadata areas: each one's header offset and its current text's place (from the PV header, as LVM finds them). */
function metadataAreas(bytes: Buffer, partitionOffset = layout.partitionOffset): { header: number; textAt: number; textLength: number }[] {
  const label = partitionOffset + 512;
  let at = label + bytes.readUInt32LE(label + 20) + 40;
  const lists: number[][] = [[], []];
  for (const list of lists) {
    for (; !(bytes.readBigUInt64LE(at) === 0n && bytes.readBigUInt64LE(at + 8) === 0n); at += 16) list.push(Number(bytes.readBigUInt64LE(at)));
    at += 16;
  }
  return lists[1]!.map((offset) => {
    const header = partitionOffset + offset;
    return { header, textAt: header + Number(bytes.readBigUInt64LE(header + 40)), textLength: Number(bytes.readBigUInt64LE(header + 48)) };
  });
}

/** Makes data's 2 extents 0 in every copy of the current metadata on the PVs at `partitions` (text and length as they were); with `remakeChecksums`, as a hostile disk could. */
function emptyDataVolume(bytes: Buffer, remakeChecksums: boolean, partitions: number[]): void {
  const areas = partitions.flatMap((partitionOffset) => metadataAreas(bytes, partitionOffset));
  expect(areas).toHaveLength(2 * partitions.length);
  for (const area of areas) {
    const text = bytes.subarray(area.textAt, area.textAt + area.textLength).toString('latin1');
    // data's own segment: the first extent count after its section opens.
    const at = text.indexOf('extent_count = 2', text.lastIndexOf('\ndata {'));
    expect(at).toBeGreaterThan(0);
    bytes.write('extent_count = 0', area.textAt + at, 'latin1');
    if (!remakeChecksums) continue;
    bytes.writeUInt32LE(lvmCrc(bytes.subarray(area.textAt, area.textAt + area.textLength)), area.header + 56);
    bytes.writeUInt32LE(lvmCrc(bytes.subarray(area.header + 4, area.header + 512)), area.header);
  }
}

/** LVM's CRC-32 (from 0xf597a6cf, no final inversion): made here for a test's own edits. */
function lvmCrc(bytes: Uint8Array): number {
  return ~zlib.crc32(bytes, ~0xf597a6cf >>> 0) >>> 0;
}

describe('hostile LVM metadata', () => {
  it('a first metadata copy that does not read leaves the second (at the PV\'s end) to be read, as LVM takes any good copy', async () => {
    const bytes = gunzipSync(fs.readFileSync(path.join(FIXTURES, 'lvm-disk.img.gz')));
    const [first, second] = metadataAreas(bytes);
    expect(second!.header).toBeGreaterThan(first!.header);
    bytes.write('DAMAGED', first!.header + 4, 'latin1');
    const damagedRaw = folder.file('first-copy.raw');
    fs.writeFileSync(damagedRaw, bytes);
    const damaged = folder.file('first-copy.qcow2');
    await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', damagedRaw, damaged]);
    const files = await openStateFiles(damaged, 'current');
    try {
      expect(files.volumes.find((volume) => volume.name === '2')?.problem).toBeUndefined();
      expect(files.volumes.map((volume) => [volume.name, volume.filesystem])).toEqual([['1', null], ['2', null], ['3', null], ['fixture--vg-root', 'ext'], ['fixture--vg-data', 'ext'], ['fixture--vg-span', 'ext']]);
    } finally {
      await files.close();
    }
  });

  it('metadata whose checksum does not match is not read, as LVM refuses it: another PV\'s good copy is, and without one the PVs say why', async () => {
    const bytes = gunzipSync(fs.readFileSync(path.join(FIXTURES, 'lvm-disk.img.gz')));
    // Partition 2's copies edited, their checksums not remade: partition 3's good copy is read instead.
    emptyDataVolume(bytes, false, [layout.partitionOffset]);
    const damagedRaw = folder.file('bad-checksum.raw');
    fs.writeFileSync(damagedRaw, bytes);
    const damaged = folder.file('bad-checksum.qcow2');
    await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', damagedRaw, damaged]);
    const files = await openStateFiles(damaged, 'current');
    try {
      expect(files.volumes.find((volume) => volume.name === '2')).toMatchObject({ physicalVolumeOf: 'fixture-vg' });
      expect(files.volumes.find((volume) => volume.name === 'fixture--vg-data')).toMatchObject({ filesystem: 'ext', length: 8 * 1024 * 1024 });
    } finally {
      await files.close();
    }
    // Both PVs' copies edited without their checksums: no copy of the group reads.
    emptyDataVolume(bytes, false, [layout.secondPartitionOffset]);
    fs.writeFileSync(damagedRaw, bytes);
    const both = folder.file('bad-checksums.qcow2');
    await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', damagedRaw, both]);
    const none = await openStateFiles(both, 'current');
    try {
      for (const pv of ['2', '3']) expect(none.volumes.find((volume) => volume.name === pv)?.problem).toMatch(/the volume group metadata fails its checksum/);
      expect(none.volumes.map((volume) => volume.name)).toEqual(['1', '2', '3']);
    } finally {
      await files.close();
    }
  });

  it('a logical volume of no extents lists without a filesystem; the other volumes read', async () => {
    const bytes = gunzipSync(fs.readFileSync(path.join(FIXTURES, 'lvm-disk.img.gz')));
    emptyDataVolume(bytes, true, [layout.partitionOffset, layout.secondPartitionOffset]);
    const damagedRaw = folder.file('empty-lv.raw');
    fs.writeFileSync(damagedRaw, bytes);
    const damaged = folder.file('empty-lv.qcow2');
    await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', damagedRaw, damaged]);
    const files = await openStateFiles(damaged, 'current');
    try {
      const data = files.volumes.find((volume) => volume.name === 'fixture--vg-data');
      expect(data).toMatchObject({ length: 0, filesystem: null, segments: [] });
      expect((await files.list('/fixture--vg-root/etc')).map((entry) => entry.name)).toEqual(['hostname']);
    } finally {
      await files.close();
    }
  });

  it('a damaged label, metadata header or metadata text gives FILESYSTEM_CORRUPT or volumes, never another error or a read outside the volume (400 seeded damages)', async () => {
    const partition = gunzipSync(fs.readFileSync(path.join(FIXTURES, 'lvm-disk.img.gz'))).subarray(layout.partitionOffset, layout.partitionOffset + 4 * 1024 * 1024);
    expect(await isLvmPhysicalVolume(memoryVolumeBytes(partition))).toBe(true);
    const text = partition.indexOf('fixture-vg {');
    const seeded = new SeededRandom(2816);
    const next = (): number => seeded.next();
    const outcomes = { volumes: 0, corrupt: 0, none: 0 };
    for (let trial = 0; trial < 400; trial++) {
      const bytes = Buffer.from(partition);
      const damages = 1 + Math.floor(next() * 6);
      for (let damage = 0; damage < damages; damage++) {
        const region = next();
        // The label sector, the metadata area header, or the metadata texts.
        const at = region < 0.3 ? 512 + Math.floor(next() * 160) : region < 0.6 ? 4096 + Math.floor(next() * 64) : text + Math.floor(next() * 6000);
        bytes[at] = next() < 0.3 ? [0x7b, 0x7d, 0x22, 0x3d, 0x5b, 0x5d, 0x0a][Math.floor(next() * 7)]! : Math.floor(next() * 256);
      }
      try {
        if (!(await isLvmPhysicalVolume(memoryVolumeBytes(bytes)))) {
          outcomes.none++;
          continue;
        }
        await readLogicalVolumes(memoryVolumeBytes(bytes));
        outcomes.volumes++;
      } catch (error) {
        if (!(error instanceof Qcow2Error) || error.code !== 'FILESYSTEM_CORRUPT') throw new Error(`trial ${trial}: ${String(error)}`, { cause: error });
        outcomes.corrupt++;
      }
    }
    expect(outcomes.corrupt).toBeGreaterThan(20);
    expect(outcomes.volumes).toBeGreaterThan(20);
  });

  it('the metadata text parser refuses what is not LVM text, and reads nested sections, lists and comments', () => {
    expect(parseLvmMetadata('vg {\n a = 1 # note\n b = ["x", 2]\n inner { c = "d\\"e" }\n}\n').sections.get('vg')?.values.get('b')).toEqual(['x', 2]);
    expect(parseLvmMetadata('vg { inner { c = "d\\"e" } }').sections.get('vg')?.sections.get('inner')?.values.get('c')).toBe('d"e');
    for (const text of ['vg {', 'a = ', 'a = [1, 2', '{', 'a = "open', 'a = 99999999999999999999', 'a b', `${'x { '.repeat(40)}${'}'.repeat(40)}`]) {
      expect(() => parseLvmMetadata(text), text).toThrow(Qcow2Error);
    }
  });
});
