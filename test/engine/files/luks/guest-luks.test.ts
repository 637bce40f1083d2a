/**
 * Files inside a guest's LUKS-encrypted volumes, read by Cowbell with the passphrase: the disk
 * test/helpers/luks-disks.ts builds with cryptsetup (LUKS2 with an Argon2id and a PBKDF2 key slot,
 * 4096-byte sectors, LVM inside; LUKS1; LUKS2 with aes-cbc-essiv and a non-ASCII passphrase), made
 * a qcow2 by qemu-img with a snapshot before partition 3's files changed. Every listing and every
 * byte is checked against what the tools put there (the helper's expectations, from the source
 * folders), never against Cowbell's own reading.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diffStatesByName } from '../../../../src/shared/qcow2/files/files-diff.ts';
import { restoreFromState } from '../../../../src/shared/qcow2/files/restore.ts';
import { openStateFiles, type StateFiles, type StateFilesOptions } from '../../../../src/shared/qcow2/files/state-files.ts';
import type { VolumePassphrase } from '../../../../src/shared/qcow2/files/encrypted-volumes.ts';
import { readDiff } from '../../../../src/shared/qcow2/snapshots/operations.ts';
import { buildLuksQcow2, LUKS_VOLUMES, sha256, type LuksFixtureDisk } from '../../../helpers/luks-disks.ts';
import { tempDir, type TempDir } from '../../../helpers/qemu.ts';

const encoder = new TextEncoder();
let folder: TempDir;
let a: LuksFixtureDisk;
let b: LuksFixtureDisk;
let disk = '';

const volume = (partition: number) => LUKS_VOLUMES.find((each) => each.partition === partition)!;
const everyPassphrase = (): VolumePassphrase[] => LUKS_VOLUMES.map((each) => ({ uuid: each.uuid, passphrase: encoder.encode(each.passphrases[0]) }));
const withPassphrases = (passphrases: VolumePassphrase[]): StateFilesOptions => ({ volumes: { passphrases } });

async function open(state: string, options: StateFilesOptions = withPassphrases(everyPassphrase())): Promise<StateFiles> {
  return openStateFiles(disk, state, options);
}

/** Every file and folder under `path`, as the helper's expectations name them. */
async function walk(files: StateFiles, path: string, into: Map<string, { size: number; sha256: string } | 'directory'>): Promise<void> {
  for (const entry of await files.list(path)) {
    if (entry.kind === 'directory') {
      into.set(entry.path, 'directory');
      await walk(files, entry.path, into);
    } else if (entry.kind === 'file') {
      const bytes = new Uint8Array(entry.size);
      let done = 0;
      while (done < bytes.length) {
        const count = await files.read(entry.path, bytes.subarray(done), done);
        if (count === 0) break;
        done += count;
      }
      into.set(entry.path, { size: entry.size, sha256: sha256(bytes.subarray(0, done)) });
    }
  }
}

beforeAll(async () => {
  folder = tempDir();
  ({ a, b, disk } = await buildLuksQcow2(folder.path));
}, 120_000);
afterAll(() => folder.cleanup());

