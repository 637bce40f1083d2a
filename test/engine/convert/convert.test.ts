import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertImage, type ConvertRequest } from '../../../src/shared/qcow2/convert/convert.ts';
import type { CreateOptions } from '../../../src/shared/qcow2/image/create.ts';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import type { JobContext } from '../../../src/shared/qcow2/job-context.ts';
import { firstDifference, qemuCheck, qemuCompare, qemuImg, qemuInfo, qemuIo, qemuMap, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { FaultFileSystem } from '../../helpers/fault-file.ts';
import { compressibleBytes, SeededRandom } from '../../helpers/seeded-random.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Not a whole number of sectors (QEMU rounds the disk up to one), clusters or 2 MiB clusters. */
const SOURCE_SIZE = 5 * MiB + 1000;
const DISK_SIZE = 5 * MiB + 1024;

let folder: TempDir;
let sourceRaw = '';
let sourceBytes: Uint8Array;

/** A guest disk of random data, compressible text, written zeros and holes. */
function mixedBytes(): Uint8Array {
  const random = new SeededRandom(42);
  const bytes = new Uint8Array(SOURCE_SIZE);
  bytes.set(random.bytes(300 * KiB), 0);
  bytes.set(compressibleBytes(700 * KiB, 1), 512 * KiB);
  bytes.set(random.bytes(4 * KiB), 2 * MiB + 60 * KiB);
  bytes.set(compressibleBytes(MiB, 2), 3 * MiB);
  bytes.set(random.bytes(1000), SOURCE_SIZE - 1000);
  return bytes;
}

beforeAll(() => {
  folder = tempDir();
  sourceRaw = folder.file('source.raw');
  sourceBytes = mixedBytes();
  fs.writeFileSync(sourceRaw, sourceBytes);
});
afterAll(() => folder.cleanup());

let counter = 0;
function output(extension: string): string {
  counter += 1;
  return folder.file(`out-${counter}.${extension}`);
}

async function expectCleanCopy(image: string, reference: string, referenceFormat: 'qcow2' | 'raw' = 'raw'): Promise<void> {
  const check = await qemuCheck(image);
  expect(check.code, check.output).toBe(0);
  const compare = await qemuCompare(image, reference, { formatB: referenceFormat });
  expect(compare.code, compare.output).toBe(0);
}

function recordingJob(): JobContext & { calls: [number, number][] } {
  const calls: [number, number][] = [];
  return {
    calls,
    progress(_stage, done, total) {
      calls.push([done, total]);
    },
    throwIfCancelled() {},
  };
}

function convertError(request: ConvertRequest, job?: JobContext): Qcow2Error {
  try {
    convertImage(request, job);
  } catch (error) {
    if (error instanceof Qcow2Error) return error;
    throw error;
  }
  throw new Error('convert did not fail');
}

describe('convert raw → qcow2 → raw', () => {
  let qcow2 = '';
  beforeAll(() => {
    qcow2 = output('qcow2');
    convertImage({ source: sourceRaw, target: qcow2, targetFormat: 'qcow2', writeBehind: true });
  });

  it('imports a raw disk into a clean qcow2 image that qemu-img finds equal', async () => {
    await expectCleanCopy(qcow2, sourceRaw);
    const info = await qemuInfo(qcow2);
    expect(info['virtual-size']).toBe(DISK_SIZE);
  });

  it('stores no cluster that is all zeros', async () => {
    const entries = await qemuMap(qcow2);
    const stored = entries.filter((entry) => entry.data).reduce((sum, entry) => sum + entry.length, 0);
    // 300K + 700K + 4K + 1M of data in 5 + 11 + 1 + 16 clusters of 64 KiB, and the disk's last 1 KiB.
    expect(stored).toBe(33 * 64 * KiB + KiB);
  });

  it('exports it back to raw byte for byte', async () => {
    const raw = output('raw');
    const result = convertImage({ source: qcow2, target: raw, targetFormat: 'raw', writeBehind: true });
    const bytes = new Uint8Array(fs.readFileSync(raw));
    expect(bytes.length).toBe(DISK_SIZE);
    expect(firstDifference(bytes.subarray(0, SOURCE_SIZE), sourceBytes)).toBe(-1);
    expect(bytes.subarray(SOURCE_SIZE).every((byte) => byte === 0)).toBe(true);
    expect(result.dataBytes + result.zeroBytes).toBe(DISK_SIZE);
  });

  it('reports progress up to the whole disk', () => {
    const job = recordingJob();
    convertImage({ source: sourceRaw, target: output('qcow2'), targetFormat: 'qcow2', writeBehind: true, chunkBytes: MiB }, job);
    expect(job.calls.length).toBeGreaterThan(5);
    expect(job.calls.at(-1)).toEqual([DISK_SIZE, DISK_SIZE]);
    for (let index = 1; index < job.calls.length; index++) expect(job.calls[index]?.[0]).toBeGreaterThanOrEqual(job.calls[index - 1]?.[0] ?? 0);
  });
});

describe('convert to qcow2 with creation options', () => {
  const cases: { name: string; options: Omit<CreateOptions, 'size'>; compress?: boolean; chunkBytes?: number; compressionThreads?: number }[] = [
    { name: 'compat 0.10', options: { compat: '0.10' } },
    { name: '512-byte clusters, 64-bit refcounts (many refcount blocks and L2 tables)', options: { clusterSize: 512, refcountBits: 64 }, chunkBytes: 64 * KiB },
    { name: '4 KiB clusters, 1-bit refcounts', options: { clusterSize: 4096, refcountBits: 1 } },
    { name: '2 MiB clusters', options: { clusterSize: 2 * MiB } },
    { name: 'extended L2', options: { extendedL2: true, clusterSize: 32 * KiB } },
    { name: 'compressed (zlib)', options: {}, compress: true },
    { name: 'compressed (zstd)', options: { compressionType: 'zstd' }, compress: true },
    { name: 'compressed, 1-bit refcounts (no packing)', options: { refcountBits: 1, clusterSize: 4096 }, compress: true },
    { name: 'compressed, 512-byte clusters, compat 0.10', options: { clusterSize: 512, compat: '0.10' }, compress: true },
    { name: 'compressed, extended L2', options: { extendedL2: true }, compress: true },
    { name: 'compressed on three threads, 4 KiB clusters', options: { clusterSize: 4096 }, compress: true, compressionThreads: 3, chunkBytes: 256 * KiB },
  ];

  it.each(cases)('$name: clean, equal, with the options asked for', async ({ options, compress, chunkBytes, compressionThreads }) => {
    const target = output('qcow2');
    convertImage({ source: sourceRaw, target, targetFormat: 'qcow2', writeBehind: true, options, compress, chunkBytes, compressionThreads });
    await expectCleanCopy(target, sourceRaw);
    const info = await qemuInfo(target);
    const specific = info['format-specific']?.data;
    expect(info['cluster-size']).toBe(options.clusterSize ?? 65536);
    expect(specific?.compat).toBe(options.compat ?? '1.1');
    expect(specific?.['refcount-bits']).toBe(options.refcountBits ?? 16);
    expect(specific?.['extended-l2'] ?? false).toBe(options.extendedL2 ?? false);
    expect(specific?.['compression-type'] ?? 'zlib').toBe(options.compressionType ?? 'zlib');
    const check = await qemuCheck(target);
    const compressedClusters = check.report?.['compressed-clusters'] ?? 0;
    if (compress) expect(compressedClusters).toBeGreaterThan(0);
    else expect(compressedClusters).toBe(0);
  });

  it('-c stores clusters that do not compress as plain data', async () => {
    const target = output('qcow2');
    const result = convertImage({ source: sourceRaw, target, targetFormat: 'qcow2', compress: true });
    expect(result.compressedBytes).toBeGreaterThan(0);
    expect(result.dataBytes).toBeGreaterThan(0);
    const entries = await qemuMap(target);
    expect(entries.filter((entry) => entry.data && entry.offset !== undefined).length).toBeGreaterThan(0);
    expect(fs.statSync(target).size).toBeLessThan(2 * MiB);
  });

  it('copies a qcow2 disk with compressed, zero and extended-L2 clusters and a backing file, flattened', async () => {
    const base = folder.file('flat-base.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', base, '3M']);
    await qemuIo(base, ['write -P 1 0 2M']);
    const compressedBase = folder.file('flat-base-compressed.qcow2');
    await qemuImg(['convert', '-c', '-O', 'qcow2', base, compressedBase]);
    const top = folder.file('flat-top.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on', '-b', 'flat-base-compressed.qcow2', '-F', 'qcow2', top, '4M']);
    await qemuIo(top, ['write -P 2 4k 8k', 'write -z 1M 64k', 'write -P 3 3M 4k']);
    const target = output('qcow2');
    convertImage({ source: top, target, targetFormat: 'qcow2' });
    await expectCleanCopy(target, top, 'qcow2');
    expect((await qemuInfo(target))['backing-filename']).toBeUndefined();
    const raw = output('raw');
    convertImage({ source: top, target: raw, targetFormat: 'raw', writeBehind: true });
    expect(firstDifference(new Uint8Array(fs.readFileSync(raw)), await rawOf(top))).toBe(-1);
  });

  it('a sparse 64 GiB disk: only what it stores is read and written', async () => {
    const image = folder.file('sparse-64g.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '64G']);
    await qemuIo(image, ['write -P 1 40G 1M']);
    const target = output('qcow2');
    const result = convertImage({ source: image, target, targetFormat: 'qcow2' });
    expect(result.dataBytes).toBe(MiB);
    expect(result.zeroBytes).toBe(64 * 1024 * MiB - MiB);
    expect(fs.statSync(target).size).toBeLessThan(2 * MiB);
    await expectCleanCopy(target, image, 'qcow2');
  });

  it('a disk preallocated with metadata: clusters over the file\'s holes are not read (as qemu-img asks the file system), snapshots too', async () => {
    const image = folder.file('preallocated.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata', image, '2G']);
    await qemuIo(image, ['write -P 1 0 1M', 'write -P 2 1G 64k']);
    await qemuImg(['snapshot', '-c', 'before', image]);
    await qemuIo(image, ['write -P 3 1500M 1M']);
    for (const sourceSnapshot of [undefined, { name: 'before' }]) {
      const target = output('qcow2');
      const job = recordingJob();
      const result = convertImage({ source: image, target, targetFormat: 'qcow2', sourceSnapshot }, job);
      // A few progress reports per stretch of data, not one per chunk of the 2 GiB (a read of every hole).
      expect(job.calls.length).toBeLessThan(40);
      expect(result.dataBytes).toBe(sourceSnapshot === undefined ? 2 * MiB + 64 * KiB : MiB + 64 * KiB);
      const check = await qemuCheck(target);
      expect(check.code, check.output).toBe(0);
      const reference = output('raw');
      await qemuImg(['convert', '-O', 'raw', ...(sourceSnapshot === undefined ? [] : ['-l', 'snapshot.name=before']), image, reference]);
      const compare = await qemuCompare(target, reference, { formatB: 'raw' });
      expect(compare.code, compare.output).toBe(0);
    }
  });

  it('an empty disk whose L1 table alone fills several refcount blocks (512-byte clusters, 64-bit refcounts)', async () => {
    const image = folder.file('empty-256m.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '256M']);
    const target = output('qcow2');
    convertImage({ source: image, target, targetFormat: 'qcow2', options: { clusterSize: 512, refcountBits: 64 } });
    await expectCleanCopy(target, image, 'qcow2');
  });

  it('drops internal snapshots, as qemu-img convert does', async () => {
    const image = folder.file('with-snapshot.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '1M']);
    await qemuIo(image, ['write -P 1 0 64k']);
    await qemuImg(['snapshot', '-c', 'one', image]);
    const target = output('qcow2');
    convertImage({ source: image, target, targetFormat: 'qcow2' });
    expect((await qemuInfo(target)).snapshots).toBeUndefined();
    await expectCleanCopy(target, image, 'qcow2');
  });
});

describe('convert onto a backing file (like qemu-img convert -B)', () => {
  it('stores only the clusters that differ from the backing file, zero clusters where it has data', async () => {
    const base = folder.file('b-base.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', base, '4M']);
    await qemuIo(base, ['write -P 1 0 2M']);
    const top = folder.file('b-top.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'b-base.qcow2', '-F', 'qcow2', top, '6M']);
    await qemuIo(top, ['write -P 2 64k 64k', 'write -z 1M 128k', 'write -P 3 5M 64k']);
    const target = folder.file('b-out.qcow2');
    const result = convertImage({ source: top, target, targetFormat: 'qcow2', options: { backingFile: 'b-base.qcow2' } });
    await expectCleanCopy(target, top, 'qcow2');
    const info = await qemuInfo(target);
    expect(info['backing-filename']).toBe('b-base.qcow2');
    expect(info['backing-filename-format']).toBe('qcow2');
    expect(result.dataBytes).toBe(128 * KiB);
    const own = (await qemuMap(target)).filter((entry) => entry.depth === 0 && entry.present);
    expect(own.map((entry) => [entry.start, entry.length, entry.data])).toEqual([
      [64 * KiB, 64 * KiB, true],
      [MiB, 128 * KiB, false],
      [5 * MiB, 64 * KiB, true],
    ]);
  });

  it('a stretch the source leaves unallocated, after one with data, reads as zeros over the backing data (not the data before it)', async () => {
    // Regression: a chunk with nothing stored was compared with the backing file while its buffer still held the previous chunk.
    const base = folder.file('u-base.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', base, '12M']);
    await qemuIo(base, ['write -P 0x11 0 12M']);
    const source = folder.file('u-source.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', source, '12M']);
    await qemuIo(source, ['write -P 0x22 3M 64k', 'write -P 0x33 9M 64k']);
    const target = folder.file('u-out.qcow2');
    convertImage({ source, target, targetFormat: 'qcow2', options: { backingFile: 'u-base.qcow2', backingFormat: 'qcow2' } });
    await expectCleanCopy(target, source, 'qcow2');
  });

  it('compat 0.10 has no zero flag: zeros over backing data are stored', async () => {
    const base = folder.file('v2-base.raw');
    fs.writeFileSync(base, Buffer.alloc(MiB, 9));
    const source = folder.file('v2-source.raw');
    const bytes = Buffer.alloc(MiB, 9);
    bytes.fill(0, 128 * KiB, 256 * KiB);
    fs.writeFileSync(source, bytes);
    const target = folder.file('v2-out.qcow2');
    convertImage({ source, target, targetFormat: 'qcow2', options: { compat: '0.10', backingFile: 'v2-base.raw', backingFormat: 'raw' } });
    await expectCleanCopy(target, source);
    const own = (await qemuMap(target)).filter((entry) => entry.depth === 0);
    expect(own.map((entry) => [entry.start, entry.length, entry.data])).toEqual([[128 * KiB, 128 * KiB, true]]);
  });

  it('refuses a missing backing file and a target that is its own backing file', () => {
    expect(convertError({ source: sourceRaw, target: output('qcow2'), targetFormat: 'qcow2', options: { backingFile: 'missing.qcow2' } }).code).toBe('BACKING_NOT_FOUND');
    const target = output('qcow2');
    expect(convertError({ source: sourceRaw, target, targetFormat: 'qcow2', options: { backingFile: target } }).code).toBe('INVALID_ARGUMENT');
  });
});

