/**
 * Hostile btrfs bytes: damages the reader must refuse by name (a superblock or tree block that
 * fails its checksum, features it does not read, a tree block of the wrong level or address, a
 * chunk kept only on another device, a compressed extent that does not decompress), then a
 * seeded-random campaign through the fuzz harness's btrfs-walk target with checksums written again
 * after each damage: anything but a typed error, a hang or a huge allocation is a finding.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../../src/shared/qcow2/errors.ts';
import { BTRFS_READER } from '../../../../src/shared/qcow2/files/btrfs/btrfs-filesystem.ts';
import type { GuestFilesystem } from '../../../../src/shared/qcow2/files/filesystem.ts';
import { qemuImg, tempDir, type TempDir } from '../../../helpers/qemu.ts';
import { memoryVolumeBytes } from '../../../helpers/raw-volume-bytes.ts';
import { runWalkCampaign } from '../../fuzz/walk-campaign.ts';
import { findBtrfsStructures, randomBtrfsDamage, rewriteChecksum, SUPERBLOCK_OFFSET, type BtrfsStructures } from './btrfs-mutations.ts';

const CASES = Number(process.env.BTRFS_FUZZ_CASES ?? 50);
const BASE_SEED = Number(process.env.FUZZ_SEED ?? 29);

let folder: TempDir;
let pristine: Uint8Array;
let structures: BtrfsStructures;

beforeAll(async () => {
  folder = tempDir();
  const qcow2 = folder.file('btrfs.qcow2');
  fs.writeFileSync(qcow2, gunzipSync(fs.readFileSync(path.join(import.meta.dirname, 'fixtures', 'btrfs.qcow2.gz'))));
  const raw = folder.file('btrfs.raw');
  await qemuImg(['convert', '-O', 'raw', '-l', 'unmounted', qcow2, raw]);
  pristine = new Uint8Array(fs.readFileSync(raw));
  structures = findBtrfsStructures(pristine);
}, 60_000);
afterAll(() => folder.cleanup());

const view = (bytes: Uint8Array): DataView => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

async function thrownBy(bytes: Uint8Array, use: (filesystem: GuestFilesystem) => Promise<unknown>): Promise<Qcow2Error> {
  try {
    await use(await BTRFS_READER.open(memoryVolumeBytes(bytes)));
  } catch (error) {
    expect(error).toBeInstanceOf(Qcow2Error);
    return error as Qcow2Error;
  }
  throw new Error('no error');
}

async function readWhole(filesystem: GuestFilesystem, file: string): Promise<void> {
  const size = (await filesystem.stat(file)).size;
  await filesystem.read(file, new Uint8Array(size), 0);
}

describe('btrfs reader on damaged volumes', { timeout: 60_000 }, () => {
  it('reads the undamaged volume (so each damage below is what fails)', async () => {
    const filesystem = await BTRFS_READER.open(memoryVolumeBytes(pristine));
    expect((await filesystem.list('/')).map((entry) => entry.name)).toEqual(['home', 'root', 'root-snapshot']);
    await readWhole(filesystem, '/root/var/log/zstd.log');
    expect(structures.nodes.length).toBeGreaterThan(20);
  });

  it('refuses a superblock or a tree block that fails its checksum', async () => {
    const superblock = new Uint8Array(pristine);
    superblock[SUPERBLOCK_OFFSET + 0x50] = superblock[SUPERBLOCK_OFFSET + 0x50]! ^ 1;
    expect(await thrownBy(superblock, async () => undefined)).toMatchObject({ code: 'FILESYSTEM_CORRUPT', message: expect.stringMatching(/superblock fails its checksum/) });
    const node = new Uint8Array(pristine);
    for (const offset of structures.nodes) node[offset + 0x70] = node[offset + 0x70]! ^ 0x40;
    expect(await thrownBy(node, (filesystem) => filesystem.list('/'))).toMatchObject({ code: 'FILESYSTEM_CORRUPT', message: expect.stringMatching(/fails its checksum/) });
  });

  it('refuses features it does not read by name', async () => {
    const damaged = new Uint8Array(pristine);
    view(damaged).setBigUint64(SUPERBLOCK_OFFSET + 0xbc, view(damaged).getBigUint64(SUPERBLOCK_OFFSET + 0xbc, true) | (1n << 13n), true); // extent tree v2
    rewriteChecksum(damaged, SUPERBLOCK_OFFSET, 4096);
    expect(await thrownBy(damaged, async () => undefined)).toMatchObject({ code: 'FILESYSTEM_UNSUPPORTED', message: expect.stringMatching(/incompatible features 0x2000/) });
  });

  it('refuses tree blocks at the wrong level or address, even with their checksums right', async () => {
    const level = new Uint8Array(pristine);
    for (const offset of structures.nodes) {
      level[offset + 0x64] = (level[offset + 0x64]! + 1) % 8;
      rewriteChecksum(level, offset, structures.nodeBytes);
    }
    expect((await thrownBy(level, (filesystem) => filesystem.list('/'))).message).toMatch(/is at level/);
    const address = new Uint8Array(pristine);
    for (const offset of structures.nodes) {
      view(address).setBigUint64(offset + 0x30, view(address).getBigUint64(offset + 0x30, true) + 4096n, true);
      rewriteChecksum(address, offset, structures.nodeBytes);
    }
    expect((await thrownBy(address, (filesystem) => filesystem.list('/'))).message).toMatch(/says it is at/);
  });

  it('refuses a chunk kept only on another device of the filesystem', async () => {
    const damaged = new Uint8Array(pristine);
    // The superblock's system chunk: its stripes moved to device 9 (the chunk tree then lies on no stripe of this device).
    const stripes = view(damaged).getUint16(SUPERBLOCK_OFFSET + 0x32b + 17 + 44, true);
    for (let index = 0; index < stripes; index++) view(damaged).setBigUint64(SUPERBLOCK_OFFSET + 0x32b + 17 + 48 + index * 32, 9n, true);
    rewriteChecksum(damaged, SUPERBLOCK_OFFSET, 4096);
    expect(await thrownBy(damaged, async () => undefined)).toMatchObject({ code: 'FILESYSTEM_UNSUPPORTED', message: expect.stringMatching(/another device/) });
  });

  it('survives seeded-random damage to the superblock and tree blocks (checksums written again) with typed errors only', async () => {
    const { pristineOutcome, tally, findings } = await runWalkCampaign({
      folder: folder.file('fuzz'),
      target: 'btrfs-walk',
      pristine,
      cases: CASES,
      seed: BASE_SEED,
      damage: (random) => randomBtrfsDamage(pristine, structures, random),
    });
    expect(pristineOutcome).toBe('ok');
    expect(findings).toEqual([]);
    expect(tally['FILESYSTEM_CORRUPT'] ?? 0).toBeGreaterThan(CASES / 20);
    expect(tally['ok'] ?? 0).toBeGreaterThan(CASES / 20);
  }, 600_000);
});
