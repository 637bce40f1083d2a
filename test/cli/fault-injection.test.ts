/**
 * System calls made to fail on purpose (strace's fault injection), as a failing disk or a full
 * quota would: each failure is the command's typed one-line error, never a silent change of what
 * it does. Found by an I/O-fault audit. Needs strace able to trace (skipped, and said so, where not).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemuImg, qemuInfo, qemuIo, tempDir, type TempDir } from '../helpers/qemu.ts';

const launcher = fileURLToPath(new URL('../../bin/cowbell', import.meta.url));
const straceWorks = spawnSync('strace', ['-f', '-qq', '-o', '/dev/null', 'true']).status === 0;
if (!straceWorks) console.warn('SKIPPED: fault-injection tests need strace able to trace here (apt-get install strace; ptrace allowed)');

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

/** bin/cowbell with the `when`-th call of `syscall` on `file` failing with `errno`. */
function faulted(file: string, syscall: string, errno: string, when: number, ...args: string[]): { code: number | null; err: string } {
  const result = spawnSync('strace', ['-f', '-qq', '-o', '/dev/null', '-P', file, '-e', `trace=${syscall}`, '-e', `inject=${syscall}:error=${errno}:when=${when}`, process.execPath, launcher, ...args], { encoding: 'utf8' });
  return { code: result.status, err: result.stderr };
}

async function withSnapshots(name: string): Promise<string> {
  const image = folder.file(name);
  await qemuImg(['create', '-q', '-f', 'qcow2', image, '4M']);
  await qemuIo(image, ['write -P 1 0 64k']);
  await qemuImg(['snapshot', '-c', 's1', image]);
  await qemuIo(image, ['write -P 2 0 64k']);
  await qemuImg(['snapshot', '-c', 's2', image]);
  return image;
}

describe.skipIf(!straceWorks)('I/O faults', { timeout: 60_000 }, () => {
  it('convert: one failed read of the source fails the copy (it made a copy without the snapshots, exit 0, and said nothing)', async () => {
    const image = await withSnapshots('source.qcow2');
    const output = folder.file('copy.qcow2');
    const result = faulted(image, 'pread64', 'EIO', 1, 'convert', '-O', 'qcow2', image, output);
    if (result.code === 0) expect(((await qemuInfo(output)).snapshots ?? []).map((snapshot) => snapshot.name)).toEqual(['s1', 's2']);
    else {
      expect(result.err).toMatch(/input\/output error/);
      expect(fs.existsSync(output)).toBe(false);
    }
    expect(result.code).toBe(1);
  });

  it('a failure writing a new file names the file asked for (not its hidden temporary name), and offers no rescue of the source', async () => {
    const image = await withSnapshots('fine.qcow2');
    for (const [command, extra] of [['convert', ['-O', 'qcow2']], ['compact', []], ['convert', ['-O', 'raw']]] as const) {
      const output = folder.file(`out-${command}-${extra.join('')}.img`);
      const result = spawnSync('strace', ['-f', '-qq', '-o', '/dev/null', '-e', 'trace=fdatasync', '-e', 'inject=fdatasync:error=EIO:when=1', process.execPath, launcher, command, ...extra, image, output], { encoding: 'utf8' });
      expect(result.status, result.stderr).toBe(1);
      expect(result.stderr).toMatch(new RegExp(`^cowbell: ${output.replaceAll('.', '\\.')}: input/output error`));
      expect(result.stderr).not.toMatch(/\.tmp|cowbell-[0-9a-f]{12}|--rescue/);
      expect(fs.existsSync(output)).toBe(false);
      expect(fs.readdirSync(folder.path).filter((name) => name.endsWith('.tmp'))).toEqual([]);
    }
  });

  it('a disk quota exceeded (EDQUOT) is a full disk, not an unknown error', async () => {
    const image = await withSnapshots('quota.qcow2');
    for (const syscall of ['pwrite64', 'fdatasync']) {
      const result = faulted(image, syscall, 'EDQUOT', 1, 'snapshot', 'create', image, `s-${syscall}`);
      expect(result.code, result.err).toBe(1);
      expect(result.err).toMatch(/the disk is full/);
      expect(result.err).not.toMatch(/unknown/i);
    }
  });

  it('after the point of no return a failure says the work is done: the folder flush after compact\'s rename, the unlink after convert\'s link', async () => {
    const image = await withSnapshots('committed.qcow2');
    const compact = faulted(folder.path, 'fsync', 'EIO', 1, 'compact', image);
    expect(compact.code).toBe(1);
    expect(compact.err).toMatch(/is written and in place, but its folder could not be flushed/);
    expect(((await qemuInfo(image)).snapshots ?? []).map((snapshot) => snapshot.name)).toEqual(['s1', 's2']);
    const output = folder.file('linked.qcow2');
    const result = spawnSync('strace', ['-f', '-qq', '-o', '/dev/null', '-e', 'trace=unlink', '-e', 'inject=unlink:error=EIO:when=1', process.execPath, launcher, 'convert', '-O', 'qcow2', image, output], { encoding: 'utf8' });
    expect(result.status, result.stderr).toBe(0);
    expect(((await qemuInfo(output)).snapshots ?? []).length).toBe(2);
  });

  it('a folder copy that fails half-way says what it left, and where', async () => {
    const content = folder.file('fat-content');
    fs.mkdirSync(`${content}/dd`, { recursive: true });
    fs.writeFileSync(`${content}/dd/a.bin`, 'a'.repeat(5000));
    fs.writeFileSync(`${content}/dd/b.txt`, 'b\n');
    const raw = folder.file('fat.raw');
    spawnSync('truncate', ['-s', '8M', raw]);
    expect(spawnSync('mkfs.vfat', [raw]).status).toBe(0);
    expect(spawnSync('mcopy', ['-s', '-i', raw, `${content}/dd`, '::/'], { encoding: 'utf8' }).status).toBe(0);
    const image = folder.file('fat.qcow2');
    await qemuImg(['convert', '-O', 'qcow2', raw, image]);
    const destination = folder.file('copied');
    const result = spawnSync('strace', ['-f', '-qq', '-o', '/dev/null', '-e', 'trace=link', '-e', 'inject=link:error=EIO:when=2', process.execPath, launcher, 'copy-out', image, '/dd', destination], { encoding: 'utf8' });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(new RegExp(`leaving 1 file and 1 folder in ${destination}`));
  });
});
