/**
 * `cowbell compress`, `cowbell compact` and `cowbell convert -O qcow2` keeping snapshots, from the
 * command line: exit codes, what is printed (one line, or --json), what lands on disk (qemu-img
 * check clean, the same snapshots, the same data in every state), usage errors, and Ctrl-C on a
 * real `bin/cowbell` process leaving the disk as it was.
 */
import { spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, type CliRun } from '../helpers/cli.ts';
import { fileHash, holdWithQemuIo } from '../helpers/image-locks.ts';
import { firstDifference, qemuCheck, qemuImg, qemuInfo, qemuIo, rawOf, tempDir, type TempDir } from '../helpers/qemu.ts';
import { compressibleBytes } from '../helpers/seeded-random.ts';
import { expectCheckClean } from '../helpers/snapshot-scenario.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

let folder: TempDir;
let caseCount = 0;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

function expectOneLineError(result: CliRun, code: number, pattern: RegExp): void {
  expect(result.code, result.err).toBe(code);
  expect(result.out).toBe('');
  expect(result.err).toMatch(pattern);
  expect(result.err.trimEnd().split('\n')).toHaveLength(1);
}

/** A folder of its own with a disk: compressible data, two snapshots, a zeroed range, a current state of its own. */
async function diskWithSnapshots(options = 'cluster_size=65536'): Promise<{ dir: string; image: string }> {
  const dir = folder.file(`case-${++caseCount}`);
  fs.mkdirSync(dir);
  const image = path.join(dir, 'disk.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', options, image, '4M']);
  await qemuIo(image, ['write -P 0x11 0 1M', 'write -P 0x12 2M 256k']);
  await qemuImg(['snapshot', '-c', 'installed', image]);
  await qemuIo(image, ['write -P 0x13 256k 512k', 'write -z 2M 128k']);
  await qemuImg(['snapshot', '-c', 'configured', image]);
  await qemuIo(image, ['write -P 0x14 3M 256k']);
  return { dir, image };
}

/** A disk of compressed clusters (qemu-img convert -c) with a snapshot over it. */
async function compressedDisk(): Promise<{ dir: string; image: string }> {
  const dir = folder.file(`case-${++caseCount}`);
  fs.mkdirSync(dir);
  const raw = path.join(dir, 'text.raw');
  fs.writeFileSync(raw, compressibleBytes(4 * MiB, 3));
  const image = path.join(dir, 'disk.qcow2');
  await qemuImg(['convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', raw, image]);
  fs.rmSync(raw);
  await qemuImg(['snapshot', '-c', 'text', image]);
  await qemuIo(image, ['write -P 0x21 1M 512k']);
  return { dir, image };
}

async function statesOf(image: string): Promise<Map<string, Uint8Array>> {
  const states = new Map<string, Uint8Array>([['(current)', await rawOf(image)]]);
  for (const snapshot of (await qemuInfo(image)).snapshots ?? []) states.set(snapshot.name, await rawOf(image, { snapshot: snapshot.name }));
  return states;
}

async function expectSameDisk(actual: string, expected: Map<string, Uint8Array>, label: string): Promise<void> {
  await expectCheckClean(expect, actual, label);
  const states = await statesOf(actual);
  expect([...states.keys()], `${label}: the states`).toEqual([...expected.keys()]);
  for (const [name, bytes] of expected) expect(firstDifference(states.get(name) ?? new Uint8Array(0), bytes), `${label}: first wrong byte of ${name}`).toBe(-1);
}

async function compressedClusters(image: string): Promise<number> {
  return (await qemuCheck(image)).report?.['compressed-clusters'] ?? 0;
}

const SUMMARY = /^(?<where>.+?): (?<before>[\d.]+ [KMG]?i?B) → (?<after>[\d.]+ [KMG]?i?B) \((?<change>(?:(?:< |> )?[\d.]+% (?:smaller|larger)|the same size))\), (?<kept>\d+ snapshots? kept)(?<verified>, every state verified)?\n$/;

