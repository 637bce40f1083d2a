/**
 * An in-place rewrite (compact, compress, encrypt…) replaces the disk by renaming a new file over
 * it, which the folder's permission allows even where the file's own does not. Found by an audit:
 * run by another user, it rewrote a read-only disk and gave another user's disk to the caller
 * (its VM's user could no longer write it). Run as root here, so the commands run as `nobody`.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { debugfs, makeExtImage, qcow2FromRaw } from '../helpers/guest-filesystems.ts';
import { qemuImg, qemuIo } from '../helpers/qemu.ts';

const launcher = fileURLToPath(new URL('../../bin/cowbell', import.meta.url));
const asRoot = process.getuid?.() === 0;
let folder = '';

beforeAll(() => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'cowbell-permissions-'));
  // Anyone may create and rename files here (as in a shared VM folder); the disks' own modes decide.
  fs.chmodSync(folder, 0o777);
});
afterAll(() => fs.rmSync(folder, { recursive: true, force: true }));

/** bin/cowbell as `nobody` where this runs as root (runuser), else as this user. */
function cowbellAsOther(...args: string[]): { code: number | null; err: string } {
  const command = asRoot ? ['runuser', ['-u', 'nobody', '--', process.execPath, launcher, ...args]] : [process.execPath, [launcher, ...args]];
  const result = spawnSync(command[0] as string, command[1] as string[], { encoding: 'utf8', cwd: folder });
  return { code: result.status, err: result.stderr };
}

async function disk(name: string, mode: number, owner: 'other' | 'runner'): Promise<{ file: string; before: Buffer; stat: fs.Stats }> {
  const file = path.join(folder, name);
  await qemuImg(['create', '-q', '-f', 'qcow2', file, '8M']);
  await qemuIo(file, ['write -P 7 0 1M', 'write -z 1M 1M']);
  if (asRoot) {
    // 'runner' is the user the command runs as (nobody); 'other' another one (daemon, uid 1).
    fs.chownSync(file, owner === 'runner' ? Number(spawnSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).stdout) : 1, owner === 'runner' ? Number(spawnSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).stdout) : 1);
  }
  fs.chmodSync(file, mode);
  return { file, before: fs.readFileSync(file), stat: fs.statSync(file) };
}

describe('in-place rewrites respect the disk\'s own permissions and owner', () => {
  it('a read-only disk (0444) is refused, byte for byte unchanged', { timeout: 60_000 }, async () => {
    const { file, before, stat } = await disk('read-only.qcow2', 0o444, 'runner');
    for (const command of ['compact', 'compress']) {
      const result = cowbellAsOther(command, file);
      expect(result.code, result.err).toBe(1);
      expect(result.err).toMatch(/you may not write this disk/);
      expect(fs.readFileSync(file).equals(before)).toBe(true);
      expect(fs.statSync(file).ino).toBe(stat.ino);
    }
  });

  it.skipIf(!asRoot)('another user\'s disk that the caller may write (0666) keeps its owner: refused rather than given away', { timeout: 60_000 }, async () => {
    const { file, before, stat } = await disk('other-user.qcow2', 0o666, 'other');
    const result = cowbellAsOther('compact', file);
    expect(result.code, result.err).toBe(1);
    expect(result.err).toMatch(/belongs to another user/);
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    expect([fs.statSync(file).uid, fs.statSync(file).ino]).toEqual([stat.uid, stat.ino]);
    expect(fs.readdirSync(folder).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  it.skipIf(!asRoot)('the caller\'s own disk in a group they are not in (0660): refused naming the disk and the group, not given to their group', { timeout: 60_000 }, async () => {
    const { file, before, stat } = await disk('own-group.qcow2', 0o660, 'runner');
    // gid 6 (disk): nobody is not in it.
    fs.chownSync(file, stat.uid, 6);
    const result = cowbellAsOther('compact', file);
    expect(result.code, result.err).toBe(1);
    expect(result.err).toContain(`${file}: the disk's group (gid 6) cannot be kept`);
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    expect(fs.statSync(file).gid).toBe(6);
  });
});

describe('copy-out run by a user, not root', () => {
  it('copies over an earlier copy of a read-only guest folder (0500) with --force, and leaves it read-only again', { timeout: 60_000 }, async () => {
    const raw = path.join(folder, 'guest-ro.img');
    await makeExtImage(raw, 16, { 'ro/inside.txt': 'kept\n' });
    await debugfs(raw, ['sif /ro mode 040555']);
    const image = path.join(folder, 'guest-ro.qcow2');
    await qcow2FromRaw(raw, image);
    fs.chmodSync(image, 0o644);
    const destination = path.join(folder, 'restored');
    fs.mkdirSync(destination);
    fs.chmodSync(destination, 0o777);
    const first = cowbellAsOther('copy-out', image, '/ro', destination);
    expect(first.code, first.err).toBe(0);
    const again = cowbellAsOther('copy-out', '--force', image, '/ro', destination);
    expect(again.code, again.err).toBe(0);
    expect(fs.readFileSync(path.join(destination, 'ro', 'inside.txt'), 'utf8')).toBe('kept\n');
    expect(fs.statSync(path.join(destination, 'ro')).mode & 0o222).toBe(0);
  });
});

