/**
 * A new file that takes an existing disk's name keeps what the disk had besides its bytes: owner,
 * group, mode (setuid, setgid and sticky bits too) and extended attributes, its POSIX ACL above
 * all. Found by an audit: a rewrite in place dropped the ACL, and the mode's group bits (the ACL's
 * mask) then opened the disk to its owning group while the user the ACL named lost it; convert and
 * create --force gave a private disk to the caller as 0644. ACLs and attributes are set and read
 * with the real tools (acl, attr); inode flags with chattr and lsattr (e2fsprogs), which need a file
 * system that has them (ext4, btrfs, xfs).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertImage } from '../../../src/shared/qcow2/convert/convert.ts';
import { createImage } from '../../../src/shared/qcow2/image/create.ts';
import { nodeFileSystem } from '../../../src/shared/qcow2/io/atomic-file.ts';
import { keepReplacedAttributes, readReplacedFile } from '../../../src/shared/qcow2/io/replaced-file-attributes.ts';
import { rewriteImage } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { qemuImg, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';

const asRoot = process.getuid?.() === 0;
let folder: TempDir;
let count = 0;

beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

/** getfacl's entries without its header comments; user.* attributes as getfattr dumps them. */
function aclOf(file: string): string {
  return execFileSync('getfacl', ['--omit-header', '--numeric', file], { encoding: 'utf8' });
}
function userAttributesOf(file: string): string {
  return execFileSync('getfattr', ['--dump', '--absolute-names', '--match=^user\\.', file], { encoding: 'utf8' }).replace(/^# file: .*\n/m, '');
}

async function diskWithSnapshot(): Promise<string> {
  const file = folder.file(`disk-${++count}.qcow2`);
  await qemuImg(['create', '-q', '-f', 'qcow2', file, '4M']);
  await qemuIo(file, ['write -P 0x21 0 1M']);
  await qemuImg(['snapshot', '-c', 'kept', file]);
  await qemuIo(file, ['write -P 0x22 512k 1M']);
  return file;
}

/** lsattr's flag letters that are set (ext4's own 'e' for extents and the like included). */
function inodeFlagsOf(file: string): string {
  return (execFileSync('lsattr', ['-d', file], { encoding: 'utf8' }).split(' ')[0] ?? '').replace(/-/g, '');
}

/** The process's umask, as a file created 0666 shows it. */
function umaskNow(where: string): number {
  const probe = path.join(where, 'umask-probe');
  fs.writeFileSync(probe, '', { mode: 0o666 });
  const mode = fs.statSync(probe).mode & 0o777;
  fs.rmSync(probe);
  return 0o666 & ~mode;
}

/** Owner, group and every mode bit, as octal. */
function ownership(file: string): [number, number, string] {
  const stats = fs.statSync(file);
  return [stats.uid, stats.gid, (stats.mode & 0o7777).toString(8)];
}

describe('a new file that replaces a disk', () => {
  it('in place (compress, compact): keeps the ACL, the user attributes, and every mode bit', async () => {
    const file = await diskWithSnapshot();
    // A disk shared through its ACL: its group may not touch it, user 65534 (nobody) may write it.
    execFileSync('setfacl', ['--set', 'u::rw,u:65534:rw,g::-,m::rw,o::-', file]);
    execFileSync('setfattr', ['-n', 'user.origin', '-v', 'installer image', file]);
    fs.chmodSync(file, 0o2660);
    const acl = aclOf(file);
    const attributes = userAttributesOf(file);
    const owner = ownership(file);
    expect(acl).toContain('user:65534:rw-');
    for (const compression of ['compress', 'keep'] as const) {
      const inode = fs.statSync(file).ino;
      expect(rewriteImage({ source: file, compression }).inPlace).toBe(true);
      expect(fs.statSync(file).ino, `${compression}: a new file`).not.toBe(inode);
      expect(aclOf(file), compression).toBe(acl);
      expect(userAttributesOf(file), compression).toBe(attributes);
      expect(ownership(file), compression).toEqual(owner);
    }
  });

  it.skipIf(!asRoot)('by request (convert, create --force onto a disk): keeps its owner, group, private mode and ACL', async () => {
    const source = await diskWithSnapshot();
    for (const [label, write] of [
      ['convert -O raw', (target: string) => convertImage({ source, target, targetFormat: 'raw', overwrite: true })],
      ['convert -O qcow2 -c --no-snapshots', (target: string) => convertImage({ source, target, targetFormat: 'qcow2', compress: true, overwrite: true })],
      ['create --force', (target: string) => createImage({ path: target, size: 1024 * 1024, overwrite: true })],
    ] as const) {
      const target = folder.file(`private-${++count}.img`);
      fs.writeFileSync(target, 'an old disk');
      fs.chownSync(target, 1234, 1234);
      fs.chmodSync(target, 0o600);
      execFileSync('setfacl', ['-m', 'u:65534:r', target]);
      const acl = aclOf(target);
      write(target);
      expect(fs.readFileSync(target, 'latin1'), label).not.toBe('an old disk');
      expect(ownership(target), label).toEqual([1234, 1234, '640']);
      expect(aclOf(target), label).toBe(acl);
    }
    expect(path.dirname(source)).toBe(folder.path);
  });

  it('refuses, before any data, a user attribute or ACL it cannot set where the disk is rewritten in place, and a lost ACL always; by request it keeps the rest', () => {
    const old = folder.file(`old-${++count}`);
    fs.writeFileSync(old, 'old');
    const replaced = readReplacedFile(old);
    if (replaced === null) throw new Error('no file read');
    const fresh = folder.file(`new-${++count}`);
    const fd = fs.openSync(fresh, 'w');
    const name = (text: string): Uint8Array => new TextEncoder().encode(text);
    try {
      // No value may pass 64 KiB (E2BIG); no ACL is 3 bytes long (EINVAL); the system's own namespaces never refuse.
      const tooLarge = { ...replaced, attributes: [{ name: name('user.big'), value: new Uint8Array(65537) }] };
      expect(() => keepReplacedAttributes(fd, tooLarge, true)).toThrow(expect.objectContaining({ code: 'PERMISSION_DENIED', message: expect.stringContaining('user.big (E2BIG)') }));
      expect(() => keepReplacedAttributes(fd, tooLarge, false)).not.toThrow();
      const brokenAcl = { ...replaced, attributes: [{ name: name('system.posix_acl_access'), value: new Uint8Array([2, 0, 0]) }] };
      expect(() => keepReplacedAttributes(fd, brokenAcl, false)).toThrow(/access control list/);
      const system = { ...replaced, attributes: [{ name: name('security.cowbell-test'), value: new Uint8Array([1]) }, { name: name('nonamespace.x'), value: new Uint8Array([1]) }] };
      expect(() => keepReplacedAttributes(fd, system, true)).not.toThrow();
    } finally {
      fs.closeSync(fd);
    }
  });

  it("replacing a file, the new one is the owner's alone from its creation (no other user can open it before it gets the old one's mode)", () => {
    const replacing = folder.file(`private-create-${++count}`);
    const file = nodeFileSystem.create(replacing, 0o600);
    try {
      expect((fs.statSync(replacing).mode & 0o777).toString(8)).toBe('600');
    } finally {
      file.close();
    }
    const plain = folder.file(`plain-create-${++count}`);
    nodeFileSystem.create(plain).close();
    expect(fs.statSync(plain).mode & 0o066, 'a new file that replaces none: the usual mode (less the umask)').not.toBe(0);
  });

  it('in place: not the ACL the folder gives new files, and what the user changed while it ran', async () => {
    const file = await diskWithSnapshot();
    fs.chmodSync(file, 0o640);
    // Non-UTF-8 bytes in an attribute's name.
    execFileSync('bash', ['-c', `setfattr -n $'user.caf\\xe9' -v kept '${file}'`]);
    execFileSync('setfacl', ['-d', '-m', 'u:65534:rw', folder.path]);
    try {
      rewriteImage({ source: file, compression: 'compress' }, {
        progress(stage, done) {
          if (stage !== 'copying' || done === 0 || fs.statSync(file).mode % 0o1000 === 0o600) return;
          fs.chmodSync(file, 0o600);
          execFileSync('setfattr', ['-n', 'user.changed', '-v', 'meanwhile', file]);
        },
        throwIfCancelled() {},
      });
    } finally {
      execFileSync('setfacl', ['-k', folder.path]);
    }
    expect(aclOf(file)).not.toContain('65534');
    expect(ownership(file)[2]).toBe('600');
    // getfattr prints a name's bytes as they are: read as Latin-1, each byte is one character.
    const attributes = execFileSync('getfattr', ['--dump', '--absolute-names', '--encoding=hex', file], { encoding: 'latin1' });
    expect(attributes).toContain('user.caf\u00e9=0x6b657074');
    expect(attributes).toContain('user.changed=0x');
  });

  it('keeps the inode flags a user sets (chattr): none from the folder while the data is written, the old file\'s once it is', async () => {
    const sub = folder.file(`flags-${++count}`);
    fs.mkdirSync(sub);
    // New files here start with synchronous writes (ext4 passes +S on), which would make the copy crawl.
    execFileSync('chattr', ['+S', sub]);
    const file = path.join(sub, 'disk.qcow2');
    fs.renameSync(await diskWithSnapshot(), file);
    execFileSync('chattr', ['-S', '+d', '+A', file]);
    const seen: string[] = [];
    const watch = {
      progress(stage: string) {
        if (stage !== 'copying') return;
        for (const name of fs.readdirSync(sub)) if (name.endsWith('.tmp')) seen.push(inodeFlagsOf(path.join(sub, name)));
      },
      throwIfCancelled() {},
    };
    expect(rewriteImage({ source: file, compression: 'keep' }, watch).inPlace).toBe(true);
    expect(seen.length).toBeGreaterThan(0);
    for (const flags of seen) expect(flags, 'the new file while its data is written').not.toMatch(/[SdA]/);
    expect(inodeFlagsOf(file)).toMatch(/d/);
    expect(inodeFlagsOf(file)).toMatch(/A/);
    expect(inodeFlagsOf(file)).not.toMatch(/S/);
    // Synchronous writes asked for on the disk itself are kept too, once the data is in.
    execFileSync('chattr', ['+S', file]);
    seen.length = 0;
    expect(rewriteImage({ source: file, compression: 'compress' }, watch).inPlace).toBe(true);
    for (const flags of seen) expect(flags, 'the new file while its data is written').not.toMatch(/S/);
    expect(inodeFlagsOf(file)).toMatch(/S/);
    expect(inodeFlagsOf(file)).toMatch(/d/);
    // By request too: a disk converted onto an existing one takes over its flags.
    const target = path.join(sub, 'target.img');
    fs.writeFileSync(target, 'an old disk');
    execFileSync('chattr', ['-S', '+d', target]);
    convertImage({ source: file, target, targetFormat: 'raw', overwrite: true });
    expect(inodeFlagsOf(target)).toMatch(/d/);
    expect(inodeFlagsOf(target)).not.toMatch(/S/);
  });

  it('a new OUTPUT made from a disk (compact, decrypt, convert into a new file) opens to no one the disk was closed to, from its first byte', async () => {
    const sub = folder.file(`outputs-${++count}`);
    fs.mkdirSync(sub);
    for (const [sourceMode, expected] of [[0o600, 0o600], [0o640, 0o640], [0o644, 0o644], [0o400, 0o600]] as const) {
      const source = path.join(sub, `source-${sourceMode.toString(8)}.qcow2`);
      fs.renameSync(await diskWithSnapshot(), source);
      fs.chmodSync(source, sourceMode);
      const seen: number[] = [];
      const watch = {
        progress(stage: string) {
          if (stage !== 'copying') return;
          for (const name of fs.readdirSync(sub)) if (name.endsWith('.tmp')) seen.push(fs.statSync(path.join(sub, name)).mode & 0o777);
        },
        throwIfCancelled() {},
      };
      const label = `a ${sourceMode.toString(8)} disk`;
      const compacted = path.join(sub, `compacted-${sourceMode.toString(8)}.qcow2`);
      rewriteImage({ source, target: compacted, compression: 'keep' }, watch);
      const converted = path.join(sub, `converted-${sourceMode.toString(8)}.raw`);
      convertImage({ source, target: converted, targetFormat: 'raw' }, watch);
      expect(seen.length, label).toBeGreaterThan(0);
      // Less the umask: what the umask takes away is never given back.
      const umasked = expected & ~umaskNow(sub);
      for (const mode of seen) expect(mode.toString(8), `${label}: the new file while it is written`).toBe(umasked.toString(8));
      for (const output of [compacted, converted]) expect((fs.statSync(output).mode & 0o777).toString(8), `${label}: ${path.basename(output)}`).toBe(umasked.toString(8));
    }
  });

  it('convert takes the strictest mode of every file it reads: an open overlay over a private base gives a private copy (audit Q3)', async () => {
    const sub = folder.file(`chain-${++count}`);
    fs.mkdirSync(sub);
    const base = path.join(sub, 'base.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', base, '4M']);
    await qemuIo(base, ['write -P 0x61 0 1M']);
    fs.chmodSync(base, 0o600);
    const overlay = path.join(sub, 'overlay.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', overlay]);
    fs.chmodSync(overlay, 0o644);
    const flat = path.join(sub, 'flat.raw');
    convertImage({ source: overlay, target: flat, targetFormat: 'raw' });
    expect((fs.statSync(flat).mode & 0o777).toString(8)).toBe((0o600 & ~umaskNow(sub)).toString(8));
  });
});
