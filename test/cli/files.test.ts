/**
 * `cowbell ls` and `cowbell copy-out` on disks the real tools made (sfdisk, mke2fs -d, debugfs,
 * qemu-img with a snapshot between changes): listings and copied bytes equal what the tools put
 * there, IMG@SNAPSHOT picks a state (an existing file named with an '@' stays a file), nothing is
 * overwritten without --force, and Ctrl-C leaves no partial file (bin/cowbell in its own process).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { run } from '../helpers/cli.ts';
import { debugfs, makeExtImage, makePartitionedDisk, MiB, placeImage, qcow2FromRaw, qemuSnapshot, writeRawIntoQcow2 } from '../helpers/guest-filesystems.ts';
import { mkntfs, volumeFlagsOffset } from '../helpers/ntfs-tools.ts';
import { runTool, tempDir, type TempDir } from '../helpers/qemu.ts';
import { memoryVolumeBytes } from '../helpers/raw-volume-bytes.ts';
import { readManifests } from '../helpers/guest-manifest.ts';
import { inodeOffset } from '../../src/shared/qcow2/files/xfs/xfs-inodes.ts';
import { readXfsSuperblock } from '../../src/shared/qcow2/files/xfs/xfs-superblock.ts';
import { SeededRandom } from '../helpers/seeded-random.ts';

vi.setConfig({ testTimeout: 120_000 });

const launcher = fileURLToPath(new URL('../../bin/cowbell', import.meta.url));
const BIN = new SeededRandom(7).bytes(700_000);

let folder: TempDir;
let disk: string;
let raw: string;
let rootImage: string;
beforeAll(async () => {
  folder = tempDir();
  raw = folder.file('disk.raw');
  await makePartitionedDisk(raw, 48, 'mbr', [
    { startMiB: 1, sizeMiB: 8, type: '82' },
    { startMiB: 9, sizeMiB: 32, type: '83' },
  ]);
  rootImage = folder.file('root.ext4');
  await makeExtImage(rootImage, 32, { 'etc/hostname': 'before\n', 'etc/motd': 'hello\n', 'usr/lib/app.bin': BIN, 'usr/lib/app.link': { symlink: 'app.bin' } }, { label: 'cloudimg-rootfs' });
  await debugfs(rootImage, ['set_inode_field /etc/hostname mtime 202402030405', 'set_inode_field /usr/lib/app.link mtime 202305060708']);
  placeImage(raw, rootImage, 9 * MiB);
  // The '@' in the name must not be taken for a snapshot separator.
  disk = folder.file('vm@home.qcow2');
  await qcow2FromRaw(raw, disk);
  await qemuSnapshot(disk, 'before-update');
  const changed = folder.file('hostname');
  fs.writeFileSync(changed, 'after the update\n');
  await debugfs(rootImage, ['rm /etc/hostname', `write ${changed} /etc/hostname`, 'rm /etc/motd']);
  placeImage(raw, rootImage, 9 * MiB);
  await writeRawIntoQcow2(raw, disk);
});
afterAll(() => folder.cleanup());

describe('cowbell ls', () => {
  it('"/" of a partitioned disk shows the volumes with their filesystem and label', async () => {
    const result = await run('ls', disk);
    expect(result.code).toBe(0);
    const lines = result.out.trim().split('\n');
    expect(lines[0]).toMatch(/^VOLUME\s+SIZE\s+FILESYSTEM\s+LABEL\s+PARTITION/);
    // Type 0x82 is Linux swap: named for what it holds.
    expect(lines[1]).toMatch(/^1\s+8 MiB\s+swap\s+mbr 0x82$/);
    expect(lines[2]).toMatch(/^2\s+32 MiB\s+ext\s+cloudimg-rootfs\s+mbr 0x83$/);
  });

  it('lists a folder of the current state and of a snapshot (IMG@SNAPSHOT and -l)', async () => {
    const current = JSON.parse((await run('ls', '--json', disk, '/2/etc')).out) as { entries: { name: string; size: number }[] };
    expect(current.entries.map((entry) => [entry.name, entry.size])).toEqual([['hostname', 17]]);
    const before = JSON.parse((await run('ls', '--json', `${disk}@before-update`, '/2/etc')).out) as { entries: { name: string; size: number; mtimeMs: number }[] };
    expect(before.entries.map((entry) => [entry.name, entry.size])).toEqual([['hostname', 7], ['motd', 6]]);
    expect(before.entries[0]?.mtimeMs).toBe(Date.UTC(2024, 1, 3, 4, 5));
    const byOption = await run('ls', '-l', 'before-update', disk, '/2/etc');
    expect(byOption.out).toMatch(/^file\s+7 B\s+2024-02-03 04:05\s+hostname$/m);
    expect(byOption.out).toMatch(/^file\s+6 B\s+.*motd$/m);
  });

  it('-l current and IMG@current read a snapshot named "current" where there is one (as convert -l does), else the current state', async () => {
    const named = folder.file('named-current.qcow2');
    fs.copyFileSync(disk, named);
    const names = async (...args: string[]): Promise<string[]> => (JSON.parse((await run('ls', '--json', ...args)).out) as { entries: { name: string }[] }).entries.map((entry) => entry.name);
    expect(await names('-l', 'current', named, '/2/etc')).toEqual(['hostname']);
    await qemuSnapshot(named, 'current');
    // The snapshot holds the state just copied; the current state changes after it.
    const root = folder.file('named-current.ext4');
    const whole = folder.file('named-current.raw');
    fs.copyFileSync(rootImage, root);
    fs.copyFileSync(raw, whole);
    await debugfs(root, ['rm /etc/hostname']);
    placeImage(whole, root, 9 * MiB);
    await writeRawIntoQcow2(whole, named);
    expect(await names(named, '/2/etc')).toEqual([]);
    expect(await names('-l', 'current', named, '/2/etc')).toEqual(['hostname']);
    expect(await names(`${named}@current`, '/2/etc')).toEqual(['hostname']);
  });

  it('IMG@SNAPSHOT where the snapshot\'s own name holds an @ (it said the file did not exist)', async () => {
    const named = folder.file('at-in-snapshot.qcow2');
    fs.copyFileSync(disk, named);
    await qemuSnapshot(named, 'x@y');
    const listed = await run('ls', '--json', `${named}@x@y`, '/2/etc');
    expect(listed.code, listed.err).toBe(0);
    expect((JSON.parse(listed.out) as { entries: { name: string }[] }).entries.map((entry) => entry.name)).toEqual(['hostname']);
  });

  it('shows a symlink with its target, and a file by itself', async () => {
    const listing = await run('ls', disk, '/2/usr/lib');
    expect(listing.out).toMatch(/^link\s+7 B\s+\S+ \S+\s+app\.link -> app\.bin$/m);
    const one = JSON.parse((await run('ls', '--json', disk, '/2/usr/lib/app.bin')).out) as { entries: unknown[] };
    expect(one.entries).toMatchObject([{ name: 'app.bin', kind: 'file', size: BIN.length }]);
  });

  it('lists an entry the guest filesystem is damaged at as "damaged", and says why on stderr (its folder still lists)', async () => {
    // The XFS fixture's second state, the inode of /etc/passwd without its signature.
    const volume = folder.file('xfs.raw');
    const fixture = folder.file('xfs.qcow2');
    fs.writeFileSync(fixture, gunzipSync(fs.readFileSync(path.join(import.meta.dirname, '..', 'engine', 'files', 'xfs', 'fixtures', 'xfs-v5.qcow2.gz'))));
    expect((await runTool('qemu-img', ['convert', '-O', 'raw', '-l', 'unmounted', fixture, volume])).code).toBe(0);
    const bytes = new Uint8Array(fs.readFileSync(volume));
    const superblock = await readXfsSuperblock(memoryVolumeBytes(bytes));
    const passwd = (readManifests<Record<string, Record<string, Record<string, { inode: number }>>>>(path.join(import.meta.dirname, '..', 'engine', 'files', 'xfs', 'fixtures', 'xfs-manifests.json.gz')))['v5']!['second']!['/etc/passwd']!;
    bytes.fill(0, inodeOffset(superblock, passwd.inode), inodeOffset(superblock, passwd.inode) + 2);
    fs.writeFileSync(volume, bytes);
    const damagedDisk = folder.file('damaged-xfs.qcow2');
    await qcow2FromRaw(volume, damagedDisk);
    const result = await run('ls', damagedDisk, '/etc');
    expect(result.code).toBe(0);
    expect(result.out).toMatch(/^damaged\s+-\s+passwd$/m);
    expect(result.out).toMatch(/^file\s+\S+ B\s+.+\s+hostname$/m);
    expect(result.err).toMatch(/note: \/etc\/passwd cannot be read: .*no inode signature/);
    const json = JSON.parse((await run('ls', '--json', damagedDisk, '/etc')).out) as { entries: { name: string; kind: string; damaged?: string }[] };
    expect(json.entries.find((entry) => entry.name === 'passwd')).toMatchObject({ kind: 'other', damaged: expect.stringMatching(/no inode signature/) });
  });

  it('fails with the engine\'s message for a missing path, volume or snapshot', async () => {
    expect(await run('ls', disk, '/2/nope')).toMatchObject({ code: 1, err: expect.stringContaining('/nope does not exist') });
    expect(await run('ls', disk, '/1/')).toMatchObject({ code: 1, err: expect.stringContaining('Volume /1 is swap space: it holds no files') });
    expect(await run('ls', `${disk}@nope`)).toMatchObject({ code: 1, err: expect.stringContaining('no snapshot named "nope"') });
  });
});

describe('cowbell copy-out', () => {
  it('--force where a folder stands in a guest file\'s place says so (it said to pass --force, which was passed)', async () => {
    const out = fs.mkdtempSync(path.join(folder.path, 'out-'));
    fs.mkdirSync(path.join(out, 'hostname'));
    const result = await run('copy-out', '--force', disk, '/2/etc/hostname', out);
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/is a folder, where the guest has a file: --force replaces files, never folders/);
    expect(fs.statSync(path.join(out, 'hostname')).isDirectory()).toBe(true);
  });

  it('a destination that is a file named as a folder (FILE/) is said in words, not as a raw EEXIST', async () => {
    const file = folder.file('plain-file');
    fs.writeFileSync(file, 'mine');
    const result = await run('copy-out', disk, '/2/etc', `${file}/`);
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/already exists|not a folder/);
    expect(result.err).not.toMatch(/EEXIST|internal/i);
    expect(fs.readFileSync(file, 'utf8')).toBe('mine');
  });

  it('copies a file of a snapshot into an existing folder, with its bytes and time', async () => {
    const out = fs.mkdtempSync(path.join(folder.path, 'out-'));
    const result = await run('copy-out', `${disk}@before-update`, '/2/etc/hostname', out);
    expect(result).toMatchObject({ code: 0, out: expect.stringContaining('Copied 1 file') });
    expect(fs.readFileSync(path.join(out, 'hostname'), 'utf8')).toBe('before\n');
    expect(fs.statSync(path.join(out, 'hostname')).mtimeMs).toBe(Date.UTC(2024, 1, 3, 4, 5));
  });

  it('copies a folder recursively to a new name; symlinks stay symlinks', async () => {
    const target = path.join(folder.path, 'usr-copy');
    const result = JSON.parse((await run('copy-out', '--json', disk, '/2/usr', target)).out) as { files: number; folders: number; symlinks: number; bytes: number };
    expect(result).toMatchObject({ files: 1, folders: 2, symlinks: 1, bytes: BIN.length });
    expect(new Uint8Array(fs.readFileSync(path.join(target, 'lib', 'app.bin')))).toEqual(BIN);
    expect(fs.readlinkSync(path.join(target, 'lib', 'app.link'))).toBe('app.bin');
    // The link's own time, not its target's, nor the time of the copy.
    expect(fs.lstatSync(path.join(target, 'lib', 'app.link')).mtimeMs).toBe(Date.UTC(2023, 4, 6, 7, 8));
  });

  it('a folder copy that skipped entries the guest encrypted exits 3 (the copy made, not all of it) and names them; a whole one exits 0', async () => {
    const image = folder.file('sealed.ext4');
    await makeExtImage(image, 8, { 'd/open.txt': 'open\n', 'd/sealed.bin': 'sealed\n' }, { mkfsArgs: ['-O', 'encrypt'] });
    // mkfs cannot encrypt; the flag (EXT4_ENCRYPT_FL) is what says the bytes are ciphertext.
    const flags = /Flags: (0x[0-9a-f]+)/.exec(await debugfs(image, ['stat /d/sealed.bin']))?.[1];
    expect(flags).toBeDefined();
    await debugfs(image, [`set_inode_field /d/sealed.bin flags 0x${(Number(flags) | 0x800).toString(16)}`]);
    const sealedDisk = folder.file('sealed.qcow2');
    await qcow2FromRaw(image, sealedDisk);

    const partial = await run('copy-out', sealedDisk, '/d', folder.file('sealed-copy'));
    expect(partial.code, partial.err).toBe(3);
    expect(partial.out).toContain('Copied 1 file');
    expect(partial.err).toMatch(/skipped \/d\/sealed\.bin: .*encrypted inside the guest/);
    expect(fs.readFileSync(path.join(folder.file('sealed-copy'), 'open.txt'), 'utf8')).toBe('open\n');
    const json = await run('copy-out', '--json', sealedDisk, '/d', folder.file('sealed-json'));
    expect(json.code).toBe(3);
    expect((JSON.parse(json.out) as { skipped: { path: string }[] }).skipped.map((skipped) => skipped.path)).toEqual(['/d/sealed.bin']);
    expect(await run('copy-out', sealedDisk, '/d/open.txt', folder.file('open-alone.txt'))).toMatchObject({ code: 0, err: '' });
  });

  it('never replaces an existing file without --force', async () => {
    const target = path.join(folder.path, 'existing-hostname');
    fs.writeFileSync(target, 'mine');
    const refused = await run('copy-out', disk, '/2/etc/hostname', target);
    expect(refused.code).not.toBe(0);
    expect(refused.err).toContain('already exists');
    expect(fs.readFileSync(target, 'utf8')).toBe('mine');
    expect(await run('copy-out', '--force', disk, '/2/etc/hostname', target)).toMatchObject({ code: 0 });
    expect(fs.readFileSync(target, 'utf8')).toBe('after the update\n');
    expect(fs.readdirSync(folder.path).filter((name) => name.includes('.cowbell-'))).toEqual([]);
  });

  it('Ctrl-C stops the copy and removes the partial file (exit 130, as a shell reports)', async () => {
    const big = folder.file('big.ext4');
    await makeExtImage(big, 200, { 'big.bin': new SeededRandom(9).bytes(150 * MiB) });
    const bigDisk = folder.file('big.qcow2');
    await qcow2FromRaw(big, bigDisk);
    fs.rmSync(big);
    const out = fs.mkdtempSync(path.join(folder.path, 'cancel-'));
    const child = spawn(launcher, ['copy-out', bigDisk, '/big.bin', out], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    // Interrupt once the temporary file exists (the copy is under way).
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (fs.readdirSync(out).length > 0) {
          clearInterval(poll);
          resolve();
        }
      }, 5);
    });
    child.kill('SIGINT');
    const code = await exited;
    expect(code, stderr).toBe(130);
    expect(stderr).toContain('Cancelled');
    expect(fs.readdirSync(out)).toEqual([]);

    // A folder's copy stopped half-way says what it left, and still exits as a signal's (scripts tell it from a failure).
    const folderOut = fs.mkdtempSync(path.join(folder.path, 'cancel-folder-'));
    const folderChild = spawn(launcher, ['copy-out', bigDisk, '/', path.join(folderOut, 'copy')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let folderStderr = '';
    folderChild.stderr.on('data', (chunk: Buffer) => (folderStderr += chunk.toString()));
    const folderExited = new Promise<number | null>((resolve) => folderChild.on('close', (exitCode) => resolve(exitCode)));
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        const copy = path.join(folderOut, 'copy');
        if (fs.existsSync(copy) && fs.readdirSync(copy).some((name) => name.includes('.cowbell-'))) {
          clearInterval(poll);
          resolve();
        }
      }, 5);
    });
    folderChild.kill('SIGINT');
    expect(await folderExited, folderStderr).toBe(130);
    expect(folderStderr).toContain('the copy stopped there');
  });
});

describe('a volume that reads with a caution', () => {
  it('says it on stderr, and in --json\'s volumes (an NTFS volume Windows had mounted)', async () => {
    const raw = folder.file('windows.ntfs');
    fs.writeFileSync(raw, '');
    fs.truncateSync(raw, 16 * MiB);
    await mkntfs(raw, 'Windows');
    const bytes = fs.readFileSync(raw);
    const flags = volumeFlagsOffset(bytes);
    bytes[flags] = (bytes[flags] as number) | 1;
    fs.writeFileSync(raw, bytes);
    const disk = folder.file('windows.qcow2');
    await qcow2FromRaw(raw, disk);
    const listed = await run('ls', disk);
    expect(listed.code).toBe(0);
    expect(listed.err).toMatch(/^cowbell: caution: \(current\): Windows had this volume mounted .*may be missing\n$/);
    const json = JSON.parse((await run('ls', '--json', disk)).out) as { volumes: { caution?: string }[] };
    expect(json.volumes[0]?.caution).toMatch(/Windows had this volume mounted/);
  });
});