describe('encrypted volumes inside a guest', { timeout: 120_000 }, () => {
  it('are described from their headers without a passphrase, and stay locked', async () => {
    const files = await open('before', {});
    try {
      expect(files.volumes.map((each) => each.name)).toEqual(['1', '2', '3', '4']);
      for (const partition of [2, 3, 4]) {
        const spec = volume(partition);
        const info = files.volumes[partition - 1]!;
        expect(info.holds).toBe('luks');
        expect(info.problem).toBeUndefined();
        expect(info.encryption).toEqual({
          format: spec.format,
          uuid: spec.uuid,
          ...(spec.label === undefined ? {} : { label: spec.label }),
          cipher: { 2: 'aes-256-xts-plain64', 3: 'aes-128-xts-plain64', 4: 'aes-256-cbc-essiv:sha256' }[partition],
          sectorBytes: spec.sectorBytes,
          unlocked: false,
        });
        await expect(files.list(`/${partition}`)).rejects.toMatchObject({ code: 'NO_FILESYSTEM' });
      }
    } finally {
      await files.close();
    }
  });

  it('read with their passphrases: every file and folder the tools put there, byte for byte', async () => {
    const files = await open('before');
    try {
      const names = files.volumes.map((each) => each.name);
      expect(names).toEqual(['1', '2', '3', '4', 'vgcrypt-root', 'vgcrypt-swap', `luks-${volume(3).uuid}`, `luks-${volume(4).uuid}`]);
      for (const partition of [2, 3, 4]) expect(files.volumes[partition - 1]!.encryption).toMatchObject({ unlocked: true });
      expect(files.volumes.slice(4).map((each) => [each.encryptedIn, each.filesystem, each.holds])).toEqual([
        ['2', 'ext', undefined],
        ['2', null, 'swap'],
        ['3', 'ext', undefined],
        ['4', 'fat', undefined],
      ]);
      const seen = new Map<string, { size: number; sha256: string } | 'directory'>();
      for (const name of names.filter((each) => files.volumes.find((info) => info.name === each)?.filesystem !== null)) await walk(files, `/${name}`, seen);
      expect(Object.fromEntries([...seen].sort())).toEqual(Object.fromEntries(Object.entries(a.files).sort()));
    } finally {
      await files.close();
    }
  });

  it('place the volumes inside them in guest bytes: a logical volume\'s pieces and a file\'s extents lie in its encrypted partition\'s data', async () => {
    const files = await open('before');
    try {
      const partition2 = a.partitions.find((each) => each.number === 2)!;
      const dataStart = partition2.offset + volume(2).payloadOffset;
      const root = files.volumes.find((each) => each.name === 'vgcrypt-root')!;
      expect(root.segments).toEqual(a.lvm.volumes['root']!.map((piece) => ({ offset: dataStart + piece.offset, length: piece.length })));
      const extents = await files.extents('/vgcrypt-root/home/me/big.bin');
      expect(extents).not.toBeNull();
      expect(extents!.reduce((sum, range) => sum + range.length, 0)).toBeGreaterThanOrEqual(3 * 1024 * 1024);
      for (const range of extents!) {
        expect(range.offset).toBeGreaterThanOrEqual(dataStart);
        expect(range.offset + range.length).toBeLessThanOrEqual(partition2.offset + partition2.length);
      }
    } finally {
      await files.close();
    }
  });

  it('open with any of their key slots, with a passphrase given for no particular volume, and not with a wrong one', async () => {
    const second = await open('before', withPassphrases([{ uuid: volume(2).uuid.toUpperCase(), passphrase: encoder.encode(volume(2).passphrases[1]!) }]));
    try {
      expect(second.volumes.map((each) => each.name)).toEqual(['1', '2', '3', '4', 'vgcrypt-root', 'vgcrypt-swap']);
      expect(new TextDecoder().decode(await readAll(second, '/vgcrypt-root/etc/hostname'))).toBe('crypt-host\n');
    } finally {
      await second.close();
    }
    const anyVolume = await open('before', withPassphrases([{ passphrase: encoder.encode(volume(4).passphrases[0]!) }]));
    try {
      expect(anyVolume.volumes.map((each) => each.name)).toEqual(['1', '2', '3', '4', `luks-${volume(4).uuid}`]);
      // Tried on every volume, it failed on the others: they say so.
      expect(anyVolume.volumes[2]!.encryption).toMatchObject({ unlocked: false, problemCode: 'BAD_PASSPHRASE' });
    } finally {
      await anyVolume.close();
    }
    const wrong = await open('before', withPassphrases([{ uuid: volume(3).uuid, passphrase: encoder.encode('luks two') }]));
    try {
      expect(wrong.volumes.map((each) => each.name)).toEqual(['1', '2', '3', '4']);
      expect(wrong.volumes[2]!.encryption).toMatchObject({ unlocked: false, problemCode: 'BAD_PASSPHRASE', problem: expect.stringMatching(/passphrase opens none/) });
      expect(wrong.volumes[1]!.encryption).toEqual(expect.not.objectContaining({ problem: expect.anything() }));
    } finally {
      await wrong.close();
    }
  });

  it('compare as files between two states: what changed inside the re-encrypted volume, and nothing else', async () => {
    const diff = await diffStatesByName((state) => open(state), 'before', 'current', () => readDiff(disk, 'before', 'current').ranges);
    const inside = `/luks-${volume(3).uuid}`;
    // The encrypted partitions are compared by what is inside them; swap holds no files.
    expect(diff.skipped).toEqual([{ volume: '/vgcrypt-swap', reason: 'no filesystem Cowbell can read' }]);
    expect(diff.differences.map((each) => [each.path, each.change]).sort()).toEqual(
      [
        [`${inside}/data/added.txt`, 'added'],
        [`${inside}/data/todo.txt`, 'removed'],
        [`${inside}/notes.txt`, 'changed'],
      ].sort(),
    );
    // Opened in one state only: what is inside is not compared (it would read as all added).
    const changedKey = await diffStatesByName(
      (state) => open(state, withPassphrases(state === 'before' ? everyPassphrase() : everyPassphrase().filter((entry) => entry.uuid !== volume(3).uuid))),
      'before',
      'current',
      () => readDiff(disk, 'before', 'current').ranges,
    );
    expect(changedKey.differences).toEqual([]);
    expect(changedKey.skipped).toEqual([
      { volume: '/3', reason: expect.stringMatching(/^an encrypted volume the passphrases given open in one of the two states only/) },
      { volume: inside, reason: expect.stringMatching(/^inside the encrypted volume \/3, which the passphrases given open in one of the two states only/) },
      { volume: '/vgcrypt-swap', reason: 'no filesystem Cowbell can read' },
    ]);
    // The current state reads as variant b throughout.
    const files = await open('current');
    try {
      for (const [path, expected] of Object.entries(b.files)) {
        if (expected === 'directory' || !path.startsWith(inside)) continue;
        expect(sha256(await readAll(files, path)), path).toBe(expected.sha256);
      }
    } finally {
      await files.close();
    }
  });

  it('restore a file from inside an encrypted logical volume to the host', async () => {
    const files = await open('before');
    const target = folder.file('big.bin');
    try {
      await restoreFromState(files, '/vgcrypt-root/home/me/big.bin', target);
    } finally {
      await files.close();
    }
    const expected = a.files['/vgcrypt-root/home/me/big.bin'];
    expect(expected).not.toBe('directory');
    expect(createHash('sha256').update(fs.readFileSync(target)).digest('hex')).toBe((expected as { sha256: string }).sha256);
  });
});

async function readAll(files: StateFiles, path: string): Promise<Uint8Array> {
  const entry = await files.stat(path);
  const bytes = new Uint8Array(entry.size);
  let done = 0;
  while (done < bytes.length) {
    const count = await files.read(path, bytes.subarray(done), done);
    if (count === 0) break;
    done += count;
  }
  return bytes.subarray(0, done);
}
