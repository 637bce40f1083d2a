/**
 * The LUKS fixture disks themselves (test/helpers/luks-disks.ts), checked with the real tools and
 * nothing of Cowbell's: what `cryptsetup luksDump` reports of each volume, that each passphrase
 * opens its volume (`cryptsetup open --test-passphrase`), that each data segment decrypts — by
 * node:crypto with the volume key cryptsetup dumps — to the plaintext the helper encrypted, that
 * the helper's file expectations are what debugfs and mtools read from those plaintexts, and that
 * variant b differs from a only inside partition 3.
 */
import { createCipheriv, createDecipheriv, createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fatTool } from '../fat-fixtures.ts';
import { buildLuksDisk, extractPartition, luksDump, opensWith, sha256, volumeKey, type LuksFileExpectation, type LuksFixtureDisk, type LuksFixtureVolume } from '../../../helpers/luks-disks.ts';
import { firstDifference, runTool, tempDir, type TempDir } from '../../../helpers/qemu.ts';

const MiB = 1024 * 1024;
const LUKS_GPT_TYPE = 'CA7D7CCB-63ED-4C53-861C-1742536059CC';

/** What luksDump must report, written out here rather than taken from the helper's specs. */
const EXPECTED_DUMPS = {
  2: {
    version: 2, uuid: '3f1d2c4b-5a69-4e87-9b0c-1d2e3f405162', label: 'cryptroot', cipher: 'aes-xts-plain64', keyBits: 512, sectorBytes: 4096, payloadOffset: MiB,
    keyslots: [
      { slot: 0, kdf: 'argon2id', iterations: 4, memoryKiB: 8192, threads: 1, keyBits: 512 },
      { slot: 1, kdf: 'pbkdf2', hash: 'sha256', iterations: 1000, keyBits: 512 },
    ],
  },
  3: {
    version: 1, uuid: '7c6b5a49-3827-4165-8f4e-3d2c1b0a9988', label: null, cipher: 'aes-xts-plain64', keyBits: 256, sectorBytes: 512, payloadOffset: 2 * MiB,
    keyslots: [{ slot: 0, kdf: 'pbkdf2', hash: 'sha256', iterations: 1000, keyBits: 256 }],
  },
  4: {
    version: 2, uuid: 'a1b2c3d4-e5f6-4718-8293-a4b5c6d7e8f9', label: null, cipher: 'aes-cbc-essiv:sha256', keyBits: 256, sectorBytes: 512, payloadOffset: MiB,
    keyslots: [{ slot: 0, kdf: 'pbkdf2', hash: 'sha512', iterations: 1000, keyBits: 256 }],
  },
} as const;

let folder: TempDir;
let a: LuksFixtureDisk;
let b: LuksFixtureDisk;

beforeAll(async () => {
  folder = tempDir();
  a = await buildLuksDisk(folder.path, 'a');
  b = await buildLuksDisk(folder.path, 'b');
}, 60_000);
afterAll(() => folder.cleanup());

function partitionFile(disk: LuksFixtureDisk, number: number): string {
  return extractPartition(disk, disk.raw, number, folder.file(`${path.basename(disk.raw)}-p${number}`));
}

function volumeOn(disk: LuksFixtureDisk, partition: number): LuksFixtureVolume {
  const volume = disk.volumes.find((candidate) => candidate.partition === partition);
  if (!volume) throw new Error(`no volume on partition ${partition}`);
  return volume;
}

/** A sector's IV: its number in 512-byte units from the data segment's start, as dm-crypt counts without iv_large_sectors. */
function sectorNumber(sector: number, sectorBytes: number): Buffer {
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64LE(BigInt((sector * sectorBytes) / 512));
  return iv;
}

/** The data segment decrypted sector by sector: aes-xts-plain64 and aes-cbc-essiv:sha256. */
function decryptSegment(ciphertext: Buffer, cipher: string, key: Buffer, sectorBytes: number): Buffer {
  const plaintext = Buffer.alloc(ciphertext.length);
  const essivKey = createHash('sha256').update(key).digest();
  for (let sector = 0; sector * sectorBytes < ciphertext.length; sector++) {
    const at = sector * sectorBytes;
    let iv = sectorNumber(sector, sectorBytes);
    let algorithm = `aes-${key.length * 4}-xts`;
    if (cipher === 'aes-cbc-essiv:sha256') {
      const essiv = createCipheriv('aes-256-ecb', essivKey, null).setAutoPadding(false);
      iv = essiv.update(iv);
      algorithm = `aes-${key.length * 8}-cbc`;
    } else if (cipher !== 'aes-xts-plain64') throw new Error(`no reference decryption for ${cipher}`);
    const decipher = createDecipheriv(algorithm, key, iv).setAutoPadding(false);
    decipher.update(ciphertext.subarray(at, at + sectorBytes)).copy(plaintext, at);
    decipher.final();
  }
  return plaintext;
}

const decrypted = new Map<string, Promise<Buffer>>();