describe('convert from a qcow2 whose clusters are smaller than the output\'s blocks', () => {
  it('writes a block that mixes data and unallocated clusters whole, zeros and all, though its buffer held other data before', async () => {
    // 4 KiB clusters; 64 KiB blocks in the output. The first 16 blocks are all data, which dirties
    // the reused chunk buffers; every later block has 4 KiB of data and 60 KiB never written.
    const source = folder.file('small-clusters.qcow2');
    await qemuImg(['create', '-f', 'qcow2', '-o', 'cluster_size=4096', source, '8M']);
    const writes = ['write -P 0xaa 0 1M'];
    for (let block = 16; block < 128; block++) writes.push(`write -P 0x5c ${block * 64 * KiB + (block % 16) * 4 * KiB} 4k`);
    await qemuIo(source, writes);
    const raw = output('raw');
    convertImage({ source, target: raw, targetFormat: 'raw', writeBehind: true, chunkBytes: 64 * KiB });
    expect((await qemuCompare(source, raw)).code).toBe(0);
    const qcow2 = output('qcow2');
    convertImage({ source, target: qcow2, targetFormat: 'qcow2', writeBehind: true, chunkBytes: 64 * KiB });
    await expectCleanCopy(qcow2, source, 'qcow2');
    // Compressing reads into one buffer of its own, reused chunk after chunk.
    const compressed = output('qcow2');
    convertImage({ source, target: compressed, targetFormat: 'qcow2', compress: true, chunkBytes: 64 * KiB });
    await expectCleanCopy(compressed, source, 'qcow2');
  });
});

