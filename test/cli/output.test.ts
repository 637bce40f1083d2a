/**
 * The command line's output on descriptors 1 and 2 (src/cli/output.ts): whole, even through a
 * pipe left non-blocking by someone else, and a reader that goes away ends the output, not the command.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/run.ts';

const NODE = path.resolve('node_modules/.bin/node');
const OUTPUT = path.resolve('src/cli/output.ts');
const LIBC = path.resolve('src/shared/qcow2/io/libc.ts');
const MiB = 1024 * 1024;

/** Runs a module script in a child with stdout and stderr piped; `onStdout` sees the stdout stream. */
function runChild(script: string, onStdout: (stdout: NodeJS.ReadableStream) => void): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(NODE, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  onStdout(child.stdout);
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stderr })));
}

describe('command output', () => {
  it('arrives whole through a non-blocking pipe whose reader is slow', async () => {
    const script = [
      `const { descriptorOutput } = await import(${JSON.stringify(OUTPUT)});`,
      `const { libc } = await import(${JSON.stringify(LIBC)});`,
      'const loaded = libc();',
      'if (loaded instanceof Error) throw loaded;',
      // fcntl(1, F_SETFL, O_NONBLOCK): the pipe now refuses writes (EAGAIN) whenever it is full.
      "if (loaded.library.func('int fcntl(int, int, int)')(1, 4, 0o4000) !== 0) throw new Error('fcntl failed');",
      'const out = descriptorOutput(1);',
      `for (let index = 0; index < 64; index++) out.write(String(index % 10).repeat(${MiB / 4}));`,
      "process.stderr.write('done');",
    ].join('\n');
    let received = 0;
    let digitsRight = true;
    let nextIndex = 0;
    const result = await runChild(script, (stdout) => {
      stdout.pause();
      // A slow reader: the 64 KiB pipe fills long before the 16 MiB are written.
      setTimeout(() => stdout.resume(), 300);
      stdout.on('data', (chunk: Buffer) => {
        for (const byte of chunk) {
          if (byte !== 0x30 + (Math.floor(nextIndex / (MiB / 4)) % 10)) digitsRight = false;
          nextIndex++;
        }
        received += chunk.length;
      });
    });
    expect(result.stderr).toBe('done');
    expect(result.code).toBe(0);
    expect(received).toBe(16 * MiB);
    expect(digitsRight).toBe(true);
  });

  it('stops writing, and the command goes on, when the reader has gone away', async () => {
    const script = [
      `const { descriptorOutput } = await import(${JSON.stringify(OUTPUT)});`,
      'const out = descriptorOutput(1);',
      "out.write('first line\\n');",
      // Writes until well after the reader closed its end: each later write meets EPIPE.
      `for (let index = 0; index < 200; index++) { out.write('x'.repeat(${64 * 1024})); await new Promise((resolve) => setTimeout(resolve, 2)); }`,
      "process.stderr.write('finished');",
    ].join('\n');
    let firstChunk = '';
    const result = await runChild(script, (stdout) => {
      stdout.once('data', (chunk: Buffer) => {
        firstChunk = chunk.toString('utf8');
        (stdout as NodeJS.ReadableStream & { destroy(): void }).destroy();
      });
    });
    expect(firstChunk.startsWith('first line\n')).toBe(true);
    expect(result.stderr).toBe('finished');
    expect(result.code).toBe(0);
  });

  it('an output that cannot be written (a full disk: /dev/full) is the command\'s one-line failure, exit 1, not an internal error', () => {
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'cowbell-output-'));
    const image = path.join(folder, 'disk.qcow2');
    expect(spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, '1M']).status).toBe(0);
    const full = fs.openSync('/dev/full', 'w');
    try {
      const result = spawnSync(path.resolve('bin/cowbell'), ['info', image], { stdio: ['ignore', full, 'pipe'], encoding: 'utf8' });
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(/^cowbell: could not write the output \(standard output\): ENOSPC/);
      expect(result.stderr).not.toMatch(/internal error/i);
      expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    } finally {
      fs.closeSync(full);
      fs.rmSync(folder, { recursive: true, force: true });
    }
  });

  it('output that cannot be written does not undo or stop a change: the work is done, the exit code its own (audit: a retry then found the snapshot made)', () => {
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'cowbell-output-'));
    const image = path.join(folder, 'disk.qcow2');
    expect(spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, '8M']).status).toBe(0);
    const full = fs.openSync('/dev/full', 'w');
    try {
      const made = spawnSync(NODE, [path.resolve('bin/cowbell'), 'snapshot', 'create', image, 's1'], { stdio: ['ignore', full, 'pipe'], encoding: 'utf8' });
      expect(made.status, made.stderr).toBe(0);
      expect(made.stderr).toMatch(/^cowbell: could not write the output \(standard output\): ENOSPC.*; the command did its work, only what it printed is lost\n$/);
      expect(spawnSync('qemu-img', ['snapshot', '-l', image], { encoding: 'utf8' }).stdout).toMatch(/\bs1\b/);
      // Both outputs lost, and progress on the lost stderr: no stack trace anywhere, the work done.
      const both = spawnSync(NODE, [path.resolve('bin/cowbell'), 'compact', '-p', image], { stdio: ['ignore', full, full], encoding: 'utf8' });
      expect(both.status).toBe(0);
      expect(spawnSync('qemu-img', ['check', image]).status).toBe(0);
      // check without -r: its report is what was asked for; lost, it fails (a script would read 0 as clean).
      const checked = spawnSync(NODE, [path.resolve('bin/cowbell'), 'check', '--json', image], { stdio: ['ignore', full, 'pipe'], encoding: 'utf8' });
      expect(checked.status).toBe(1);
      // A listing's output is its result: lost, it fails.
      const listed = spawnSync(NODE, [path.resolve('bin/cowbell'), 'snapshot', 'list', image], { stdio: ['ignore', full, 'pipe'], encoding: 'utf8' });
      expect(listed.status).toBe(1);
      expect(listed.stderr).toMatch(/^cowbell: could not write the output \(standard output\): ENOSPC[^;]*\n$/);
    } finally {
      fs.closeSync(full);
      fs.rmSync(folder, { recursive: true, force: true });
    }
  });

  it('a command that fails with its output lost keeps its failure and claims no work done', async () => {
    let err = '';
    const lost = new Error('could not write the output (standard output): ENOSPC');
    const code = await runCli(['info', path.join(os.tmpdir(), 'cowbell-no-such-disk.qcow2')], { out: () => {}, err: (text) => (err += text), outputFailure: () => lost });
    expect(code).toBe(1);
    expect(err).toMatch(/no such file/);
    expect(err).toMatch(/could not write the output/);
    expect(err).not.toMatch(/did its work/);
  });

  it('redirected to files, they are not flushed to the disk as the command exits (koffi\'s exit hook fsyncs descriptors 1 and 2)', () => {
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'cowbell-output-'));
    const image = path.join(folder, 'disk.qcow2');
    expect(spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, '1M']).status).toBe(0);
    const out = fs.openSync(path.join(folder, 'out.txt'), 'w');
    const err = fs.openSync(path.join(folder, 'err.txt'), 'w');
    try {
      // info takes the image's lock (koffi is loaded); a missing disk fails with a message on stderr.
      for (const [args, code] of [[['info', image], 0], [['info', path.join(folder, 'missing.qcow2')], 1]] as const) {
        const trace = path.join(folder, 'trace.txt');
        const result = spawnSync('strace', ['-f', '-e', 'trace=fsync,fdatasync', '-o', trace, NODE, path.resolve('bin/cowbell'), ...args], { stdio: ['ignore', out, err] });
        expect(result.status, fs.readFileSync(path.join(folder, 'err.txt'), 'utf8')).toBe(code);
        const syncs = fs.readFileSync(trace, 'utf8').split('\n').filter((line) => /f(data)?sync\([12]\)\s*= 0/.test(line));
        expect(syncs, 'fsync calls on the redirected outputs that reached the file').toEqual([]);
      }
      expect(fs.readFileSync(path.join(folder, 'out.txt'), 'utf8')).toMatch(/^image: .*disk\.qcow2\nfile format: qcow2\n/);
      expect(fs.readFileSync(path.join(folder, 'err.txt'), 'utf8')).toMatch(/^cowbell: .*missing\.qcow2: no such file\n$/);
    } finally {
      fs.closeSync(out);
      fs.closeSync(err);
      fs.rmSync(folder, { recursive: true, force: true });
    }
  });
});