describe('cowbell compress', { timeout: 60_000 }, () => {
  it('in place: exit 0, one summary line, the disk compressed, both snapshots and every state kept', async () => {
    const { image } = await diskWithSnapshots();
    const states = await statesOf(image);
    const before = fs.statSync(image).size;
    const result = await run('compress', image);
    expect(result.err).toBe('');
    expect(result.code).toBe(0);
    expect(result.out).toMatch(SUMMARY);
    expect(result.out).toMatch(new RegExp(`^${image.replaceAll('.', '\\.')}: .*smaller\\), 2 snapshots kept, every state verified\\n$`));
    expect(fs.statSync(image).size).toBeLessThan(before / 2);
    expect(await compressedClusters(image)).toBeGreaterThan(0);
    await expectSameDisk(image, states, 'compressed in place');
    expect((await qemuInfo(image)).snapshots?.map((snapshot) => snapshot.name)).toEqual(['installed', 'configured']);
  });

  it('into OUTPUT: the original byte for byte, the summary says so; --json gives every field, and afterBytes is the file', async () => {
    const { dir, image } = await diskWithSnapshots();
    const hash = fileHash(image);
    const states = await statesOf(image);
    const output = path.join(dir, 'small.qcow2');
    const result = await run('compress', image, output);
    expect(result.code).toBe(0);
    expect(result.out).toMatch(SUMMARY);
    expect(result.out).toContain(`${output} (the original is unchanged)`);
    expect(fileHash(image)).toBe(hash);
    await expectSameDisk(output, states, 'compressed into OUTPUT');

    const json = path.join(dir, 'json.qcow2');
    const reported = await run('compress', '--json', image, json);
    expect(reported.code).toBe(0);
    expect(reported.err).toBe('');
    const fields = JSON.parse(reported.out) as Record<string, unknown>;
    expect(Object.keys(fields).sort()).toEqual(['afterBytes', 'beforeBytes', 'compressedClusters', 'compressionThreads', 'encryption', 'inPlace', 'snapshots', 'storedClusters', 'storedUncompressed', 'target', 'upgradedToVersion3', 'verified', 'zeroClusters']);
    expect(fields).toMatchObject({ target: json, inPlace: false, beforeBytes: fs.statSync(image).size, afterBytes: fs.statSync(json).size, snapshots: 2, storedClusters: 0, verified: true, encryption: 'none', upgradedToVersion3: false });
    expect(fields.compressedClusters).toBeGreaterThan(0);
    expect(fs.readdirSync(dir).sort()).toEqual(['disk.qcow2', 'json.qcow2', 'small.qcow2']);
  });

  it('-o compression_type=zstd: the copy is zstd-compressed; on a v2 disk it is refused in one line with nothing written', async () => {
    const { dir, image } = await diskWithSnapshots();
    const states = await statesOf(image);
    const output = path.join(dir, 'zstd.qcow2');
    const result = await run('compress', '-q', '-o', 'compression_type=zstd', image, output);
    expect(result).toEqual({ code: 0, out: '', err: '' });
    expect((await qemuInfo(output))['format-specific']?.data['compression-type']).toBe('zstd');
    expect(await compressedClusters(output)).toBeGreaterThan(0);
    await expectSameDisk(output, states, 'zstd');

    const old = await diskWithSnapshots('compat=0.10');
    const hash = fileHash(old.image);
    expectOneLineError(await run('compress', '-o', 'compression_type=zstd', old.image), 1, /zstd compression needs a compat 1\.1 \(version 3\) image; add -o compat=1\.1 to upgrade the disk as well/);
    expect(fileHash(old.image)).toBe(hash);
    expect(fs.readdirSync(old.dir)).toEqual(['disk.qcow2']);
  });

  it('-o compat=1.1 upgrades a v2 disk on the way, keeping every snapshot, and says so: compact in place, compress with zstd, convert; the way back is refused', async () => {
    const { dir, image } = await diskWithSnapshots('compat=0.10');
    const states = await statesOf(image);
    const compacted = await run('compact', '-o', 'compat=1.1', image);
    expect(compacted.code, compacted.err).toBe(0);
    expect(compacted.out).toMatch(/^.+disk\.qcow2: .+, 2 snapshots kept, every state verified, upgraded to compat 1\.1 \(qcow2 version 3\)\n$/);
    expect((await qemuInfo(image))['format-specific']?.data.compat).toBe('1.1');
    await expectSameDisk(image, states, 'compact -o compat=1.1');
    // Already version 3: nothing more to upgrade, and nothing said.
    expect((await run('compact', '-o', 'compat=1.1', image)).out).not.toMatch(/upgraded/);

    const old = await diskWithSnapshots('compat=0.10');
    const oldStates = await statesOf(old.image);
    const zstd = path.join(old.dir, 'zstd.qcow2');
    expect(await run('compress', '-q', '-o', 'compression_type=zstd,compat=1.1', old.image, zstd)).toEqual({ code: 0, out: '', err: '' });
    expect((await qemuInfo(zstd))['format-specific']?.data).toMatchObject({ compat: '1.1', 'compression-type': 'zstd' });
    expect(await compressedClusters(zstd)).toBeGreaterThan(0);
    await expectSameDisk(zstd, oldStates, 'compress -o compression_type=zstd,compat=1.1');

    const converted = path.join(old.dir, 'converted.qcow2');
    const conversion = await run('convert', '-O', 'qcow2', '-o', 'compat=1.1', old.image, converted);
    expect(conversion.code, conversion.err).toBe(0);
    expect((await qemuInfo(converted))['format-specific']?.data.compat).toBe('1.1');
    await expectSameDisk(converted, oldStates, 'convert -o compat=1.1');

    const hash = fileHash(converted);
    expectOneLineError(await run('convert', '-O', 'qcow2', '-o', 'compat=0.10', converted, path.join(dir, 'back.qcow2')), 2, /compat cannot go back to 0\.10 while keeping the 2 internal snapshots/);
    expectOneLineError(await run('compact', '-o', 'compat=0.10', converted), 1, /cannot be rewritten as compat 0\.10 \(version 2\)/);
    expect(fileHash(converted)).toBe(hash);
    expect(fs.readdirSync(dir)).toEqual(['disk.qcow2']);
  });

  it('--no-verify: still checked and clean, reported as not verified', async () => {
    const { dir, image } = await diskWithSnapshots();
    const states = await statesOf(image);
    const output = path.join(dir, 'unverified.qcow2');
    const plain = await run('compress', '--no-verify', image, output);
    expect(plain.code).toBe(0);
    expect(plain.out).toMatch(SUMMARY);
    expect(plain.out.match(SUMMARY)?.groups?.verified).toBeUndefined();
    await expectSameDisk(output, states, '--no-verify');
    const json = await run('compress', '--no-verify', '--json', image, path.join(dir, 'unverified-json.qcow2'));
    expect(JSON.parse(json.out)).toMatchObject({ verified: false });
  });

  it('-p: the progress line only ever moves forward, and ends at 100%', async () => {
    const { image } = await diskWithSnapshots();
    const result = await run('compress', '-p', image);
    expect(result.code).toBe(0);
    const percents = [...result.err.matchAll(/\((\d+\.\d+)\/100%\)/g)].map((match) => Number(match[1]));
    expect(percents.length).toBeGreaterThan(3);
    const backwards = percents.findIndex((value, index) => index > 0 && value < (percents[index - 1] ?? 0));
    expect(backwards, `the progress went from ${percents[backwards - 1]}% back to ${percents[backwards]}% (${percents.join(' ')})`).toBe(-1);
    expect(percents.at(-1)).toBe(100);
  });

  it('usage errors exit 2 in one line and touch nothing: bad -o, unknown options, too many or too few arguments', async () => {
    const { dir, image } = await diskWithSnapshots();
    const hash = fileHash(image);
    expectOneLineError(await run('compress', '-o', 'cluster_size=4096', image), 2, /-o takes only compression_type and compat, not cluster_size/);
    expectOneLineError(await run('compress', '-o', 'compression_type=lz4', image), 2, /compression_type must be one of zlib, zstd, not 'lz4'/);
    expectOneLineError(await run('compress', '-o', 'compression_type', image), 2, /compression_type/);
    expectOneLineError(await run('compress', image, path.join(dir, 'a.qcow2'), path.join(dir, 'b.qcow2')), 2, /too many arguments/);
    expectOneLineError(await run('compact', image, path.join(dir, 'a.qcow2'), path.join(dir, 'b.qcow2')), 2, /too many arguments/);
    expectOneLineError(await run('compress'), 2, /missing argument/);
    expectOneLineError(await run('compact', '--uncompres', image), 2, /uncompres/);
    expectOneLineError(await run('compact', '-o', 'compression_type=zstd', image), 2, /-o takes only compat, not compression_type/);
    expectOneLineError(await run('compact', '-o', 'compat=2', image), 2, /compat must be 0\.10 or 1\.1, not '2'/);
    expect(fileHash(image)).toBe(hash);
    expect(fs.readdirSync(dir)).toEqual(['disk.qcow2']);
  });

  it('an existing OUTPUT is refused as convert refuses it (exit 2, pass --force), untouched; --force replaces it', async () => {
    const { dir, image } = await diskWithSnapshots();
    const output = path.join(dir, 'taken.qcow2');
    fs.writeFileSync(output, 'precious');
    expectOneLineError(await run('compress', image, output), 2, /already exists; pass --force to replace it/);
    expect(fs.readFileSync(output, 'utf8')).toBe('precious');
    expect((await run('compress', '-q', '--force', image, output)).code).toBe(0);
    await expectCheckClean(expect, output, 'replaced with --force');
  });

  it('an OUTPUT in a folder that does not exist: exit 1, one line naming OUTPUT and the missing folder, as convert says it', async () => {
    const { dir, image } = await diskWithSnapshots();
    const missing = path.join(dir, 'no-such-folder');
    const result = await run('compress', image, path.join(missing, 'out.qcow2'));
    expectOneLineError(result, 1, new RegExp(`out\\.qcow2: the folder ${missing} does not exist`));
    expect(fs.readdirSync(dir)).toEqual(['disk.qcow2']);
  });

  it('a disk qemu-io is writing is refused in one line, exit 1, untouched, with no advice to force it', async () => {
    const { dir, image } = await diskWithSnapshots();
    const hash = fileHash(image);
    const holder = await holdWithQemuIo(image);
    try {
      for (const command of ['compress', 'compact']) {
        const result = await run(command, image);
        expectOneLineError(result, 1, /in use by another program/);
        expect(result.err).not.toMatch(/-U/);
      }
    } finally {
      await holder.release();
    }
    expect(fileHash(image)).toBe(hash);
    expect(fs.readdirSync(dir)).toEqual(['disk.qcow2']);
  });
});