describe('convert without flushing (qemu-img -t unsafe)', () => {
  it('makes the same file, renamed into place without a flush of the file or the folder', () => {
    const durable = new FaultFileSystem();
    convertImage({ source: sourceRaw, target: '/fake/durable.qcow2', targetFormat: 'qcow2', fileSystem: durable });
    const unsafe = new FaultFileSystem();
    convertImage({ source: sourceRaw, target: '/fake/unsafe.qcow2', targetFormat: 'qcow2', durable: false, fileSystem: unsafe });
    const kinds = (log: FaultFileSystem['log']): string[] => log.filter((event) => event.kind !== 'write' && event.kind !== 'truncate').map((event) => event.kind);
    expect(kinds(durable.log)).toEqual(['create', 'flush', 'close', 'rename', 'sync-folder']);
    expect(kinds(unsafe.log)).toEqual(['create', 'close', 'rename']);
    const made = unsafe.files().get('/fake/unsafe.qcow2');
    expect(made).toBeDefined();
    expect(firstDifference(made ?? new Uint8Array(0), durable.files().get('/fake/durable.qcow2') ?? new Uint8Array(0))).toBe(-1);
  });
});

describe('convert failures and cancel', () => {
  it('a cancel leaves neither the output nor a temporary file', () => {
    const before = new Set(fs.readdirSync(folder.path));
    const target = output('qcow2');
    let checks = 0;
    const job: JobContext = {
      progress() {},
      throwIfCancelled() {
        checks += 1;
        if (checks === 3) throw new Qcow2Error('CANCELLED', 'Cancelled');
      },
    };
    expect(convertError({ source: sourceRaw, target, targetFormat: 'qcow2', writeBehind: true, chunkBytes: MiB }, job).code).toBe('CANCELLED');
    expect(fs.existsSync(target)).toBe(false);
    expect(fs.readdirSync(folder.path).filter((name) => !before.has(name))).toEqual([]);
  });

  it('a cancel asked for after the last chunk, while the output is flushed, still leaves no output', () => {
    const before = new Set(fs.readdirSync(folder.path));
    const target = output('raw');
    let finished = false;
    const job: JobContext = {
      progress(_stage, done, total) {
        finished = done === total;
      },
      throwIfCancelled() {
        if (finished) throw new Qcow2Error('CANCELLED', 'Cancelled');
      },
    };
    expect(convertError({ source: sourceRaw, target, targetFormat: 'raw', chunkBytes: 64 * KiB }, job).code).toBe('CANCELLED');
    expect(fs.readdirSync(folder.path).filter((name) => !before.has(name))).toEqual([]);
  });

  it('a missing input is NOT_FOUND; a raw file read as qcow2 is BAD_MAGIC', () => {
    expect(convertError({ source: folder.file('nothing.qcow2'), target: output('qcow2'), targetFormat: 'qcow2' }).code).toBe('NOT_FOUND');
    expect(convertError({ source: sourceRaw, sourceFormat: 'qcow2', target: output('qcow2'), targetFormat: 'qcow2' }).code).toBe('BAD_MAGIC');
  });

  it('an existing output is kept unless overwriting is asked for', () => {
    const target = output('raw');
    fs.writeFileSync(target, 'keep me');
    expect(convertError({ source: sourceRaw, target, targetFormat: 'raw' }).code).toBe('INVALID_ARGUMENT');
    expect(fs.readFileSync(target, 'utf8')).toBe('keep me');
    convertImage({ source: sourceRaw, target, targetFormat: 'raw', overwrite: true });
    expect(fs.statSync(target).size).toBe(DISK_SIZE);
  });

  it('compression and creation options need a qcow2 output; preallocation is refused', () => {
    expect(convertError({ source: sourceRaw, target: output('raw'), targetFormat: 'raw', compress: true }).code).toBe('INVALID_ARGUMENT');
    expect(convertError({ source: sourceRaw, target: output('raw'), targetFormat: 'raw', options: { clusterSize: 4096 } }).code).toBe('INVALID_ARGUMENT');
    expect(convertError({ source: sourceRaw, target: output('qcow2'), targetFormat: 'qcow2', options: { preallocation: 'metadata' } }).code).toBe('INVALID_ARGUMENT');
    expect(convertError({ source: sourceRaw, target: output('qcow2'), targetFormat: 'qcow2', options: { clusterSize: 3000 } }).code).toBe('INVALID_ARGUMENT');
  });
});

