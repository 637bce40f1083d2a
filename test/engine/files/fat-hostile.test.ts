/**
 * Hostile FAT bytes: volumes made by mkfs.fat and mtools, then damaged where their structures are
 * (boot sector fields, FAT entries, folder entries). Every damage gives a typed error (or a
 * listing that leaves the bad name out), never a crash, a hang or an unbounded allocation.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { parseBootSector, type FatGeometry } from '../../../src/shared/qcow2/files/fat/boot-sector.ts';
import { FAT_READER } from '../../../src/shared/qcow2/files/fat/fat-reader.ts';
import type { GuestFilesystem } from '../../../src/shared/qcow2/files/filesystem.ts';
import { tempDir, type TempDir } from '../../helpers/qemu.ts';
import { buildFatScenario, bytesVolume, type FatScenario } from './fat-fixtures.ts';
import { walkEverything } from './fat-walk.ts';

let folder: TempDir;
const images = new Map<number, { scenario: FatScenario; bytes: Uint8Array; geometry: FatGeometry }>();
beforeAll(async () => {
  folder = tempDir();
  for (const width of [12, 32] as const) {
    const scenario = await buildFatScenario(folder.path, width);
    const bytes = new Uint8Array(fs.readFileSync(scenario.image));
    images.set(width, { scenario, bytes, geometry: parseBootSector(bytes.subarray(0, 512), bytes.length) });
  }
}, 120_000);
afterAll(() => folder.cleanup());

/** A fresh copy of a clean volume, its geometry, and the reader opened on the clean copy to locate things. */
async function damageable(width: number): Promise<{ bytes: Uint8Array; geometry: FatGeometry; clean: GuestFilesystem }> {
  const image = images.get(width);
  if (image === undefined) throw new Error(`no FAT${width} image`);
  return { bytes: image.bytes.slice(), geometry: image.geometry, clean: await FAT_READER.open(bytesVolume(image.bytes)) };
}

async function open(bytes: Uint8Array): Promise<GuestFilesystem> {
  return FAT_READER.open(bytesVolume(bytes));
}

async function outcome(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
    return 'ok';
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' && error instanceof Error && error.name === 'Qcow2Error' ? code : `raw ${String(error)}`;
  }
}

function writeFatEntry(bytes: Uint8Array, geometry: FatGeometry, cluster: number, value: number): void {
  const data = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const { fatOffset, width } = geometry;
  if (width === 32) data.setUint32(fatOffset + cluster * 4, value, true);
  else if (width === 16) data.setUint16(fatOffset + cluster * 2, value, true);
  else {
    const at = fatOffset + Math.floor((cluster * 3) / 2);
    const pair = data.getUint16(at, true);
    data.setUint16(at, cluster % 2 === 0 ? (pair & 0xf000) | (value & 0xfff) : (pair & 0x000f) | ((value & 0xfff) << 4), true);
  }
}

const clusterOf = (geometry: FatGeometry, offset: number): number => (offset - geometry.dataOffset) / geometry.clusterBytes + 2;

/** The clusters of a file or folder, in chain order. */
async function clusters(filesystem: GuestFilesystem, geometry: FatGeometry, path: string): Promise<number[]> {
  const list: number[] = [];
  for (const range of (await filesystem.extents?.(path)) ?? []) {
    for (let at = range.offset; at < range.offset + range.length; at += geometry.clusterBytes) list.push(clusterOf(geometry, at));
  }
  return list;
}

/** Offset of the 32-byte entry with this stored 8.3 name ("HELLO   TXT") in a folder. */
async function entryOffset(filesystem: GuestFilesystem, bytes: Uint8Array, folderPath: string, stored: string): Promise<number> {
  const wanted = Buffer.from(stored, 'latin1');
  for (const range of (await filesystem.extents?.(folderPath)) ?? []) {
    for (let at = range.offset; at < range.offset + range.length; at += 32) {
      if (Buffer.from(bytes.subarray(at, at + 11)).equals(wanted) && bytes[at + 11] !== 0x0f) return at;
    }
  }
  throw new Error(`no entry ${stored} in ${folderPath}`);
}

function setEntryCluster(bytes: Uint8Array, at: number, cluster: number): void {
  const data = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  data.setUint16(at + 20, cluster >>> 16, true);
  data.setUint16(at + 26, cluster & 0xffff, true);
}