describe('cowbell compact', { timeout: 60_000 }, () => {
  it('keeps compressed clusters compressed; --uncompress stores them; both keep the snapshot and every state', async () => {
    const { dir, image } = await compressedDisk();
    const states = await statesOf(image);
    const compressedBefore = await compressedClusters(image);
    expect(compressedBefore).toBeGreaterThan(0);
    const kept = path.join(dir, 'kept.qcow2');
    const keep = await run('compact', '--json', image, kept);
    expect(keep.code).toBe(0);
    expect(JSON.parse(keep.out)).toMatchObject({ snapshots: 1, inPlace: false, verified: true });
    expect(await compressedClusters(kept)).toBe(compressedBefore);
    await expectSameDisk(kept, states, 'compact');

    const stored = path.join(dir, 'stored.qcow2');
    const uncompress = await run('compact', '--uncompress', '--json', image, stored);
    expect(uncompress.code).toBe(0);
    expect(JSON.parse(uncompress.out)).toMatchObject({ compressedClusters: 0 });
    expect(await compressedClusters(stored)).toBe(0);
    await expectSameDisk(stored, states, 'compact --uncompress');
  });

  it('does not grow a disk qemu-img compressed: its compressed clusters stay compressed and as tightly packed', async () => {
    for (const clusterBytes of [512, 4096, 65536]) {
      const dir = folder.file(`case-${++caseCount}`);
      fs.mkdirSync(dir);
      const raw = path.join(dir, 'text.raw');
      fs.writeFileSync(raw, compressibleBytes(2 * MiB, 7));
      const image = path.join(dir, 'disk.qcow2');
      await qemuImg(['convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', '-o', `cluster_size=${clusterBytes}`, raw, image]);
      fs.rmSync(raw);
      const states = await statesOf(image);
      const compressedBefore = await compressedClusters(image);
      const output = path.join(dir, 'compacted.qcow2');
      const result = await run('compact', '--json', image, output);
      expect(result.code).toBe(0);
      const label = `${clusterBytes}-byte clusters: ${fs.statSync(image).size} bytes became ${fs.statSync(output).size}`;
      expect(await compressedClusters(output), label).toBe(compressedBefore);
      // Room for the new layout's metadata, not for the compressed data to spread out.
      expect(fs.statSync(output).size, label).toBeLessThanOrEqual(fs.statSync(image).size + 8 * clusterBytes);
      await expectSameDisk(output, states, label);
    }
  });

  it('does not spread out a disk whose compressed and stored clusters alternate (a compressed install, then written over here and there)', async () => {
    const dir = folder.file(`case-${++caseCount}`);
    fs.mkdirSync(dir);
    const raw = path.join(dir, 'text.raw');
    fs.writeFileSync(raw, compressibleBytes(4 * MiB, 5));
    const image = path.join(dir, 'disk.qcow2');
    await qemuImg(['convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', raw, image]);
    fs.rmSync(raw);
    await qemuIo(image, Array.from({ length: 32 }, (_, index) => `write -P ${index + 1} ${index * 128 * KiB} 64k`));
    const states = await statesOf(image);
    const output = path.join(dir, 'compacted.qcow2');
    expect((await run('compact', '-q', image, output)).code).toBe(0);
    const label = `${fs.statSync(image).size} bytes became ${fs.statSync(output).size}`;
    expect(fs.statSync(output).size, label).toBeLessThanOrEqual(fs.statSync(image).size + 8 * 64 * KiB);
    await expectSameDisk(output, states, label);
  });

  it('in place reclaims what deleted snapshots and leaks left: smaller, clean, the same data', async () => {
    const { image } = await diskWithSnapshots();
    await qemuImg(['snapshot', '-d', 'installed', image]);
    const states = await statesOf(image);
    const before = fs.statSync(image).size;
    const result = await run('compact', image);
    expect(result.code).toBe(0);
    expect(result.out).toMatch(/, 1 snapshot kept, every state verified\n$/);
    expect(fs.statSync(image).size).toBeLessThan(before);
    await expectSameDisk(image, states, 'compacted in place');
  });

  it('a disk with persistent dirty bitmaps: refused in one line naming --drop-bitmaps, untouched; with it, compacted without them', async () => {
    const { dir, image } = await diskWithSnapshots();
    await qemuImg(['bitmap', '--add', image, 'nightly']);
    const states = await statesOf(image);
    const hash = fileHash(image);
    const refused = await run('compact', image);
    expectOneLineError(refused, 1, /persistent dirty bitmaps.*nothing was changed; pass --drop-bitmaps to leave them behind/);
    expect(fileHash(image)).toBe(hash);
    expect(fs.readdirSync(dir)).toEqual(['disk.qcow2']);
    const result = await run('compact', '--drop-bitmaps', image);
    expect(result.code, result.err).toBe(0);
    expect(((await qemuInfo(image))['format-specific']?.data as Record<string, unknown>).bitmaps).toBeUndefined();
    await expectSameDisk(image, states, 'compacted without its bitmap');
  });
});

