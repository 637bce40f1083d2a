/**
 * What an atomic write (convert, create, every rewrite to a named output) may replace: a file, or
 * the file a link leads to — never a device, a named pipe or a folder, which were replaced by a
 * regular file before (and a FIFO blocked the check's open for ever).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeFileAtomically } from '../../../src/shared/qcow2/io/atomic-file.ts';

const canMakeDevices = ((): boolean => {
  const probe = fs.mkdtempSync(path.join(os.tmpdir(), 'cowbell-mknod-'));
  try {
    execFileSync('mknod', [path.join(probe, 'device'), 'c', '1', '3'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(probe, { recursive: true, force: true });
  }
})();

let folder = '';
beforeEach(() => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'cowbell-targets-'));
});
afterEach(() => fs.rmSync(folder, { recursive: true, force: true }));

function write(target: string, text: string): void {
  writeFileAtomically(target, (file) => file.write(new TextEncoder().encode(text), 0), { overwrite: true });
}

function failure(run: () => void): { code?: unknown; message?: unknown } {
  try {
    run();
  } catch (error) {
    return error as { code?: unknown; message?: unknown };
  }
  throw new Error('expected a failure');
}

describe('the target of an atomic write', () => {
  it('a named pipe is refused at once (not opened), and left a pipe', () => {
    const fifo = path.join(folder, 'pipe');
    execFileSync('mkfifo', [fifo]);
    expect(failure(() => write(fifo, 'image'))).toMatchObject({ code: 'NOT_A_FILE', message: expect.stringMatching(/named pipe/) });
    expect(fs.lstatSync(fifo).isFIFO()).toBe(true);
  });

  // Only root makes device nodes (CI runs as root); /dev's own are never aimed at.
  it.skipIf(!canMakeDevices)('a device node is refused and left a device', () => {
    const device = path.join(folder, 'null-device');
    execFileSync('mknod', [device, 'c', '1', '3']);
    expect(failure(() => write(device, 'image'))).toMatchObject({ code: 'NOT_A_FILE', message: expect.stringMatching(/a device/) });
    expect(fs.lstatSync(device).isCharacterDevice()).toBe(true);
  });

  it('a folder is refused', () => {
    const inner = path.join(folder, 'inner');
    fs.mkdirSync(inner);
    expect(failure(() => write(inner, 'image'))).toMatchObject({ code: 'NOT_A_FILE' });
    expect(fs.lstatSync(inner).isDirectory()).toBe(true);
  });

  it('a link is written through: the file it leads to is replaced, the link stays', () => {
    fs.mkdirSync(path.join(folder, 'elsewhere'));
    const real = path.join(folder, 'elsewhere', 'disk.raw');
    fs.writeFileSync(real, 'old');
    const link = path.join(folder, 'disk.raw');
    fs.symlinkSync(real, link);
    write(link, 'new');
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect(fs.readFileSync(real, 'utf8')).toBe('new');
    expect(fs.readdirSync(path.join(folder, 'elsewhere'))).toEqual(['disk.raw']);
  });

  it('a link to nothing is refused, naming where it leads', () => {
    const link = path.join(folder, 'dangling.raw');
    fs.symlinkSync('missing.raw', link);
    expect(failure(() => write(link, 'image'))).toMatchObject({ code: 'NOT_FOUND', message: expect.stringMatching(/missing\.raw/) });
  });

  it('a folder that is missing is said to be; one that exists (/proc, whose file system answers ENOENT to a new file) is not', (context) => {
    const missing = path.join(folder, 'no-such-folder', 'disk.qcow2');
    expect(failure(() => write(missing, 'image'))).toMatchObject({ code: 'NOT_FOUND', message: `${missing}: the folder ${path.dirname(missing)} does not exist` });

    if (!fs.statSync('/proc', { throwIfNoEntry: false })?.isDirectory()) context.skip();
    const underProc = '/proc/cowbell-new-disk.qcow2';
    const refused = failure(() => write(underProc, 'image'));
    expect(refused).toMatchObject({ code: 'CANNOT_CREATE', message: expect.stringContaining(`${underProc} could not be created: the folder /proc exists`) });
    expect(refused.message).not.toMatch(/does not exist/);
    expect(fs.existsSync(underProc)).toBe(false);
  });

  it("a name that climbs out of a linked folder ('link/../out') is written beside where the kernel climbs to, temporary file and all", () => {
    fs.mkdirSync(path.join(folder, 'x', 'real', 'sub'), { recursive: true });
    fs.mkdirSync(path.join(folder, 'y'));
    fs.symlinkSync('../x/real/sub', path.join(folder, 'y', 'link'));
    const target = `${folder}/y/link/../out.img`;
    let temporaryFolder = '';
    writeFileAtomically(target, (file, temporaryPath) => {
      temporaryFolder = path.dirname(temporaryPath);
      file.write(new TextEncoder().encode('image'), 0);
    }, { overwrite: false });
    expect(temporaryFolder).toBe(fs.realpathSync(path.join(folder, 'x', 'real')));
    expect(fs.readFileSync(path.join(folder, 'x', 'real', 'out.img'), 'utf8')).toBe('image');
    expect(fs.readdirSync(path.join(folder, 'y'))).toEqual(['link']);
  });

  it('a file bind-mounted over the name (a container volume) is refused before any work, and left as it was', (context) => {
    const real = path.join(folder, 'real.img');
    const mounted = path.join(folder, 'mounted.img');
    fs.writeFileSync(real, 'the disk');
    fs.writeFileSync(mounted, '');
    try {
      execFileSync('mount', ['--bind', real, mounted], { stdio: 'ignore' });
    } catch {
      // Needs root and a mount namespace it may change (these machines have both; a container may not).
      context.skip('SKIPPED: mount --bind is not permitted here');
    }
    try {
      let built = false;
      expect(failure(() => writeFileAtomically(mounted, () => { built = true; }, { overwrite: true }))).toMatchObject({ code: 'NOT_A_FILE', message: expect.stringMatching(/is a mount point/) });
      // Named relatively, too (mountinfo lists absolute paths).
      const relative = path.relative(process.cwd(), mounted);
      expect(failure(() => writeFileAtomically(relative, () => { built = true; }, { overwrite: true }))).toMatchObject({ code: 'NOT_A_FILE' });
      expect(built).toBe(false);
      expect(fs.readFileSync(mounted, 'utf8')).toBe('the disk');
    } finally {
      execFileSync('umount', [mounted]);
    }
  });
});