describe.each([12, 32])('hostile FAT%i', (width) => {
  it("a file's chain that loops, leaves the FAT, meets a free or bad cluster: FILESYSTEM_CORRUPT on read and extents", async () => {
    const { bytes, geometry, clean } = await damageable(width);
    const chain = await clusters(clean, geometry, '/big.bin');
    const first = chain[0] as number;
    const middle = chain[Math.floor(chain.length / 2)] as number;
    const bad = { 12: 0xff7, 16: 0xfff7, 32: 0x0ffffff7 }[geometry.width];
    for (const value of [first, middle, geometry.clusterCount + 2, 0x0ff0 & (geometry.clusterCount + 100), 1, 0, bad]) {
      const damaged = bytes.slice();
      writeFatEntry(damaged, geometry, middle, value);
      const filesystem = await open(damaged);
      expect([value, await outcome(() => filesystem.read('/big.bin', new Uint8Array(400 * 1024), 0))]).toEqual([value, 'FILESYSTEM_CORRUPT']);
      expect(await outcome(() => filesystem.extents?.('/big.bin') ?? Promise.resolve())).toBe('FILESYSTEM_CORRUPT');
      // Everything else still reads.
      expect(await outcome(() => filesystem.read('/hello.txt', new Uint8Array(100), 0))).toBe('ok');
    }
  });

  it('a file larger than its chain, or than the volume, or with no cluster: FILESYSTEM_CORRUPT', async () => {
    const { bytes, geometry, clean } = await damageable(width);
    const at = await entryOffset(clean, bytes, '/', 'BIG     BIN');
    const data = new DataView(bytes.buffer);
    for (const size of [300 * 1024 + 17 + 4 * geometry.clusterBytes, 0xffffffff]) {
      const damaged = bytes.slice();
      new DataView(damaged.buffer).setUint32(at + 28, size, true);
      const filesystem = await open(damaged);
      expect((await filesystem.stat('/big.bin')).size).toBe(size);
      expect(await outcome(() => filesystem.read('/big.bin', new Uint8Array(1024), size - 1024))).toBe('FILESYSTEM_CORRUPT');
    }
    expect(data.getUint32(at + 28, true)).toBe(300 * 1024 + 17);
    const damaged = bytes.slice();
    setEntryCluster(damaged, at, 0);
    expect(await outcome(async () => (await open(damaged)).read('/big.bin', new Uint8Array(10), 0))).toBe('FILESYSTEM_CORRUPT');
  });

  it('a folder that names its own parent, the root, or a cluster another folder has: FILESYSTEM_CORRUPT, and a walk over it ends', async () => {
    const { bytes, geometry, clean } = await damageable(width);
    const someFolder = (await clusters(clean, geometry, '/Some Folder'))[0] as number;
    const deeper = await entryOffset(clean, bytes, '/Some Folder', 'DEEPER     ');
    const efi = await entryOffset(clean, bytes, '/', 'EFI        ');

    const cycle = bytes.slice();
    setEntryCluster(cycle, deeper, someFolder);
    expect(await outcome(async () => (await open(cycle)).list('/Some Folder/Deeper'))).toBe('FILESYSTEM_CORRUPT');
    expect(await outcome(async () => walkEverything(await open(cycle)))).toBe('FILESYSTEM_CORRUPT');

    // A subfolder naming the root, or no cluster at all: listed with its siblings, refused when entered
    // (it made its whole parent unreadable: files audit 6).
    for (const cluster of [geometry.rootCluster, 0]) {
      const damaged = bytes.slice();
      setEntryCluster(damaged, deeper, cluster);
      const filesystem = await open(damaged);
      expect((await filesystem.list('/Some Folder')).map((entry) => entry.name)).toContain('Deeper');
      expect([cluster, await outcome(() => filesystem.list('/Some Folder/Deeper'))]).toEqual([cluster, 'FILESYSTEM_CORRUPT']);
      expect(await outcome(() => filesystem.stat('/Some Folder/Deeper/anything'))).toBe('FILESYSTEM_CORRUPT');
      expect(await outcome(async () => walkEverything(filesystem))).toBe('FILESYSTEM_CORRUPT');
    }

    // Two subfolders on one cluster: the root lists both; the second is refused when entered, the first reads.
    const shared = bytes.slice();
    setEntryCluster(shared, efi, someFolder);
    const sharing = await open(shared);
    const names = (await sharing.list('/')).map((entry) => entry.name);
    expect(names).toEqual(expect.arrayContaining(['EFI', 'Some Folder']));
    const outcomes = [await outcome(() => sharing.list('/EFI')), await outcome(() => sharing.list('/Some Folder'))].sort();
    expect(outcomes).toEqual(['FILESYSTEM_CORRUPT', 'ok']);
  });

  it("a folder's chain that loops or leaves the FAT: FILESYSTEM_CORRUPT", async () => {
    const { bytes, geometry, clean } = await damageable(width);
    const many = await clusters(clean, geometry, '/Many');
    expect(many.length).toBeGreaterThan(1);
    for (const value of [many[0] as number, geometry.clusterCount + 2]) {
      const damaged = bytes.slice();
      writeFatEntry(damaged, geometry, many[many.length - 1] as number, value);
      expect(await outcome(async () => (await open(damaged)).list('/Many'))).toBe('FILESYSTEM_CORRUPT');
    }
  });

  it('absurd boot sector fields: FILESYSTEM_CORRUPT at open', async () => {
    const { bytes, geometry } = await damageable(width);
    const patches: [string, number, number, number][] = [
      ['bytes per sector 0', 11, 2, 0],
      ['bytes per sector 100', 11, 2, 100],
      ['bytes per sector 8192', 11, 2, 8192],
      ['sectors per cluster 0', 13, 1, 0],
      ['sectors per cluster 3', 13, 1, 3],
      ['sectors per cluster 255', 13, 1, 255],
      ['reserved sectors 0', 14, 2, 0],
      ['FAT count 0', 16, 1, 0],
      ['FAT count 200', 16, 1, 200],
      ['no 0x55AA', 510, 2, 0],
      ['no jump', 0, 1, 0],
      ...(geometry.width === 32
        ? ([
            ['total sectors past the volume', 32, 4, 0xfffffff0],
            ['sectors per FAT 0', 36, 4, 0],
            ['sectors per FAT huge', 36, 4, 0x7fffffff],
            ['root cluster 0', 44, 4, 0],
            ['root cluster 1', 44, 4, 1],
            ['root cluster past the volume', 44, 4, 0x0ffffff0],
            ['active FAT 9 of 2', 40, 2, 0x89],
            ['root entries on FAT32', 17, 2, 512],
          ] as [string, number, number, number][])
        : ([
            ['sectors per FAT 0', 22, 2, 0],
            ['sectors per FAT huge', 22, 2, 0xffff],
            ['root entries 0', 17, 2, 0],
            ['total sectors 16 past the volume', 19, 2, 0xffff],
          ] as [string, number, number, number][])),
    ];
    for (const [what, at, size, value] of patches) {
      const damaged = bytes.slice();
      const data = new DataView(damaged.buffer);
      if (size === 1) data.setUint8(at, value);
      else if (size === 2) data.setUint16(at, value, true);
      else data.setUint32(at, value, true);
      expect([what, await outcome(() => open(damaged))]).toEqual([what, 'FILESYSTEM_CORRUPT']);
    }
  });

  it("the FAT32 root folder's chain looping: FILESYSTEM_CORRUPT at open", async () => {
    const { bytes, geometry } = await damageable(width);
    if (geometry.width !== 32) return;
    const damaged = bytes.slice();
    writeFatEntry(damaged, geometry, geometry.rootCluster, geometry.rootCluster);
    expect(await outcome(() => open(damaged))).toBe('FILESYSTEM_CORRUPT');
  });

  it('a volume shorter than its boot sector says: FILESYSTEM_CORRUPT', async () => {
    const { bytes } = await damageable(width);
    for (const length of [0, 100, 511, 512, Math.floor(bytes.length / 2), bytes.length - 1]) {
      expect([length, await outcome(() => open(bytes.slice(0, length)))]).toEqual([length, 'FILESYSTEM_CORRUPT']);
    }
  });

  it('a long name whose checksum does not match falls back to the 8.3 name; a duplicate name is listed once', async () => {
    const { bytes, clean } = await damageable(width);
    const mixed = await entryOffset(clean, bytes, '/', 'MIXEDC~1TXT');
    const wrongChecksum = bytes.slice();
    // The long-name slot just before the 8.3 entry carries the checksum at byte 13.
    wrongChecksum[mixed - 32 + 13] = ((wrongChecksum[mixed - 32 + 13] ?? 0) + 1) & 0xff;
    const names = (await (await open(wrongChecksum)).list('/')).map((entry) => entry.name);
    expect(names).toContain('MIXEDC~1.TXT');
    expect(names).not.toContain('MixedCase.Txt');

    const duplicate = bytes.slice();
    const lower = await entryOffset(clean, bytes, '/', 'LOWER   TXT');
    duplicate.set(Buffer.from('HELLO   TXT', 'latin1'), lower);
    const filesystem = await open(duplicate);
    const listed = (await filesystem.list('/')).map((entry) => entry.name);
    expect(listed.filter((name) => name.toUpperCase() === 'HELLO.TXT')).toEqual(['hello.txt']);
    const first = new Uint8Array(5);
    await filesystem.read('/HELLO.TXT', first, 0);
    expect(new TextDecoder().decode(first)).toBe('hello');
  });

  it("the label comes from the boot sector when the root folder has no label entry, and there is none when neither has one", async () => {
    const { bytes, geometry, clean } = await damageable(width);
    const [root] = (await clean.extents?.('/')) ?? [];
    if (root === undefined) throw new Error('no root extents');
    let labelSlot = -1;
    for (let at = root.offset; at < root.offset + root.length && labelSlot < 0; at += 32) if (bytes[at + 11] === 0x08) labelSlot = at;
    expect(labelSlot).toBeGreaterThanOrEqual(0);
    const noEntry = bytes.slice();
    noEntry[labelSlot] = 0xe5;
    expect((await open(noEntry)).label).toBe(`COWBELL${width}`);
    const bootLabelAt = geometry.width === 32 ? 71 : 43;
    noEntry.set(Buffer.from('NO NAME    ', 'latin1'), bootLabelAt);
    expect((await open(noEntry)).label).toBeUndefined();
  });

  it('names that cannot be path components are left out; an impossible date is read as Linux reads it', async () => {
    const { bytes, clean } = await damageable(width);
    const damaged = bytes.slice();
    const hello = await entryOffset(clean, bytes, '/', 'HELLO   TXT');
    damaged.set(Buffer.from('A/B     TXT', 'latin1'), hello);
    const big = await entryOffset(clean, bytes, '/', 'BIG     BIN');
    new DataView(damaged.buffer).setUint16(big + 24, (41 << 9) | (13 << 5) | 1, true);
    const filesystem = await open(damaged);
    const names = (await filesystem.list('/')).map((entry) => entry.name);
    expect(names.some((name) => name.includes('/'))).toBe(false);
    expect(names).not.toContain('hello.txt');
    // Month 13 counts no days before it (fs/fat/misc.c): 2021-01-01.
    expect((await filesystem.stat('/big.bin')).mtimeMs).toBe(Date.UTC(2021, 0, 1) + (await (await damageable(width)).clean.stat('/big.bin')).mtimeMs! % 86_400_000);
  });

  it('random damage to the metadata area never gives anything but a typed error', async () => {
    const { bytes, geometry } = await damageable(width);
    let state = 0x1234 + width;
    const next = (limit: number): number => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state % limit;
    };
    const outcomes = new Map<string, number>();
    const metadataEnd = geometry.dataOffset + 64 * geometry.clusterBytes;
    const clean = bytes.slice(0, metadataEnd);
    for (let round = 0; round < 150; round++) {
      bytes.set(clean);
      for (let flip = 0; flip < 1 + next(6); flip++) bytes[next(metadataEnd)] = next(256);
      const result = await outcome(async () => walkEverything(await open(bytes)));
      outcomes.set(result, (outcomes.get(result) ?? 0) + 1);
    }
    expect([...outcomes.keys()].filter((key) => key !== 'ok' && key !== 'FILESYSTEM_CORRUPT' && key !== 'NOT_FOUND')).toEqual([]);
    expect(outcomes.get('ok') ?? 0).toBeGreaterThan(10);
  });
});