/** The first `plaintext.bytes` of the volume's data segment, decrypted (once per disk and volume). */
function decryptedPlaintext(disk: LuksFixtureDisk, volume: LuksFixtureVolume): Promise<Buffer> {
  const id = `${disk.raw}:${volume.partition}`;
  const known = decrypted.get(id) ?? decryptVolume(disk, volume);
  decrypted.set(id, known);
  return known;
}

async function decryptVolume(disk: LuksFixtureDisk, volume: LuksFixtureVolume): Promise<Buffer> {
  const file = partitionFile(disk, volume.partition);
  const key = await volumeKey(folder.path, file, volume.passphrases[0] ?? '');
  const segment = fs.readFileSync(file).subarray(volume.payloadOffset, volume.payloadOffset + volume.plaintext.bytes);
  return decryptSegment(segment, volume.cipher, key, volume.sectorBytes);
}

/** Every entry of an ext image as debugfs reads it, under `prefix`. */
async function debugfsTree(image: string, prefix: string, folderPath = ''): Promise<Record<string, LuksFileExpectation>> {
  const files: Record<string, LuksFileExpectation> = {};
  const listing = await runTool('debugfs', ['-R', `ls -p ${folderPath || '/'}`, image]);
  for (const line of listing.stdout.split('\n')) {
    // /inode/mode (octal)/uid/gid/name/size/
    const fields = /^\/(\d+)\/(\d+)\/\d+\/\d+\/(.*)\/(\d*)\/$/.exec(line);
    // Unused entries (lost+found's preallocated blocks) list as inode 0 with no name.
    if (!fields || fields[1] === '0' || ['', '.', '..'].includes(fields[3] ?? '')) continue;
    const inside = `${folderPath}/${fields[3]}`;
    if ((parseInt(fields[2] ?? '', 8) & 0o170000) === 0o040000) {
      files[`${prefix}${inside}`] = 'directory';
      Object.assign(files, await debugfsTree(image, prefix, inside));
    } else {
      const host = `${image}.dump`;
      await runTool('debugfs', ['-R', `dump ${inside} ${host}`, image]);
      const bytes = fs.readFileSync(host);
      files[`${prefix}${inside}`] = { size: bytes.length, sha256: sha256(bytes) };
    }
  }
  return files;
}

/** Every entry of a FAT image as mtools reads it, under `prefix`. */
async function mtoolsTree(image: string, prefix: string): Promise<Record<string, LuksFileExpectation>> {
  const files: Record<string, LuksFileExpectation> = {};
  const listing = await fatTool('mdir', ['-/', '-b', '-i', image, '::']);
  for (const line of listing.split('\n').filter((entry) => entry.startsWith('::/'))) {
    const inside = line.slice(2).replace(/\/$/, '');
    if (line.endsWith('/')) {
      files[`${prefix}${inside}`] = 'directory';
      continue;
    }
    const host = `${image}.copy`;
    await fatTool('mcopy', ['-n', '-i', image, `::${inside}`, host]);
    const bytes = fs.readFileSync(host);
    files[`${prefix}${inside}`] = { size: bytes.length, sha256: sha256(bytes) };
  }
  return files;
}

function only(files: Record<string, LuksFileExpectation>, prefix: string): Record<string, LuksFileExpectation> {
  return Object.fromEntries(Object.entries(files).filter(([name]) => name.startsWith(`${prefix}/`)));
}

