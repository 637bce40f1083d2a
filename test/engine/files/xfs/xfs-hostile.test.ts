/**
 * Hostile XFS bytes: damages the reader must refuse by name (a superblock that contradicts itself
 * or its volume, features it does not read, an inode that is not one, extents that overlap or leave
 * the filesystem, a tree block of the wrong level or owner, a folder block without its signature),
 * then a seeded-random campaign of damaged volumes through the fuzz harness's xfs-walk target
 * (test/engine/fuzz/xfs-targets.ts): anything but a typed error, a hang or a huge allocation is a finding.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../../src/shared/qcow2/errors.ts';
import type { GuestFilesystem } from '../../../../src/shared/qcow2/files/filesystem.ts';
import { XFS_READER } from '../../../../src/shared/qcow2/files/xfs/xfs-filesystem.ts';
import { xfsBlockMap } from '../../../../src/shared/qcow2/files/xfs/xfs-extents.ts';
import { inodeOffset, XfsInodeTable } from '../../../../src/shared/qcow2/files/xfs/xfs-inodes.ts';
import { readXfsSuperblock } from '../../../../src/shared/qcow2/files/xfs/xfs-superblock.ts';
import { qemuImg, tempDir, type TempDir } from '../../../helpers/qemu.ts';
import { memoryVolumeBytes } from '../../../helpers/raw-volume-bytes.ts';
import { withFiles } from '../../../helpers/memory-guest.ts';
import { copyOut } from '../../../../src/shared/qcow2/files/copy-out.ts';
import { runWalkCampaign } from '../../fuzz/walk-campaign.ts';
import { findXfsStructures, randomXfsDamage, rewriteChecksum, type XfsStructures } from './xfs-mutations.ts';

const CASES = Number(process.env.XFS_FUZZ_CASES ?? 50);
const BASE_SEED = Number(process.env.FUZZ_SEED ?? 29);
const FIXTURES = path.join(import.meta.dirname, 'fixtures');
const manifests = JSON.parse(gunzipSync(fs.readFileSync(path.join(FIXTURES, 'xfs-manifests.json.gz'))).toString('utf8')) as Record<string, Record<string, Record<string, { inode: number; size: number }>>>;

let folder: TempDir;
/** The 1 KiB-block volume (two-level extent tree, folder blocks over several blocks) and the version 5 one. */
const pristine: Record<string, Uint8Array> = {};
const structures: Record<string, XfsStructures> = {};

beforeAll(async () => {
  folder = tempDir();
  for (const name of ['1k', 'v5']) {
    const qcow2 = folder.file(`${name}.qcow2`);
    fs.writeFileSync(qcow2, gunzipSync(fs.readFileSync(path.join(FIXTURES, `xfs-${name}.qcow2.gz`))));
    const raw = folder.file(`${name}.raw`);
    await qemuImg(['convert', '-O', 'raw', ...(name === 'v5' ? ['-l', 'unmounted'] : []), qcow2, raw]);
    pristine[name] = new Uint8Array(fs.readFileSync(raw));
    const inodes = Object.values(manifests[name]![name === 'v5' ? 'second' : 'first']!).map((entry) => entry.inode);
    structures[name] = await findXfsStructures(pristine[name], inodes);
  }
}, 60_000);
afterAll(() => folder.cleanup());

const view = (bytes: Uint8Array): DataView => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

async function thrownBy(bytes: Uint8Array, use: (filesystem: GuestFilesystem) => Promise<unknown>): Promise<Qcow2Error> {
  try {
    await use(await XFS_READER.open(memoryVolumeBytes(bytes)));
  } catch (error) {
    expect(error).toBeInstanceOf(Qcow2Error);
    return error as Qcow2Error;
  }
  throw new Error('no error');
}

/** The byte offset of the inode of `entry` in the 1 KiB volume. */
async function inodeAt(bytes: Uint8Array, entry: string): Promise<number> {
  const superblock = await readXfsSuperblock(memoryVolumeBytes(bytes));
  return inodeOffset(superblock, manifests['1k']!['first']![entry]!.inode);
}

/** The extent tree blocks (volume blocks) of a file of the 1 KiB volume. */
async function treeBlocksOf(bytes: Uint8Array, entry: string): Promise<number[]> {
  const volume = memoryVolumeBytes(bytes);
  const superblock = await readXfsSuperblock(volume);
  const inode = await new XfsInodeTable(volume, superblock).inode(manifests['1k']!['first']![entry]!.inode);
  return (await xfsBlockMap(volume, superblock, inode)).nodeBlocks;
}

