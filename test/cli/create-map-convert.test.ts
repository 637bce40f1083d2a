import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { printfFixed } from '../../src/cli/commands/check.ts';
import { run } from '../helpers/cli.ts';
import { qemuCheck, qemuCompare, qemuImg, qemuInfo, qemuIo, qemuMap, tempDir, type TempDir } from '../helpers/qemu.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

function expectOneLineError(result: { code: number; out: string; err: string }, code: number, pattern: RegExp): void {
  expect(result.code).toBe(code);
  expect(result.out).toBe('');
  expect(result.err).toMatch(pattern);
  expect(result.err.trimEnd().split('\n')).toHaveLength(1);
}

describe('cowbell create', () => {
  it('makes an image with the options asked for, and says so like qemu-img', async () => {
    const image = folder.file('new.qcow2');
    const result = await run('create', '-f', 'qcow2', '-o', 'cluster_size=16k,refcount_bits=64', '-o', 'extended_l2=on', image, '1.5G');
    expect(result).toEqual({
      code: 0,
      out: `Formatting '${image}', fmt=qcow2 cluster_size=16384 compat=1.1 extended_l2=on compression_type=zlib preallocation=off size=1610612736 refcount_bits=64\n`,
      err: '',
    });
    const info = await qemuInfo(image);
    expect(info['virtual-size']).toBe(1.5 * 2 ** 30);
    expect(info['cluster-size']).toBe(16384);
    expect(info['format-specific']?.data['extended-l2']).toBe(true);
    expect((await qemuCheck(image)).code).toBe(0);
  });

  it('refuses to replace an existing file unless --force', async () => {
    const image = folder.file('existing.qcow2');
    fs.writeFileSync(image, 'precious');
    expectOneLineError(await run('create', image, '1M'), 2, /already exists; pass --force/);
    expect(fs.readFileSync(image, 'utf8')).toBe('precious');
    expect((await run('create', '-q', '--force', image, '1M')).code).toBe(0);
    expect((await qemuInfo(image))['virtual-size']).toBe(2 ** 20);
  });

  it('takes the size from a backing file and records the format given with -F', async () => {
    const base = folder.file('base.raw');
    fs.writeFileSync(base, Buffer.alloc(3 * 2 ** 20, 1));
    const overlay = folder.file('overlay.qcow2');
    expect((await run('create', '-q', '-b', 'base.raw', '-F', 'raw', overlay)).code).toBe(0);
    const info = await qemuInfo(overlay);
    expect(info['virtual-size']).toBe(3 * 2 ** 20);
    expect(info['backing-filename']).toBe('base.raw');
    expect(info['backing-filename-format']).toBe('raw');
  });

  it('never guesses a backing file\'s format (as qemu-img 7.2): without -F, create -b, rebase -b and convert -B are usage errors, nothing written', async () => {
    // A raw disk whose guest wrote a qcow2 header naming a host file at its start: guessed and
    // recorded as qcow2, the clone's guest would read that host file.
    const guestDisk = folder.file('guest-made.raw');
    const secret = folder.file('host-secret');
    fs.writeFileSync(secret, 'the host file a guest must never read\n'.repeat(64));
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', secret, '-F', 'raw', folder.file('header.qcow2'), '1M']);
    const disk = Buffer.alloc(4 * 2 ** 20);
    fs.readFileSync(folder.file('header.qcow2')).copy(disk);
    fs.writeFileSync(guestDisk, disk);
    const clone = folder.file('guessed-clone.qcow2');
    expectOneLineError(await run('create', '-b', guestDisk, clone), 2, /create: give the backing file's format with -F qcow2 or -F raw \(it looks like qcow2, but a raw disk's guest can write such a header\)/);
    // An empty name (an unset shell variable) is refused as qemu-img refuses it, not answered with a request for -F.
    expectOneLineError(await run('create', '-b', '', clone, '1M'), 2, /create: expected a backing file name, got an empty string/);
    expectOneLineError(await run('create', '-o', 'backing_file=', '-F', 'raw', clone, '1M'), 2, /create: expected a backing file name, got an empty string/);
    expect(fs.existsSync(clone)).toBe(false);
    // qemu-img 7.2 refuses the same.
    expect(spawnSync('qemu-img', ['create', '-f', 'qcow2', '-b', guestDisk, folder.file('qemu-clone.qcow2')]).status).not.toBe(0);
    // With the format given, the clone reads the raw disk as it is.
    expect((await run('create', '-q', '-b', guestDisk, '-F', 'raw', clone)).code).toBe(0);
    expect((await qemuInfo(clone))['backing-filename-format']).toBe('raw');
    const overlay = folder.file('rebase-me.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', overlay, '4M']);
    const before = fs.readFileSync(overlay);
    expectOneLineError(await run('rebase', '-b', guestDisk, overlay), 2, /rebase: give the backing file's format with -F/);
    expectOneLineError(await run('rebase', '-u', '-b', guestDisk, overlay), 2, /rebase: give the backing file's format with -F/);
    expect(fs.readFileSync(overlay).equals(before)).toBe(true);
    const converted = folder.file('converted.qcow2');
    expectOneLineError(await run('convert', '-O', 'qcow2', '-B', guestDisk, guestDisk, converted), 2, /convert: give the backing file's format with -F/);
    expect(fs.existsSync(converted)).toBe(false);
    // -b "" (no backing file) needs no format.
    expect((await run('rebase', '-b', '', overlay)).code).toBe(0);
  });

  it('bad sizes and options are usage errors (exit 2); a missing backing file fails (exit 1)', async () => {
    expectOneLineError(await run('create', folder.file('a.qcow2'), '12Q'), 2, /invalid size/);
    expectOneLineError(await run('create', '-o', 'cluster_size=3000', folder.file('b.qcow2'), '1M'), 1, /power of two/);
    expectOneLineError(await run('create', '-o', 'lazy_refcounts=on', folder.file('c.qcow2'), '1M'), 2, /unsupported option/);
    expectOneLineError(await run('create', '-f', 'vmdk', folder.file('d.qcow2'), '1M'), 2, /qcow2 images only/);
    expectOneLineError(await run('create', folder.file('e.qcow2')), 2, /give a SIZE/);
    expectOneLineError(await run('create', '-b', 'missing.qcow2', '-F', 'qcow2', folder.file('f.qcow2')), 1, /does not exist/);
  });
});

describe('cowbell map', () => {
  let image = '';
  beforeAll(async () => {
    image = folder.file('mapped.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, '4M']);
    await qemuIo(image, ['write -P 1 0 128k', 'write -z 1M 64k', 'write -P 2 2M 64k']);
  });

  it('--output=json is qemu-img map --output=json plus the compressed flag', async () => {
    const result = await run('map', '--output=json', image);
    expect(result.code).toBe(0);
    const ours = (JSON.parse(result.out) as Record<string, unknown>[]).map(({ compressed, ...rest }) => {
      expect(compressed).toBe(false);
      return rest;
    });
    expect(ours).toEqual(await qemuMap(image));
    expect((await run('map', '--json', image)).out).toBe(result.out);
    expect(result.out.split('\n')[0]).toMatch(/^\[\{ "start": 0, "length": 131072, "depth": 0, "present": true, "zero": false, "data": true, "compressed": false, "offset": \d+\},$/);
  });

  it('the human layout is qemu-img map\'s', async () => {
    const result = await run('map', image);
    expect(result.code).toBe(0);
    expect(result.out).toBe(execFileSync('qemu-img', ['map', image], { encoding: 'utf8' }));
  });

  it('a missing file or a file that is not qcow2 is a one-line error, exit 1', async () => {
    expectOneLineError(await run('map', folder.file('none.qcow2')), 1, /no such file/);
    const text = folder.file('notes.txt');
    fs.writeFileSync(text, 'hello');
    expectOneLineError(await run('map', text), 1, /Not a qcow2 image/);
    expectOneLineError(await run('map', '--output=xml', image), 2, /json or human/);
  });

  it('names the file at fault: the disk itself, or the backing file below it that is not a disk image', async () => {
    const junk = folder.file('junk.qcow2');
    fs.writeFileSync(junk, 'not a disk image at all, but long enough for a header');
    expectOneLineError(await run('info', junk), 1, new RegExp(`^cowbell: ${junk}: Not a qcow2 image`));
    const overlay = folder.file('over-junk.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-u', '-b', junk, '-F', 'qcow2', overlay, '1M']);
    expectOneLineError(await run('map', overlay), 1, new RegExp(`^cowbell: ${junk}: Not a qcow2 image`));
  });
});

describe('cowbell check', () => {
  it('a wrong command line exits 1, as qemu-img check does: 2 means corruptions to a script', async () => {
    const image = folder.file('check-usage.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '1M']);
    expectOneLineError(await run('check', '-r', 'leak', image), 1, /-r takes leaks or all/);
    expectOneLineError(await run('check', '-f', 'raw', image), 1, /only qcow2/);
    expectOneLineError(await run('check', image, image), 1, /.+/);
    expectOneLineError(await run('check'), 1, /.+/);
    expect((await run('check', image)).code).toBe(0);
    // After `--`, -h is a file's name, not a request for help.
    expectOneLineError(await run('check', '--', '-h'), 1, /-h: no such file/);
    // Elsewhere a wrong command line is still 2.
    expectOneLineError(await run('map', '--output=xml', image), 2, /json or human/);
  });

  it('prints its figures as qemu-img check does, a half rounded to the even digit as C\'s printf: 2/64 is 3.12%', async () => {
    const image = folder.file('check-figures.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', image, '4M']);
    await qemuIo(image, ['write -P 5 0 128k']);
    const ours = await run('check', image);
    const theirs = await qemuImg(['check', image]);
    expect(ours.out).toContain('= 3.12% allocated');
    expect(ours.out).toBe(theirs.stdout);
    expect(printfFixed(3.125, 2)).toBe('3.12');
    expect(printfFixed(3.135, 2)).toBe((3.135).toFixed(2));
    expect(printfFixed(0.375, 2)).toBe('0.38');
    expect(printfFixed(12.5, 0)).toBe('12');
  });
});

describe('cowbell convert', () => {
  let source = '';
  beforeAll(async () => {
    source = folder.file('convert-source.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', source, '8M']);
    await qemuIo(source, ['write -P 3 0 1M', 'write -P 4 5M 512k']);
  });

  it('-O qcow2 -c -o … writes a compressed image equal to the input; -p shows progress on stderr', async () => {
    const target = folder.file('converted.qcow2');
    const result = await run('convert', '-p', '-c', '-O', 'qcow2', '-o', 'cluster_size=32k', source, target);
    expect(result.code).toBe(0);
    expect(result.out).toBe('');
    expect(result.err).toContain('(100.00/100%)\r');
    expect(result.err.endsWith('\n')).toBe(true);
    const check = await qemuCheck(target);
    expect(check.code).toBe(0);
    expect(check.report?.['compressed-clusters']).toBeGreaterThan(0);
    expect((await qemuInfo(target))['cluster-size']).toBe(32768);
    expect((await qemuCompare(target, source, { formatB: 'qcow2' })).code).toBe(0);
  });

  it('defaults to a raw output, as qemu-img does, and detects the input format', async () => {
    const target = folder.file('converted.raw');
    const result = await run('convert', source, target);
    expect(result).toEqual({ code: 0, out: '', err: '' });
    expect((await qemuCompare(source, target)).code).toBe(0);
    const back = folder.file('converted-back.qcow2');
    expect((await run('convert', '-f', 'raw', '-O', 'qcow2', target, back)).code).toBe(0);
    expect((await qemuCompare(back, source, { formatB: 'qcow2' })).code).toBe(0);
  });

  it('takes qemu-img\'s -t cache modes (unsafe: not flushed) and makes the same image', async () => {
    const target = folder.file('unsafe.qcow2');
    expect(await run('convert', '-t', 'unsafe', '-O', 'qcow2', source, target)).toEqual({ code: 0, out: '', err: '' });
    expect((await qemuCheck(target)).code).toBe(0);
    expect((await qemuCompare(target, source, { formatB: 'qcow2' })).code).toBe(0);
    const flushed = folder.file('writethrough.raw');
    expect((await run('convert', '-t', 'writethrough', source, flushed)).code).toBe(0);
    expect((await qemuCompare(source, flushed)).code).toBe(0);
  });

  it('-B keeps only what differs from the new backing file', async () => {
    const target = folder.file('on-backing.qcow2');
    expect((await run('convert', '-O', 'qcow2', '-B', 'convert-source.qcow2', '-F', 'qcow2', source, target)).code).toBe(0);
    expect((await qemuMap(target)).every((entry) => entry.depth === 1)).toBe(true);
    expect((await qemuCompare(target, source, { formatB: 'qcow2' })).code).toBe(0);
  });

  it('errors are one line with a meaningful exit code, and leave no output', async () => {
    const target = folder.file('never.qcow2');
    expectOneLineError(await run('convert', folder.file('missing.qcow2'), target), 1, /no such file/);
    expectOneLineError(await run('convert', '-f', 'qcow2', folder.file('converted.raw'), target), 1, /not a qcow2 image/);
    expectOneLineError(await run('convert', '-c', source, target), 2, /need a qcow2 output/);
    expectOneLineError(await run('convert', '-O', 'vmdk', source, target), 2, /qcow2 or raw/);
    expectOneLineError(await run('convert', source), 2, /missing argument/);
    expectOneLineError(await run('convert', '-t', 'fast', source, folder.file('never.raw')), 2, /-t must be one of writeback, unsafe/);
    expectOneLineError(await run('convert', '-O', 'raw', source, folder.file('converted.raw')), 2, /already exists; pass --force/);
    expectOneLineError(await run('convert', folder.path, target), 1, /is a folder, not a disk image/);
    // The target and its folder are named, not the hidden temporary file.
    const missingFolder = folder.file('no-such-folder');
    const inMissing = await run('convert', source, `${missingFolder}/out.raw`);
    expectOneLineError(inMissing, 1, new RegExp(`out\\.raw: the folder ${missingFolder} does not exist`));
    expect(inMissing.err).not.toMatch(/cowbell-[0-9a-f]{12}\.tmp/);
    expect(fs.existsSync(target)).toBe(false);
  });
});

/**
 * Runs `cowbell convert -p ARGS…` in a process of its own and sends it SIGINT (Ctrl-C) at the first
 * progress line at or past `percent`; resolves with its exit code, stderr and where it was stopped.
 */
async function convertInterrupted(args: string[], percent: number): Promise<{ code: number | null; err: string; interruptedAt: number | null }> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url)), 'convert', '-p', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  let interruptedAt: number | null = null;
  child.stderr.on('data', (chunk: Buffer) => {
    err += chunk.toString();
    const latest = [...err.matchAll(/\((\d+\.\d+)\/100%\)/g)].map((match) => Number(match[1])).at(-1) ?? 0;
    if (interruptedAt === null && latest >= percent) {
      interruptedAt = latest;
      child.kill('SIGINT');
    }
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  return { code, err, interruptedAt };
}

describe('cowbell convert of a disk with snapshots and persistent dirty bitmaps', () => {
  it('keeps the snapshots and leaves the bitmaps behind, as qemu-img convert leaves them (they stay on the source)', async () => {
    const source = folder.file('bitmaps.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', source, '4M']);
    await qemuIo(source, ['write -P 0x21 0 256k']);
    await qemuImg(['snapshot', '-c', 'first', source]);
    await qemuImg(['bitmap', '--add', source, 'backup']);
    const copy = folder.file('bitmaps-copy.qcow2');
    const result = await run('convert', '-O', 'qcow2', source, copy);
    // Only the note that the snapshot came along: nothing about the bitmaps.
    expect(result.err).toMatch(/^cowbell: note: \S+ keeps the 1 internal snapshot of \S+ \(qemu-img convert drops them; --no-snapshots leaves them behind\)\n$/);
    expect(result.code).toBe(0);
    expect((await qemuInfo(copy)).snapshots?.map((snapshot) => snapshot.name)).toEqual(['first']);
    expect(((await qemuInfo(copy))['format-specific']?.data as Record<string, unknown>).bitmaps).toBeUndefined();
    expect(((await qemuInfo(source))['format-specific']?.data as Record<string, unknown>).bitmaps).toEqual([expect.objectContaining({ name: 'backup' })]);
    expect((await qemuCheck(copy)).code).toBe(0);
    expect((await qemuCompare(source, copy, { formatB: 'qcow2' })).code).toBe(0);
  });
});