describe('convert from a sparse raw file (its holes are not read, as qemu-img skips them)', () => {
  const GiB = 1024 * MiB;
  /** Data at three places of a 1 TiB file; the rest holes. Reading the holes would take many minutes. */
  function hugeSparseRaw(name: string): { path: string; pieces: [number, Uint8Array][] } {
    const filePath = folder.file(name);
    const random = new SeededRandom(7);
    const pieces: [number, Uint8Array][] = [
      [0, random.bytes(64 * KiB)],
      [300 * GiB + 12345, random.bytes(100 * KiB)],
      [1024 * GiB - 4 * KiB, random.bytes(4 * KiB)],
    ];
    const fd = fs.openSync(filePath, 'w');
    for (const [offset, bytes] of pieces) fs.writeSync(fd, bytes, 0, bytes.length, offset);
    fs.ftruncateSync(fd, 1024 * GiB);
    fs.closeSync(fd);
    return { path: filePath, pieces };
  }

  it('to qcow2: only the chunks holding data are visited; QEMU reads the same disk, data only where it was', async () => {
    const source = hugeSparseRaw('huge-sparse.raw');
    const target = output('qcow2');
    const job = recordingJob();
    const result = convertImage({ source: source.path, sourceFormat: 'raw', target, targetFormat: 'qcow2' }, job);
    expect(result.virtualSize).toBe(1024 * GiB);
    // A few progress reports per stretch of data, not one per 4 MiB of the 1 TiB (262144).
    expect(job.calls.length).toBeLessThan(20);
    expect(job.calls.at(-1)).toEqual([1024 * GiB, 1024 * GiB]);
    expect(result.dataBytes).toBeLessThanOrEqual(64 * KiB + 3 * 64 * KiB + 64 * KiB);
    const check = await qemuCheck(target);
    expect(check.code, check.output).toBe(0);
    const compare = await qemuCompare(target, source.path, { formatB: 'raw' });
    expect(compare.code, compare.output).toBe(0);
    const stored = (await qemuMap(target)).filter((entry) => entry.data);
    for (const entry of stored) expect(source.pieces.some(([offset, bytes]) => entry.start < offset + bytes.length && offset < entry.start + entry.length)).toBe(true);
  });

  it('to raw: the output is as sparse, and equal', async () => {
    const source = hugeSparseRaw('huge-sparse-2.raw');
    const target = output('raw');
    convertImage({ source: source.path, sourceFormat: 'raw', target, targetFormat: 'raw' });
    expect(fs.statSync(target).size).toBe(1024 * GiB);
    expect(fs.statSync(target).blocks * 512).toBeLessThan(4 * MiB);
    const compare = await qemuCompare(target, source.path, { formatA: 'raw', formatB: 'raw' });
    expect(compare.code, compare.output).toBe(0);
  });

  it('onto a backing file: a hole where the backing file has data becomes zeros, not the backing data', async () => {
    const base = folder.file('sparse-base.qcow2');
    await qemuImg(['create', '-f', 'qcow2', base, '8M']);
    await qemuIo(base, ['write -P 0x11 0 8M']);
    const source = folder.file('sparse-over-base.raw');
    const fd = fs.openSync(source, 'w');
    fs.writeSync(fd, new SeededRandom(9).bytes(64 * KiB), 0, 64 * KiB, 3 * MiB);
    fs.ftruncateSync(fd, 8 * MiB);
    fs.closeSync(fd);
    const target = output('qcow2');
    convertImage({ source, sourceFormat: 'raw', target, targetFormat: 'qcow2', options: { backingFile: 'sparse-base.qcow2', backingFormat: 'qcow2' } });
    const check = await qemuCheck(target);
    expect(check.code, check.output).toBe(0);
    const compare = await qemuCompare(target, source, { formatB: 'raw' });
    expect(compare.code, compare.output).toBe(0);
  });
});