describe('LUKS fixture disks (the fixture only, no Cowbell)', { timeout: 60_000 }, () => {
  it('have a GPT with the plain partition 1 and LUKS partitions 2-4 where the helper says', async () => {
    const table = JSON.parse((await runTool('sfdisk', ['--json', a.raw])).stdout) as { partitiontable: { label: string; partitions: { start: number; size: number; type: string }[] } };
    expect(table.partitiontable.label).toBe('gpt');
    expect(table.partitiontable.partitions.map((part) => ({ offset: part.start * 512, length: part.size * 512 }))).toEqual(a.partitions.map(({ offset, length }) => ({ offset, length })));
    expect(table.partitiontable.partitions.map((part) => part.type === LUKS_GPT_TYPE)).toEqual([false, true, true, true]);
    expect(await runTool('blkid', ['-p', '-o', 'value', '-s', 'LABEL', partitionFile(a, 1)])).toMatchObject({ stdout: 'boot\n' });
  });

  it.each([2, 3, 4] as const)('partition %i: luksDump reports the intended header', async (partition) => {
    const facts = await luksDump(partitionFile(a, partition));
    expect(facts).toEqual(EXPECTED_DUMPS[partition]);
  });

  it('each passphrase opens its volume (cryptsetup --test-passphrase), a wrong one does not', async () => {
    for (const volume of a.volumes) {
      const file = partitionFile(a, volume.partition);
      for (const passphrase of volume.passphrases) expect(await opensWith(folder.path, file, passphrase), `${volume.partition}: ${passphrase}`).toBe(true);
      expect(await opensWith(folder.path, file, `${volume.passphrases[0] ?? ''}x`)).toBe(false);
    }
    // The second keyslot of partition 2 opens it alone: luksKillSlot of slot 0 on a copy.
    const copy = folder.file('p2-slot1-only');
    fs.copyFileSync(partitionFile(a, 2), copy);
    fs.writeFileSync(folder.file('second-key'), 'second key, pbkdf2');
    await runTool('cryptsetup', ['luksKillSlot', '--batch-mode', '--key-file', folder.file('second-key'), copy, '0']);
    expect(await opensWith(folder.path, copy, 'second key, pbkdf2')).toBe(true);
    expect(await opensWith(folder.path, copy, 'correct horse battery staple')).toBe(false);
  });

  it('each data segment decrypts (512-byte IV units, also for 4096-byte sectors) to the plaintext that was encrypted', async () => {
    for (const volume of a.volumes) expect(sha256(await decryptedPlaintext(a, volume)), `a p${volume.partition}`).toBe(volume.plaintext.sha256);
    // b is a's bytes but for partition 3 (the last test).
    expect(sha256(await decryptedPlaintext(b, volumeOn(b, 3)))).toBe(volumeOn(b, 3).plaintext.sha256);
  });

  it('hold the files the helper expects, as debugfs and mtools read them from the decrypted plaintexts', async () => {
    const [lvm, luks1, fat] = [2, 3, 4].map((partition) => volumeOn(a, partition));
    if (!lvm || !luks1 || !fat) throw new Error('a volume is missing');
    expect(await debugfsTree(partitionFile(a, 1), '/1')).toEqual(only(a.files, '/1'));

    for (const disk of [a, b]) {
      const luks1Image = folder.file(`${path.basename(disk.raw)}-luks1.ext4`);
      fs.writeFileSync(luks1Image, await decryptedPlaintext(disk, volumeOn(disk, 3)));
      expect(await debugfsTree(luks1Image, `/luks-${luks1.uuid}`)).toEqual(only(disk.files, `/luks-${luks1.uuid}`));
    }

    const fatImage = folder.file('fat.vfat');
    fs.writeFileSync(fatImage, await decryptedPlaintext(a, fat));
    expect(await mtoolsTree(fatImage, `/luks-${fat.uuid}`)).toEqual(only(a.files, `/luks-${fat.uuid}`));

    // The LVs from the decrypted PV, gathered where lvs said (offsets from the data segment's start).
    const pv = await decryptedPlaintext(a, lvm);
    const gather = (name: string): Buffer => Buffer.concat((a.lvm.volumes[name] ?? []).map((segment) => pv.subarray(segment.offset, segment.offset + segment.length)));
    fs.writeFileSync(folder.file('root.ext4'), gather('root'));
    expect(await debugfsTree(folder.file('root.ext4'), '/vgcrypt-root')).toEqual(only(a.files, '/vgcrypt-root'));
    expect(a.lvm.volumes['root']).toHaveLength(2);
    expect(gather('swap').subarray(4096 - 10, 4096).toString('latin1')).toBe('SWAPSPACE2');
    // Every path of the whole disk is one of those checked.
    const checked = ['/1', '/vgcrypt-root', `/luks-${luks1.uuid}`, `/luks-${fat.uuid}`];
    for (const disk of [a, b]) expect(Object.keys(disk.files).filter((name) => !checked.some((prefix) => name.startsWith(`${prefix}/`)))).toEqual([]);
  });

  it('variant b differs from a only inside partition 3, which keeps its uuid and passphrase', async () => {
    const bytesA = fs.readFileSync(a.raw);
    const bytesB = fs.readFileSync(b.raw);
    const p3 = a.partitions.find((part) => part.number === 3);
    if (!p3) throw new Error('no partition 3');
    expect(bytesB.length).toBe(bytesA.length);
    expect(firstDifference(bytesA.subarray(0, p3.offset), bytesB.subarray(0, p3.offset))).toBe(-1);
    expect(firstDifference(bytesA.subarray(p3.offset + p3.length), bytesB.subarray(p3.offset + p3.length))).toBe(-1);
    expect(firstDifference(bytesA.subarray(p3.offset, p3.offset + p3.length), bytesB.subarray(p3.offset, p3.offset + p3.length))).not.toBe(-1);
    expect(await luksDump(partitionFile(b, 3))).toEqual(EXPECTED_DUMPS[3]);
    expect(await opensWith(folder.path, partitionFile(b, 3), 'luks one')).toBe(true);
    const changed = Object.keys({ ...a.files, ...b.files }).filter((name) => JSON.stringify(a.files[name]) !== JSON.stringify(b.files[name]));
    expect(changed.sort()).toEqual([`/luks-${EXPECTED_DUMPS[3].uuid}/data/added.txt`, `/luks-${EXPECTED_DUMPS[3].uuid}/data/todo.txt`, `/luks-${EXPECTED_DUMPS[3].uuid}/notes.txt`]);
  });
});