describe('cowbell convert, interrupted', () => {
  it('Ctrl-C (SIGINT) cancels: exit 130 (as a shell reports for a command Ctrl-C ended), one line, neither the output nor a temporary file', async () => {
    const work = tempDir();
    try {
      const source = work.file('random.raw');
      fs.writeFileSync(source, randomFillSync(Buffer.alloc(64 * 2 ** 20)));
      // Interrupted once the copy is under way (its first progress line).
      const { code, err } = await convertInterrupted(['-c', '-O', 'qcow2', source, work.file('out.qcow2')], 0);
      expect(code).toBe(130);
      expect(err).toMatch(/cowbell: Cancelled; no output was written\n$/);
      expect(fs.readdirSync(work.path)).toEqual(['random.raw']);
    } finally {
      work.cleanup();
    }
  });
});

describe('cowbell convert, interrupted while the write-behind thread writes', () => {
  it('Ctrl-C during a plain import stops it the same way: exit 130, no output, no temporary file', async () => {
    const work = tempDir();
    try {
      // 768 MiB of data, every byte of it read and written (holes would be skipped): a window of a good part of a second.
      const source = work.file('data.raw');
      const piece = Buffer.alloc(16 * 2 ** 20, 0x5a);
      const fd = fs.openSync(source, 'w');
      for (let offset = 0; offset < 768 * 2 ** 20; offset += piece.length) fs.writeSync(fd, piece, 0, piece.length, offset);
      fs.closeSync(fd);
      // Interrupted once some data has gone to the output.
      const { code, err, interruptedAt } = await convertInterrupted(['-O', 'qcow2', source, work.file('out.qcow2')], 1);
      expect(interruptedAt).not.toBeNull();
      expect(interruptedAt).toBeLessThan(50);
      expect(code).toBe(130);
      expect(err).toMatch(/cowbell: Cancelled; no output was written\n$/);
      expect(fs.readdirSync(work.path)).toEqual(['data.raw']);
    } finally {
      work.cleanup();
    }
  }, 60_000);
});

describe('cowbell convert, short runs', () => {
  it('exits at once and cleanly, run after run', async () => {
    const work = tempDir();
    try {
      const source = work.file('small.qcow2');
      await qemuImg(['create', '-f', 'qcow2', source, '1M']);
      await qemuIo(source, ['write -P 0x11 0 64k']);
      const cli = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
      for (let run = 0; run < 12; run++) {
        // Flushed and not, raw and qcow2.
        const args = run % 2 === 0 ? ['convert', source, work.file(`out-${run}.raw`)] : ['convert', '-t', 'unsafe', '-O', 'qcow2', source, work.file(`out-${run}.qcow2`)];
        const result = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
        expect({ run, status: result.status, stderr: result.stderr }).toEqual({ run, status: 0, stderr: '' });
      }
      expect((await qemuCompare(source, work.file('out-0.raw'))).code).toBe(0);
      expect((await qemuCompare(work.file('out-1.qcow2'), source, { formatB: 'qcow2' })).code).toBe(0);
    } finally {
      work.cleanup();
    }
    // Twelve processes: a few seconds on an idle machine, more on a busy one (no timing is asserted).
  }, 60_000);
});
