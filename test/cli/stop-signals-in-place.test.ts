/**
 * Ctrl-C, SIGTERM or SIGHUP while `snapshot create|apply|delete|rename` or `resize` writes the disk
 * in place: the change is finished first, then the signal is reported, and the command keeps its
 * result. Found by an audit: left to Node's default, the signal ended the process between two
 * writes, leaving the disk dirty with COPIED flags `qemu-img check` counted as errors (exit 2).
 * The signal is delivered by strace at the k-th write of the command (strace's fault injection).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemuImg, qemuIo, tempDir, type TempDir } from '../helpers/qemu.ts';

const NODE = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url));
const LAUNCHER = fileURLToPath(new URL('../../bin/cowbell', import.meta.url));
let folder: TempDir;
let base = '';
let firstState = '';

beforeAll(async () => {
  folder = tempDir();
  base = folder.file('base.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', base, '64M']);
  await qemuIo(base, ['write -P 0x11 0 24M']);
  await qemuImg(['snapshot', '-c', 's1', base]);
  firstState = folder.file('s1.raw');
  await qemuImg(['convert', '-f', 'qcow2', '-O', 'raw', base, firstState]);
  await qemuIo(base, ['write -P 0x22 8M 24M']);
  await qemuImg(['snapshot', '-c', 's2', base]);
  await qemuIo(base, ['write -P 0x33 16M 8M']);
}, 60_000);
afterAll(() => folder.cleanup());

/** `cowbell ARGS…` on a fresh copy of the disk, `signal` delivered at its `at`-th pwrite. */
function interrupted(args: (disk: string) => string[], signal: string, at: number): { disk: string; status: number | null; stderr: string } {
  const disk = folder.file(`disk-${signal}-${at}-${args('').join('-').replace(/\W+/g, '')}.qcow2`);
  fs.copyFileSync(base, disk);
  const result = spawnSync('strace', ['-f', '-o', '/dev/null', '-e', 'trace=pwrite64', '-e', `inject=pwrite64:signal=${signal}:when=${at}`, NODE, LAUNCHER, ...args(disk)], { encoding: 'utf8' });
  return { disk, status: result.status, stderr: result.stderr };
}

function checkStatus(disk: string): number | null {
  return spawnSync('qemu-img', ['check', disk], { encoding: 'utf8' }).status;
}

function snapshotNames(disk: string): string[] {
  const listed = spawnSync('qemu-img', ['snapshot', '-l', disk], { encoding: 'utf8' }).stdout;
  return listed.split('\n').slice(2).map((line) => line.trim().split(/\s+/)[1] ?? '').filter((name) => name !== '');
}

function virtualSize(disk: string): number {
  return (JSON.parse(spawnSync('qemu-img', ['info', '--output=json', disk], { encoding: 'utf8' }).stdout) as { 'virtual-size': number })['virtual-size'];
}

describe('a stop signal during an in-place change', () => {
  const cases: { label: string; args: (disk: string) => string[]; done: (disk: string) => void }[] = [
    { label: 'snapshot create', args: (disk) => ['snapshot', 'create', disk, 'new'], done: (disk) => expect(snapshotNames(disk)).toEqual(['s1', 's2', 'new']) },
    { label: 'snapshot delete', args: (disk) => ['snapshot', 'delete', disk, 's1'], done: (disk) => expect(snapshotNames(disk)).toEqual(['s2']) },
    { label: 'snapshot apply', args: (disk) => ['snapshot', 'apply', disk, 's1'], done: (disk) => expect(spawnSync('qemu-img', ['compare', '-q', '-f', 'qcow2', '-F', 'raw', disk, firstState]).status).toBe(0) },
    // Past what the L1 table covers (a new table), and a shrink that drops data past the end.
    { label: 'resize (grow)', args: (disk) => ['resize', disk, '3T'], done: (disk) => expect(virtualSize(disk)).toBe(3 * 1024 ** 4) },
    { label: 'resize (shrink)', args: (disk) => ['resize', '--shrink', '--discard-data', disk, '16M'], done: (disk) => expect(virtualSize(disk)).toBe(16 * 1024 ** 2) },
  ];
  for (const { label, args, done } of cases) {
    it(`${label}: finishes the change, says the signal came, keeps exit 0, and leaves a disk qemu-img check finds clean`, { timeout: 120_000 }, () => {
      for (const [signal, at] of [['SIGINT', 2], ['SIGTERM', 3], ['SIGHUP', 4], ['SIGINT', 5]] as const) {
        const run = interrupted(args, signal, at);
        const where = `${label}, ${signal} at write ${at}`;
        expect(run.status, `${where}: ${run.stderr}`).toBe(0);
        expect(run.stderr, where).toContain(`${signal} came while the disk was being changed; the change was finished first`);
        expect(checkStatus(run.disk), where).toBe(0);
        done(run.disk);
      }
    });
  }

  it('a change refused after a signal came says only why it was refused (nothing was written, nothing finished first)', () => {
    const disk = folder.file('refused.qcow2');
    fs.copyFileSync(base, disk);
    // The signal comes while the disk's tables are read, before the refusal (s1 exists).
    const result = spawnSync('strace', ['-f', '-o', '/dev/null', '-P', disk, '-e', 'trace=pread64', '-e', 'inject=pread64:signal=SIGINT:when=2', NODE, LAUNCHER, 'snapshot', 'create', disk, 's1'], { encoding: 'utf8' });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/already exists/);
    expect(result.stderr).not.toMatch(/finished first/);
    expect(checkStatus(disk)).toBe(0);
  });
});