describe('cowbell convert -O qcow2 and snapshots', { timeout: 60_000 }, () => {
  it('keeps every snapshot by default (nothing on stdout), with -c compressed; --no-snapshots copies the current state only', async () => {
    const { dir, image } = await diskWithSnapshots();
    const states = await statesOf(image);
    const listing = (await qemuInfo(image)).snapshots;
    const kept = path.join(dir, 'kept.qcow2');
    expect(await run('convert', '-O', 'qcow2', image, kept)).toEqual({ code: 0, out: '', err: `cowbell: note: ${kept} keeps the ${listing?.length} internal snapshots of ${image} (qemu-img convert drops them; --no-snapshots leaves them behind)\n` });
    expect((await qemuInfo(kept)).snapshots).toEqual(listing);
    await expectSameDisk(kept, states, 'convert -O qcow2');
    expect(await compressedClusters(kept)).toBe(0);

    const compressed = path.join(dir, 'compressed.qcow2');
    expect((await run('convert', '-c', '-O', 'qcow2', image, compressed)).code).toBe(0);
    expect(await compressedClusters(compressed)).toBeGreaterThan(0);
    await expectSameDisk(compressed, states, 'convert -c -O qcow2');

    const flat = path.join(dir, 'flat.qcow2');
    expect((await run('convert', '-O', 'qcow2', '--no-snapshots', image, flat)).code).toBe(0);
    expect((await qemuInfo(flat)).snapshots ?? []).toEqual([]);
    await expectSameDisk(flat, new Map([['(current)', states.get('(current)') ?? new Uint8Array(0)]]), 'convert --no-snapshots');
  });

  it('-l NAME, -l snapshot.name=NAME and -l snapshot.id=ID write that state, raw and qcow2, as qemu-img convert -l does', async () => {
    const { dir, image } = await diskWithSnapshots();
    const id = (await qemuInfo(image)).snapshots?.find((snapshot) => snapshot.name === 'installed')?.id ?? '';
    expect(id).not.toBe('');
    for (const selector of ['installed', 'snapshot.name=installed', `snapshot.id=${id}`]) {
      const expected = path.join(dir, 'expected.raw');
      await qemuImg(['convert', '-f', 'qcow2', '-O', 'raw', '-l', selector.includes('=') ? selector : `snapshot.name=${selector}`, image, expected]);
      const reference = new Uint8Array(fs.readFileSync(expected));
      fs.rmSync(expected);
      const raw = path.join(dir, 'state.raw');
      expect((await run('convert', '-O', 'raw', '-l', selector, image, raw)).code, selector).toBe(0);
      expect(firstDifference(new Uint8Array(fs.readFileSync(raw)), reference), `${selector}: raw`).toBe(-1);
      const qcow2 = path.join(dir, 'state.qcow2');
      expect((await run('convert', '-O', 'qcow2', '-l', selector, image, qcow2)).code, selector).toBe(0);
      expect((await qemuInfo(qcow2)).snapshots ?? [], `${selector}: one state, no snapshots`).toEqual([]);
      expect(firstDifference(await rawOf(qcow2), reference), `${selector}: qcow2`).toBe(-1);
      fs.rmSync(raw);
      fs.rmSync(qcow2);
    }
    expectOneLineError(await run('convert', '-O', 'qcow2', '-l', 'installed', '--no-snapshots', image, path.join(dir, 'both.qcow2')), 2, /-l copies one snapshot/);
  });

  it('-l snapshot.id=ID means the id, snapshot.name=NAME the name and a bare ID_OR_NAME an id first, even where another snapshot is named like an id (as qemu-img)', async () => {
    const dir = folder.file(`case-${++caseCount}`);
    fs.mkdirSync(dir);
    const image = path.join(dir, 'disk.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '1M']);
    await qemuIo(image, ['write -P 0x31 0 64k']);
    await qemuImg(['snapshot', '-c', '2', image]);
    await qemuIo(image, ['write -P 0x32 0 64k']);
    await qemuImg(['snapshot', '-c', 'second', image]);
    expect((await qemuInfo(image)).snapshots?.map((snapshot) => [snapshot.id, snapshot.name])).toEqual([['1', '2'], ['2', 'second']]);
    // A bare selector is an id first (2 is "second", not the snapshot named "2"), then a name, as qemu-img.
    for (const selector of ['snapshot.id=2', 'snapshot.name=2', 'snapshot.id=1', '2', 'second']) {
      const expected = path.join(dir, 'expected.raw');
      await qemuImg(['convert', '-f', 'qcow2', '-O', 'raw', '-l', selector, image, expected]);
      const raw = path.join(dir, 'state.raw');
      expect((await run('convert', '-O', 'raw', '-l', selector, image, raw)).code, selector).toBe(0);
      expect(firstDifference(new Uint8Array(fs.readFileSync(raw)), new Uint8Array(fs.readFileSync(expected))), `${selector}: first byte unlike qemu-img's`).toBe(-1);
      fs.rmSync(raw);
      fs.rmSync(expected);
    }
    // Where qemu-img finds no such snapshot, neither may Cowbell fall back to the other kind of lookup.
    for (const selector of ['snapshot.name=1', 'snapshot.id=3']) {
      await qemuImg(['convert', '-f', 'qcow2', '-O', 'raw', '-l', selector, image, path.join(dir, 'qemu.raw')], { okCodes: [1] });
      expectOneLineError(await run('convert', '-O', 'raw', '-l', selector, image, path.join(dir, 'state.raw')), 1, /no snapshot/i);
    }
    expect(fs.readdirSync(dir)).toEqual(['disk.qcow2']);
  });

  it('options that would change the layout cannot be had with the snapshots: exit 2, the reason and the way out, no output', async () => {
    const { dir, image } = await diskWithSnapshots();
    const output = path.join(dir, 'out.qcow2');
    expectOneLineError(await run('convert', '-O', 'qcow2', '-o', 'cluster_size=4096', image, output), 2, /the cluster size cannot change while keeping the 2 internal snapshots of .*add --no-snapshots/);
    expectOneLineError(await run('convert', '-O', 'qcow2', '-o', 'compat=0.10', image, output), 2, /compat cannot go back to 0\.10/);
    expectOneLineError(await run('convert', '-O', 'qcow2', '-o', 'refcount_bits=64', image, output), 2, /refcount_bits cannot change/);
    expect(fs.readdirSync(dir)).toEqual(['disk.qcow2']);
    // The same cluster size is no change; dropping the snapshots lifts the restriction.
    expect((await run('convert', '-O', 'qcow2', '-o', 'cluster_size=65536', image, output)).code).toBe(0);
    expect((await qemuInfo(output)).snapshots).toHaveLength(2);
    const small = path.join(dir, 'small-clusters.qcow2');
    expect((await run('convert', '-O', 'qcow2', '-o', 'cluster_size=4096', '--no-snapshots', image, small)).code).toBe(0);
    expect((await qemuInfo(small))['cluster-size']).toBe(4096);
  });
});

/**
 * Runs the real `bin/cowbell ARGS…` in a process group of its own and sends the group SIGINT, as
 * a terminal's Ctrl-C does, at the first progress line at or past `percent`.
 */
async function interrupted(args: string[], percent: number): Promise<{ code: number | null; err: string; at: number | null; furthest: number }> {
  const bin = fileURLToPath(new URL('../../bin/cowbell', import.meta.url));
  // The Node that runs the tests (the project's Node 24) runs the command too.
  const env = { ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}` };
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true, env });
  let err = '';
  let at: number | null = null;
  let sentAt = 0;
  child.stderr.on('data', (chunk: Buffer) => {
    err += chunk.toString();
    const latest = [...err.matchAll(/\((\d+\.\d+)\/100%\)/g)].map((match) => Number(match[1])).at(-1) ?? 0;
    if (at === null && latest >= percent && child.pid !== undefined) {
      at = latest;
      sentAt = err.length;
      process.kill(-child.pid, 'SIGINT');
    }
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', (exitCode) => resolve(exitCode)));
  // How far the progress line got after Ctrl-C: a job that heeds it stops within a batch or two.
  const furthest = Math.max(0, ...[...err.slice(sentAt).matchAll(/\((\d+\.\d+)\/100%\)/g)].map((match) => Number(match[1])));
  return { code, err, at, furthest };
}

describe('cowbell compress, interrupted', () => {
  /**
   * A folder of its own with a disk of `mib` MiB of random data (slow to compress) or of text
   * (stored compressed by qemu-img), a snapshot, and a current state of its own.
   */
  async function randomDisk(mib: number, data: 'random' | 'text'): Promise<{ dir: string; image: string }> {
    const dir = folder.file(`case-${++caseCount}`);
    fs.mkdirSync(dir);
    const raw = path.join(dir, 'random.raw');
    fs.writeFileSync(raw, data === 'random' ? randomFillSync(Buffer.alloc(mib * MiB)) : compressibleBytes(mib * MiB, 7));
    const image = path.join(dir, 'disk.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, `${mib}M`]);
    await qemuImg(['convert', '-q', '-n', ...(data === 'text' ? ['-c'] : []), '-f', 'raw', '-O', 'qcow2', raw, image]);
    fs.rmSync(raw);
    await qemuImg(['snapshot', '-c', 'random', image]);
    await qemuIo(image, ['write -P 0x41 0 4M']);
    return { dir, image };
  }

  const cases = [
    { mib: 128, percent: 5, stage: 'while copying', data: 'random' as const },
    // The copy (2-85%), the check (85-88%), then the verify: a cancel a sixth of the way into it,
    // with enough left (about 90 MiB each side) that finishing first would be a failure to heed it.
    // zlib data recompressed as zstd, so the verify decompresses both sides of what it compares:
    // plain random clusters were compared so fast on some machines that it ended before a Ctrl-C
    // could be heard at all, and clusters compressed from plain ones, or kept as stored, are
    // compared on a helper thread while the copy goes on, leaving the verify little to do.
    { mib: 128, percent: 90, stage: 'while verifying', data: 'text' as const },
  ];
  for (const { mib, percent, stage, data } of cases) {
    it(`Ctrl-C ${stage} (${mib} MiB of ${data} data): exit 130, one line, the disk byte for byte, no temporary file, and promptly`, { timeout: 120_000 }, async () => {
      const { dir, image } = await randomDisk(mib, data);
      const hash = fileHash(image);
      const result = await interrupted(['compress', ...(data === 'text' ? ['-o', 'compression_type=zstd'] : []), '-p', image], percent);
      expect(result.at, `interrupted at ${percent}%`).not.toBeNull();
      // A progress line inside the stage, not only the last one (100%) before the disk is replaced.
      expect(result.at, 'the stage printed no progress before its end').toBeLessThan(stage === 'while copying' ? 85 : 100);
      expect(result.code, result.err).toBe(130);
      expect(result.err).toMatch(/\ncowbell: Cancelled; the disk was left as it was\n$/);
      expect(fileHash(image)).toBe(hash);
      expect(fs.readdirSync(dir)).toEqual(['disk.qcow2']);
      // And promptly: not after copying (and checking, and verifying) everything first.
      expect(result.furthest, `Ctrl-C at ${result.at ?? '?'}%, yet the progress went on to ${result.furthest}%`).toBeLessThan(Math.min((result.at ?? 0) + 15, 100));
    });
  }
});
