/**
 * What a script written for qemu-img passes or expects (from the CLI audit): `-f qcow2` on the
 * reading commands, `-q` on check and snapshot, and a note where `convert` does what qemu-img's does
 * not (it keeps the internal snapshots). Each against a disk qemu-img makes.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../helpers/cli.ts';
import { qemuCheck, qemuImg, qemuInfo, qemuIo, tempDir, type TempDir } from '../helpers/qemu.ts';

let folder: TempDir;
let disk: string;

beforeAll(async () => {
  folder = tempDir();
  disk = folder.file('scripted.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', disk, '16M']);
  await qemuImg(['snapshot', '-c', 'first', disk]);
});
afterAll(() => folder.cleanup());

describe('a qemu-img script', () => {
  it('may pass -f qcow2 to info, snapshot and usage; another format is a usage error (exit 2)', async () => {
    for (const argv of [['info', '-f', 'qcow2', disk], ['snapshot', 'list', '-f', 'qcow2', disk], ['usage', '-f', 'qcow2', disk]]) {
      const result = await run(...argv);
      expect(result.code, argv.join(' ')).toBe(0);
      expect(result.out).not.toBe('');
    }
    for (const command of ['info', 'usage']) {
      const refused = await run(command, '-f', 'raw', disk);
      expect(refused.code).toBe(2);
      expect(refused.err).toMatch(new RegExp(`${command}: Cowbell reads qcow2 images here, not raw`));
    }
  });

  it('check -q prints nothing and says what it found by its exit code alone, as qemu-img check -q', async () => {
    expect(await run('check', '-q', disk)).toEqual({ code: 0, out: '', err: '' });
    // Leaks: the L1 entry of data qemu-io wrote is cleared, so its L2 table and cluster keep refcounts nothing names.
    const leaky = folder.file('leaky.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', leaky, '16M']);
    await qemuIo(leaky, ['write -P 7 0 64k']);
    const header = fs.readFileSync(leaky).subarray(0, 72);
    const l1Offset = Number(header.readBigUInt64BE(40));
    const descriptor = fs.openSync(leaky, 'r+');
    fs.writeSync(descriptor, Buffer.alloc(8), 0, 8, l1Offset);
    fs.closeSync(descriptor);
    expect((await qemuCheck(leaky)).code).toBe(3);
    expect(await run('check', '-q', leaky)).toEqual({ code: 3, out: '', err: '' });
  });

  it('check of a disk whose backing file is missing exits 1, as qemu-img check (which cannot open it); the disk’s own tables are still checked', async () => {
    const orphan = folder.file('orphan.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-u', '-b', 'gone.qcow2', '-F', 'qcow2', orphan, '16M']);
    expect((await qemuImg(['check', orphan], { okCodes: [0, 1, 2, 3] })).code).toBe(1);
    const result = await run('check', orphan);
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/ERROR the disk cannot be read as a whole: The backing file gone\.qcow2 does not exist/);
    const json = await run('check', '--json', orphan);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.out)).toMatchObject({ 'check-errors': 1 });
    // With the backing file there, the same disk is clean.
    await qemuImg(['create', '-q', '-f', 'qcow2', folder.file('gone.qcow2'), '16M']);
    expect((await run('check', orphan)).code).toBe(0);
    // A chain that loops back to the disk cannot be opened either (qemu-img check does not return there).
    await qemuImg(['rebase', '-u', '-b', 'orphan.qcow2', '-F', 'qcow2', folder.file('gone.qcow2')]);
    const looping = await run('check', orphan);
    expect(looping.code).toBe(1);
    expect(looping.err).toMatch(/The backing chain loops/);
  });

  it('info --backing-chain lists the disk and every file below it as qemu-img does (a raw bottom included); a missing file fails it', async () => {
    const base = folder.file('chain-base.raw');
    const mid = folder.file('chain-mid.qcow2');
    const top = folder.file('chain-top.qcow2');
    await qemuImg(['create', '-q', '-f', 'raw', base, '8M']);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'chain-base.raw', '-F', 'raw', mid]);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'chain-mid.qcow2', '-F', 'qcow2', top]);
    await qemuImg(['snapshot', '-c', 'on top', top]);
    const ours = await run('info', '--backing-chain', '--json', top);
    expect(ours.code).toBe(0);
    const theirs = JSON.parse((await qemuImg(['info', '--backing-chain', '--output=json', top])).stdout) as Record<string, unknown>[];
    const fields = ['filename', 'format', 'virtual-size', 'backing-filename', 'backing-filename-format', 'dirty-flag'];
    const pick = (list: Record<string, unknown>[]) => list.map((entry) => Object.fromEntries(fields.filter((field) => field in entry).map((field) => [field, entry[field]])));
    expect(pick(JSON.parse(ours.out) as Record<string, unknown>[])).toEqual(pick(theirs));
    const human = await run('info', '--backing-chain', top);
    const imageLines = (text: string) => text.split('\n').filter((line) => /^(image|file format|virtual size|backing file):/.test(line));
    expect(imageLines(human.out)).toEqual(imageLines((await qemuImg(['info', '--backing-chain', top])).stdout));
    fs.rmSync(base);
    const broken = await run('info', '--backing-chain', top);
    expect(broken.code).toBe(1);
    expect(broken.err).toMatch(/chain-base\.raw does not exist/);
  });

  it('create -u records a backing file that is not there yet (the size given), as qemu-img create -u; without -u, or without a size, it is refused', async () => {
    const overlay = folder.file('early-overlay.qcow2');
    expect((await run('create', '-b', 'later-base.qcow2', '-F', 'qcow2', overlay, '16M')).code).toBe(1);
    expect(fs.existsSync(overlay)).toBe(false);
    const sizeless = await run('create', '-u', '-b', 'later-base.qcow2', '-F', 'qcow2', overlay);
    expect(sizeless.code).toBe(1);
    expect(sizeless.err).toMatch(/does not exist \(without it, give the size\)/);
    expect((await run('create', '-q', '-u', '-b', 'later-base.qcow2', '-F', 'qcow2', overlay, '16M')).code).toBe(0);
    const info = await qemuInfo(overlay);
    expect([info['backing-filename'], info['backing-filename-format'], info['virtual-size']]).toEqual(['later-base.qcow2', 'qcow2', 16 * 2 ** 20]);
    await qemuImg(['create', '-q', '-f', 'qcow2', folder.file('later-base.qcow2'), '16M']);
    expect((await qemuCheck(overlay)).code).toBe(0);
  });

  it('map --start-offset / --max-length (-s / -l) report the same ranges as qemu-img map, cut at both ends', async () => {
    const mapped = folder.file('mapped.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', mapped, '64M']);
    await qemuIo(mapped, ['write -P 1 1M 3M', 'write -z 10M 1M', 'write -P 2 20M 64k']);
    // Cowbell's JSON adds "compressed"; the rest is qemu-img's, key for key.
    const withoutCompressed = (text: string) => (JSON.parse(text) as Record<string, unknown>[]).map(({ compressed: _compressed, ...entry }) => entry);
    for (const range of [['--start-offset', '2M', '--max-length', '9M'], ['-s', '1536k', '-l', '100k'], ['--start-offset', '30M'], ['--max-length', '1M']]) {
      const ours = await run('map', '--output=json', ...range, mapped);
      expect(ours.code).toBe(0);
      expect(withoutCompressed(ours.out), range.join(' ')).toEqual(withoutCompressed((await qemuImg(['map', '--output=json', ...range, mapped])).stdout));
      expect((await run('map', ...range, mapped)).out).toBe((await qemuImg(['map', ...range, mapped])).stdout);
    }
  });

  it('convert takes qemu-img\'s -W and -m N (changing nothing) and --salvage (its name for --rescue); -m out of 1–16 is a usage error', async () => {
    const copy = folder.file('scripted-copy.qcow2');
    expect((await run('convert', '-W', '-m', '8', '-c', '--no-snapshots', '-O', 'qcow2', disk, copy)).code).toBe(0);
    expect((await qemuImg(['compare', disk, copy])).code).toBe(0);
    const salvaged = await run('convert', '--salvage', '--json', '-O', 'raw', disk, folder.file('salvaged.raw'));
    expect(salvaged.code).toBe(0);
    expect(JSON.parse(salvaged.out)).toMatchObject({ 'unreadable-bytes': 0 });
    const typo = await run('convert', '-m', '17', '-O', 'raw', disk, folder.file('never.raw'));
    expect(typo.code).toBe(2);
    expect(fs.existsSync(folder.file('never.raw'))).toBe(false);
  });

  it('snapshot create -q says nothing; without it, one line', async () => {
    expect(await run('snapshot', 'create', '-q', disk, 'quiet one')).toEqual({ code: 0, out: '', err: '' });
    expect((await run('snapshot', 'create', disk, 'loud one')).out).toMatch(/^Created snapshot "loud one" \(id \d+\)\n$/);
    expect((await qemuInfo(disk)).snapshots?.map((snapshot) => snapshot.name)).toEqual(['first', 'quiet one', 'loud one']);
  });

  it('convert -O qcow2 says on stderr that it kept the internal snapshots (qemu-img drops them); -q and --no-snapshots say nothing', async () => {
    const kept = folder.file('kept.qcow2');
    const result = await run('convert', '-O', 'qcow2', disk, kept);
    expect(result.code).toBe(0);
    expect(result.out).toBe('');
    expect(result.err).toMatch(/kept\.qcow2 keeps the 3 internal snapshots of .*scripted\.qcow2 \(qemu-img convert drops them; --no-snapshots leaves them behind\)/);
    expect((await qemuInfo(kept)).snapshots).toHaveLength(3);
    expect(await run('convert', '-q', '-O', 'qcow2', disk, folder.file('quiet.qcow2'))).toEqual({ code: 0, out: '', err: '' });
    expect(await run('convert', '--no-snapshots', '-O', 'qcow2', disk, folder.file('bare.qcow2'))).toEqual({ code: 0, out: '', err: '' });
  });

  it('create and resize read a size as qemu-img does: hexadecimal (0x100000, 0x10M) and a leading + too', async () => {
    for (const size of ['0x100000', '0X10m', '+3M', '0x10.5M']) {
      const ours = folder.file(`size-cowbell-${size}.qcow2`);
      const theirs = folder.file(`size-qemu-${size}.qcow2`);
      const made = await run('create', '-q', '-f', 'qcow2', ours, size);
      const qemu = await qemuImg(['create', '-q', '-f', 'qcow2', theirs, size]).then(() => true, () => false);
      expect(made.code === 0, `${size}: ${made.err}`).toBe(qemu);
      if (qemu) expect((await qemuInfo(ours))['virtual-size'], size).toBe((await qemuInfo(theirs))['virtual-size']);
    }
    const grown = folder.file('size-cowbell-0x100000.qcow2');
    expect((await run('resize', '-q', grown, '+0x100000')).code).toBe(0);
    expect((await qemuInfo(grown))['virtual-size']).toBe(0x200000);
    expect((await qemuCheck(grown)).code).toBe(0);
  });

  it('create without -f refuses a name a raw disk has (qemu-img makes raw there); -f qcow2 makes it, and a .qcow2 name needs no -f', async () => {
    for (const name of ['disk.img', 'DISK.RAW', 'sdb.bin']) {
      const target = folder.file(name);
      const refused = await run('create', target, '16M');
      expect(refused.code, name).toBe(2);
      expect(refused.err).toMatch(/named like a raw disk, which qemu-img create makes without -f; .*pass -f qcow2/);
      expect(fs.existsSync(target)).toBe(false);
      expect((await run('create', '-q', '-f', 'qcow2', target, '16M')).code).toBe(0);
      expect((await qemuInfo(target)).format).toBe('qcow2');
    }
    expect((await run('create', '-q', folder.file('plain.qcow2'), '16M')).code).toBe(0);
    // The size given twice, as -o size= and SIZE: refused, as qemu-img refuses it.
    const twice = await run('create', '-o', 'size=32M', folder.file('twice.qcow2'), '64M');
    expect(twice.code).toBe(2);
    expect(twice.err).toMatch(/give the size once/);
    await expect(qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'size=32M', folder.file('twice-qemu.qcow2'), '64M'])).rejects.toThrow(/only once/);
  });

  it('snapshot takes qemu-img\'s -l, -c, -a and -d forms: the same table as qemu-img snapshot -l, silent changes, the same exit codes', async () => {
    const image = folder.file('qemu-forms.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '16M']);
    expect(await run('snapshot', '-l', image)).toEqual({ code: 0, out: '', err: '' });
    await qemuIo(image, ['write -P 1 0 64k']);
    expect(await run('snapshot', '-c', 'first', image)).toEqual({ code: 0, out: '', err: '' });
    await qemuIo(image, ['write -P 2 0 64k']);
    expect(await run('snapshot', '-c', 'second', image)).toEqual({ code: 0, out: '', err: '' });
    const listed = await run('snapshot', '-l', image);
    expect(listed.code).toBe(0);
    expect(listed.out).toBe((await qemuImg(['snapshot', '-l', image])).stdout);
    expect(listed.out).toMatch(/^Snapshot list:\nID +TAG/);
    expect(await run('snapshot', '-a', 'first', image)).toEqual({ code: 0, out: '', err: '' });
    // Reverted: the first snapshot's bytes are back.
    expect(await qemuIo(image, ['read -P 1 0 64k'])).toMatch(/read 65536\/65536 bytes/);
    expect(await run('snapshot', '-d', 'second', image)).toEqual({ code: 0, out: '', err: '' });
    expect((await qemuInfo(image)).snapshots?.map((snapshot) => snapshot.name)).toEqual(['first']);
    expect((await run('snapshot', '-d', 'nope', image)).code).toBe(1);
    expect((await run('snapshot', '-l')).code).toBe(2);
    expect((await run('snapshot', '-c', 'a', '-d', 'first', image)).code).toBe(2);
    expect((await run('snapshot', '-c', 'a', image, 'extra')).code).toBe(2);
    expect((await qemuCheck(image)).code).toBe(0);
  });

  it('commit -p counts to 100% once, as qemu-img commit -p (the emptied overlay\'s compaction draws no second count)', async () => {
    const base = folder.file('progress-base.qcow2');
    const top = folder.file('progress-top.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', base, '64M']);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top]);
    await qemuIo(top, ['write -P 3 0 16M']);
    const result = await run('commit', '-p', top);
    expect(result.code).toBe(0);
    const percents = [...result.err.matchAll(/\((\d+\.\d+)\/100%\)/g)].map((match) => Number(match[1]));
    expect(percents.length).toBeGreaterThan(1);
    expect(percents.every((value, index) => index === 0 || value >= percents[index - 1]!)).toBe(true);
    expect(fs.statSync(top).size).toBeLessThan(1024 * 1024);
  });

  it('commit -t, rebase -t/-T and convert -T take qemu-img\'s cache modes (an in-place change is flushed whatever they say); a wrong mode is a usage error', async () => {
    const base = folder.file('cache-base.qcow2');
    const top = folder.file('cache-top.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', base, '16M']);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top]);
    await qemuIo(top, ['write -P 9 0 64k']);
    expect((await run('rebase', '-q', '-t', 'none', '-T', 'writeback', '-b', base, '-F', 'qcow2', top)).code).toBe(0);
    expect((await run('commit', '-q', '-t', 'unsafe', top)).code).toBe(0);
    expect(await qemuIo(base, ['read -P 9 0 64k'])).toMatch(/read 65536\/65536 bytes/);
    expect((await run('convert', '-T', 'none', '-O', 'raw', base, folder.file('cache-out.raw'))).code).toBe(0);
    for (const argv of [['commit', '-t', 'fast', top], ['rebase', '-T', 'fast', '-b', base, '-F', 'qcow2', top], ['convert', '-T', 'fast', '-O', 'raw', base, folder.file('cache-bad.raw')]]) {
      const refused = await run(...argv);
      expect(refused.code, argv.join(' ')).toBe(2);
      expect(refused.err).toMatch(/must be one of writeback, unsafe, none, writethrough, directsync, not fast/);
    }
    expect((await qemuCheck(base)).code).toBe(0);
  });
});