describe('XFS reader on damaged volumes', { timeout: 60_000 }, () => {
  it('reads the undamaged volume (so each damage below is what fails)', async () => {
    const filesystem = await XFS_READER.open(memoryVolumeBytes(pristine['1k']!));
    expect((await filesystem.list('/folder-node')).length).toBe(2000);
    expect((await filesystem.stat('/fragmented.bin')).size).toBe(manifests['1k']!['first']!['/fragmented.bin']!.size);
  });

  it('refuses a superblock whose geometry contradicts itself or the volume', async () => {
    for (const [at, value, size] of [
      [4, 3000, 4], // a block size that is no power of two
      [88, 0, 4], // no allocation groups
      [8, 2 ** 31, 8], // more blocks than the volume holds
      [104, 4096, 2], // inodes larger than a block
    ] as const) {
      const damaged = new Uint8Array(pristine['1k']!);
      if (size === 8) view(damaged).setBigUint64(at, BigInt(value));
      else if (size === 4) view(damaged).setUint32(at, value);
      else view(damaged).setUint16(at, value);
      expect((await thrownBy(damaged, (filesystem) => filesystem.list('/'))).code, `field ${at}`).toBe('FILESYSTEM_CORRUPT');
    }
  });

  it('refuses features it does not read by name, and a volume xfs_repair marked', async () => {
    const unknown = new Uint8Array(pristine['1k']!);
    view(unknown).setUint32(216, view(unknown).getUint32(216) | (1 << 8)); // the metadata directory tree (Linux 6.13)
    expect(await thrownBy(unknown, async () => undefined)).toMatchObject({ code: 'FILESYSTEM_UNSUPPORTED', message: expect.stringMatching(/incompatible features 0x100/) });
    const repair = new Uint8Array(pristine['1k']!);
    view(repair).setUint32(216, view(repair).getUint32(216) | (1 << 4));
    expect(await thrownBy(repair, async () => undefined)).toMatchObject({ code: 'FILESYSTEM_CORRUPT', message: expect.stringMatching(/xfs_repair/) });
  });

  it('refuses an inode, a folder block or a tree block that fails its checksum (version 5)', async () => {
    const inode = new Uint8Array(pristine['1k']!);
    const size = (await inodeAt(inode, '/etc/passwd')) + 60; // a bit of its size
    inode[size] = inode[size]! ^ 0x01;
    expect((await thrownBy(inode, (filesystem) => filesystem.stat('/etc/passwd'))).message).toMatch(/inode \d+ fails its checksum/);
    const tree = new Uint8Array(pristine['1k']!);
    const record = (await treeBlocksOf(tree, '/fragmented.bin'))[0]! * 1024 + 100;
    tree[record] = tree[record]! ^ 0x01;
    expect((await thrownBy(tree, (filesystem) => filesystem.read('/fragmented.bin', new Uint8Array(16), 0))).message).toMatch(/fails its checksum/);
  });

  it('refuses an inode that is not one, or that says it is another', async () => {
    const signature = new Uint8Array(pristine['1k']!);
    signature[await inodeAt(signature, '/etc/passwd')] = 0;
    expect((await thrownBy(signature, (filesystem) => filesystem.stat('/etc/passwd'))).message).toMatch(/no inode signature/);
    const other = new Uint8Array(pristine['1k']!);
    const at = await inodeAt(other, '/etc/passwd');
    view(other).setBigUint64(at + 152, view(other).getBigUint64(at + 152) + 1n);
    rewriteChecksum(other, at, 512, 100);
    expect((await thrownBy(other, (filesystem) => filesystem.stat('/etc/passwd'))).message).toMatch(/says it is inode/);
  });

  it('refuses extents that overlap or leave the filesystem, and tree blocks of the wrong level', async () => {
    // /sparse.bin keeps its three extents in its inode: the second made to start at file block 0.
    const overlap = new Uint8Array(pristine['1k']!);
    const at = await inodeAt(overlap, '/sparse.bin');
    const second = at + 176 + 16;
    view(overlap).setUint32(second, view(overlap).getUint32(second) & 0x80000000);
    view(overlap).setUint32(second + 4, view(overlap).getUint32(second + 4) & 0x1ff);
    rewriteChecksum(overlap, at, 512, 100);
    expect((await thrownBy(overlap, (filesystem) => filesystem.read('/sparse.bin', new Uint8Array(16), 0))).message).toMatch(/overlaps the one before it/);
    const outside = new Uint8Array(pristine['1k']!);
    view(outside).setUint32(at + 176 + 8, 0x7fffffff); // the first extent's block number, high bits
    rewriteChecksum(outside, at, 512, 100);
    expect((await thrownBy(outside, (filesystem) => filesystem.read('/sparse.bin', new Uint8Array(16), 0))).message).toMatch(/outside the filesystem/);
    const level = new Uint8Array(pristine['1k']!);
    const tree = (await treeBlocksOf(level, '/fragmented.bin'))[0]! * 1024;
    view(level).setUint16(tree + 4, 5);
    rewriteChecksum(level, tree, 1024, 64);
    expect((await thrownBy(level, (filesystem) => filesystem.read('/fragmented.bin', new Uint8Array(16), 0))).message).toMatch(/is at level 5/);
  });

  it('refuses a folder block without its signature', async () => {
    const damaged = new Uint8Array(pristine['1k']!);
    const superblock = await readXfsSuperblock(memoryVolumeBytes(damaged));
    const folderBlock = structures['1k']!.blocks.map((block) => block.offset).find((offset) => view(damaged).getUint32(offset) === 0x58444433 || view(damaged).getUint32(offset) === 0x58444233)!;
    expect(folderBlock).toBeDefined();
    view(damaged).setUint32(folderBlock, 0x12345678);
    expect(superblock.folderBlockBytes).toBe(8192);
    const error = await thrownBy(damaged, async (filesystem) => {
      for (const name of ['/', '/folder-block', '/folder-leaf', '/folder-node']) await filesystem.list(name);
    });
    expect(error.message).toMatch(/no folder block signature/);
  });

  it('lists an entry whose inode is not one by name only, marked damaged: its siblings, and a copy of the folder, go on (as the kernel lists the folder and fails that entry)', async () => {
    const damaged = pristine['v5']!.slice();
    const superblock = await readXfsSuperblock(memoryVolumeBytes(damaged));
    const second = manifests['v5']!['second']!;
    view(damaged).setUint16(inodeOffset(superblock, second['/etc/passwd']!.inode), 0);
    await withFiles(damaged, async (files) => {
      const entries = await files.list('/etc');
      expect(entries.map((entry) => [entry.name, entry.kind])).toEqual([['hostname', 'file'], ['motd', 'file'], ['passwd', 'other']]);
      expect(entries[2]).toMatchObject({ path: '/etc/passwd', size: 0, mtimeMs: null, damaged: expect.stringMatching(/no inode signature/) });
      expect(entries[0]!.damaged).toBeUndefined();
      await expect(files.stat('/etc/passwd')).rejects.toMatchObject({ code: 'FILESYSTEM_CORRUPT' });
      const target = folder.file('damaged-entry-copy');
      const copied = await copyOut(files, '/etc', target, { overwrite: false });
      expect(copied.files).toBe(2);
      expect(copied.skipped).toEqual([{ path: '/etc/passwd', reason: expect.stringMatching(/no inode signature/) }]);
      expect(fs.readFileSync(path.join(target, 'motd'), 'utf8')).toBe('added after the snapshot\n');
    });
    // An I/O failure is no damage: it still fails the listing.
    const failing = { length: damaged.length, read: async (buffer: Uint8Array, offset: number) => (offset === inodeOffset(superblock, second['/etc/motd']!.inode) ? Promise.reject(new Qcow2Error('IO_ERROR', 'read failed')) : memoryVolumeBytes(damaged).read(buffer, offset)) };
    await expect((await XFS_READER.open(failing)).list('/etc')).rejects.toMatchObject({ code: 'IO_ERROR' });
  });

  it.each(['1k', 'v5'])('survives seeded-random damage to the %s volume\'s superblock, inodes, folder, tree and link blocks with typed errors only', async (name) => {
    const { pristineOutcome, tally, findings } = await runWalkCampaign({
      folder: folder.file(`fuzz-${name}`),
      target: 'xfs-walk',
      pristine: pristine[name]!,
      cases: CASES,
      seed: BASE_SEED,
      damage: (random) => randomXfsDamage(pristine[name]!, structures[name]!, random),
    });
    expect(pristineOutcome).toBe('ok');
    expect(findings).toEqual([]);
    // The damage reaches the reader's checks and also leaves volumes that still read.
    expect(tally['FILESYSTEM_CORRUPT'] ?? 0).toBeGreaterThan(CASES / 20);
    expect(tally['ok'] ?? 0).toBeGreaterThan(CASES / 20);
  }, 600_000);
});
