/**
 * Compress, compact and "save a snapshot as a new disk" as the page asks for them: arguments checked
 * against the contract, then the real request handle, job manager, per-image queue, worker pool and
 * engine, on disks qemu-img makes; what comes out is judged by qemu-img.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt } from '../../scripts/lib/build.ts';
import { projectPath } from '../../scripts/lib/project.ts';
import { jobSchemas, type JobEnd, type JobProgress, type RewritePreview, type RewriteSummary, type SnapshotExport } from '../../src/shared/ipc/contract.ts';
import { CONTROL, NOT_COMPRESSED, type CompressWorkerData } from '../../src/shared/qcow2/codec/cluster-compressor.ts';
import { compressCluster, decompressCluster } from '../../src/shared/qcow2/codec/compression.ts';
import { compressedEntrySize } from '../../src/shared/qcow2/format/entries.ts';
import { NodeBlockFile } from '../../src/shared/qcow2/io/block-file.ts';
import { startEarlyVerifier } from '../../src/shared/qcow2/rewrite/early-verify.ts';
import type { SnapshotTree } from '../../src/shared/qcow2/model.ts';
import { fileHash } from '../helpers/image-locks.ts';
import { runIntervals, startBackend, type Backend } from '../helpers/job-harness.ts';
import { qemuImgTimingPbkdf2, tempDir, type TempDir } from '../helpers/qemu.ts';
import {
  allStateDigests,
  letterBytes,
  makeSnapshottedDisk,
  qemuCheckReport,
  qemuSnapshotNames,
  compressHelpersShare,
  sampleThreadCpu,
  snapshottedDiskSize,
  stateDigest,
  temporaryFilesIn,
} from '../helpers/rewrite-disks.ts';

let folder: TempDir;
let counter = 0;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

function disk(dataMiB = 8): { path: string; snapshots: string[] } {
  return makeSnapshottedDisk(folder.path, `disk-${counter++}.qcow2`, dataMiB);
}

function resultOf<T>(end: JobEnd): T {
  if (!end.ok) throw new Error(`the job failed: ${end.error.code} ${end.error.message}`);
  return end.result as T;
}

function errorOf(end: JobEnd): { code: string; message: string } {
  if (end.ok) throw new Error('the job succeeded');
  return end.error;
}

async function run<T>(backend: Backend, kind: string, path: string, args: unknown): Promise<T> {
  return resultOf<T>(await backend.ended(await backend.start(kind, path, args)));
}

async function createLuks(path: string): Promise<void> {
  await qemuImgTimingPbkdf2(['create', '-q', '-f', 'qcow2', '--object', 'secret,id=sec0,data=pw', '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', path, '32M']);
}

describe('the contract for compress, compact and save as', () => {
  it('accepts what the dialogs send and refuses anything else', () => {
    const accepted: [keyof typeof jobSchemas, unknown][] = [
      ['image.compress', {}],
      ['image.compress', { compressionType: 'zstd' }],
      ['image.compact', {}],
      ['image.compact', { uncompress: true }],
      ['image.rewritePreview', { compression: 'compress', compressionType: 'zlib' }],
      ['image.rewritePreview', { compression: 'uncompress' }],
      ['snapshot.export', { name: 'installed', target: '/vms/new.qcow2', format: 'qcow2' }],
      ['snapshot.export', { name: '1', target: 'C:\\vms\\new.img', format: 'raw' }],
    ];
    const refused: [keyof typeof jobSchemas, unknown][] = [
      ['image.compress', { compressionType: 'lz4' }],
      ['image.compress', { compressionType: 0 }],
      ['image.compress', { target: '/elsewhere.qcow2' }],
      ['image.compact', { uncompress: 'yes' }],
      ['image.compact', { compression: 'compress' }],
      ['image.rewritePreview', {}],
      ['image.rewritePreview', { compression: 'squeeze' }],
      ['snapshot.export', { name: 'installed', target: 'relative.qcow2', format: 'qcow2' }],
      ['snapshot.export', { name: 'installed', target: '/vms/new.vmdk', format: 'vmdk' }],
      ['snapshot.export', { name: '', target: '/vms/new.qcow2', format: 'qcow2' }],
      ['snapshot.export', { name: 'installed', format: 'qcow2' }],
      ['snapshot.export', { name: 'installed', target: '/vms/new\0.qcow2', format: 'raw' }],
      ['snapshot.export', { name: 'installed', target: '/vms/new.qcow2', format: 'raw', overwrite: true }],
    ];
    for (const [kind, args] of accepted) expect(jobSchemas[kind].args.safeParse(args).success, `${kind} ${JSON.stringify(args)}`).toBe(true);
    for (const [kind, args] of refused) expect(jobSchemas[kind].args.safeParse(args).success, `${kind} ${JSON.stringify(args)}`).toBe(false);
  });

  it('queues compress and compact as writers of the disk, the preview and save as as readers', () => {
    expect(jobSchemas['image.compress'].access).toBe('write');
    expect(jobSchemas['image.compact'].access).toBe('write');
    expect(jobSchemas['image.rewritePreview'].access).toBe('read');
    expect(jobSchemas['snapshot.export'].access).toBe('read');
  });
});

describe('compress and compact, through the queue and the pool', () => {
  let backend: Backend;
  beforeAll(() => {
    backend = startBackend({ maxThreads: 2, workerSettings: { compressionThreads: 2 } });
  });
  afterAll(() => backend.close());

  it('previews the file now, the estimate after and the free space; compress then gives a smaller disk with the same states, clean for qemu-img', async () => {
    const { path, snapshots } = disk(8);
    const before = allStateDigests(path);
    const sizeBefore = fs.statSync(path).size;

    const preview = await run<RewritePreview>(backend, 'image.rewritePreview', path, { compression: 'compress' });
    expect(preview.fileBytes).toBe(sizeBefore);
    expect(preview.snapshots).toBe(2);
    expect(preview.sampledClusters).toBeGreaterThan(0);
    expect(preview.expectedBytes).toBeLessThan(sizeBefore);
    expect(preview.expectedBytes).toBeLessThanOrEqual(preview.maxBytes);
    expect(preview.freeBytes).toBeGreaterThan(0);
    expect(preview.compressed).toEqual({ clusters: 0, storedBytes: 0, guestBytes: 0, inCurrent: false, inSnapshots: 0 });

    const summary = await run<RewriteSummary>(backend, 'image.compress', path, {});
    const sizeAfter = fs.statSync(path).size;
    expect(summary).toMatchObject({ beforeBytes: sizeBefore, afterBytes: sizeAfter, snapshots: 2, verified: true, encryption: 'none' });
    expect(summary.compressedClusters).toBeGreaterThan(0);
    expect(sizeAfter).toBeLessThan(sizeBefore * 0.8);
    // The estimate was an estimate, but not a wild one.
    expect(Math.abs(preview.expectedBytes - sizeAfter) / sizeAfter).toBeLessThan(0.35);

    expect(qemuCheckReport(path)).toMatchObject({ code: 0, corruptions: 0, leaks: 0, compressedClusters: expect.any(Number) });
    expect(qemuCheckReport(path).compressedClusters).toBeGreaterThan(0);
    // What Encrypt…'s dialog is told: the compressed data of every state, passed on by main as the engine counted it.
    const encryptPreview = await run<RewritePreview>(backend, 'image.rewritePreview', path, { compression: 'uncompress', output: 'luks' });
    expect(encryptPreview.compressed).toMatchObject({ clusters: summary.compressedClusters, inCurrent: true, inSnapshots: 2 });
    expect(encryptPreview.compressed.storedBytes).toBeLessThan(encryptPreview.compressed.guestBytes);
    expect(qemuSnapshotNames(path)).toEqual(snapshots);
    expect(allStateDigests(path)).toEqual(before);
    expect(temporaryFilesIn(folder.path)).toEqual([]);
  }, 60_000);

  it('runs as the disk’s only job while it writes, then says the disk changed; reads asked after it see the new file', async () => {
    const { path } = disk(4);
    const steps = [
      { kind: 'snapshot.tree', args: {} },
      { kind: 'image.usage', args: {} },
      { kind: 'image.compress', args: {} },
      { kind: 'snapshot.tree', args: {} },
      { kind: 'image.usage', args: {} },
    ];
    const logStart = backend.pool.log.length;
    const eventStart = backend.events.length;
    const ids = await Promise.all(steps.map((step) => backend.start(step.kind, path, step.args)));
    const ends = await Promise.all(ids.map((id) => backend.ended(id)));
    for (const end of ends) expect(end.ok ? null : end.error).toBeNull();

    const intervals = [...runIntervals(backend.pool.log.slice(logStart)).values()].filter((interval) => interval.path === path);
    expect(intervals.map((interval) => interval.kind)).toEqual(steps.map((step) => step.kind));
    const compress = intervals[2];
    const overlapping = intervals.filter((other) => other !== compress && compress !== undefined && other.start < compress.end && compress.start < other.end);
    expect(overlapping).toEqual([]);

    const events = backend.events.slice(eventStart);
    const compressEnd = events.findIndex((entry) => entry.event === 'job.end' && (entry.payload as JobEnd).jobId === ids[2]);
    const changed = events.findIndex((entry) => entry.event === 'image.changed' && (entry.payload as { path: string }).path === path);
    expect(changed).toBeGreaterThanOrEqual(0);
    expect(changed).toBeLessThan(compressEnd);
    const stages = events
      .filter((entry) => entry.event === 'job.progress' && (entry.payload as JobProgress).jobId === ids[2])
      .map((entry) => (entry.payload as JobProgress).stage);
    expect(stages).toEqual(expect.arrayContaining(['reading the mapping tables', 'copying', 'checking', 'verifying']));
    expect(stages.indexOf('copying')).toBeLessThan(stages.indexOf('verifying'));

    const treeAfter = resultOf<SnapshotTree>(ends[3] as JobEnd);
    expect(treeAfter.snapshots.map((node) => node.name)).toEqual(['installed', 'updated']);
    expect(resultOf<{ fileSize: number }>(ends[4] as JobEnd).fileSize).toBe(fs.statSync(path).size);
    expect(resultOf<{ fileSize: number }>(ends[4] as JobEnd).fileSize).toBeLessThan(resultOf<{ fileSize: number }>(ends[1] as JobEnd).fileSize);
  }, 60_000);

  it('compact keeps compressed clusters as they are, and with “uncompress” stores them all plainly; every state stays', async () => {
    const { path, snapshots } = disk(4);
    await run<RewriteSummary>(backend, 'image.compress', path, {});
    const compressed = allStateDigests(path);
    const compressedSize = fs.statSync(path).size;

    const kept = await run<RewriteSummary>(backend, 'image.compact', path, {});
    expect(kept.compressedClusters).toBeGreaterThan(0);
    expect(kept.afterBytes).toBeLessThan(compressedSize * 1.1);
    expect(qemuCheckReport(path)).toMatchObject({ code: 0 });

    const plain = await run<RewriteSummary>(backend, 'image.compact', path, { uncompress: true });
    expect(plain.compressedClusters).toBe(0);
    expect(plain.afterBytes).toBeGreaterThan(compressedSize);
    const report = qemuCheckReport(path);
    expect(report).toMatchObject({ code: 0, corruptions: 0, leaks: 0, compressedClusters: 0 });
    expect(qemuSnapshotNames(path)).toEqual(snapshots);
    expect(allStateDigests(path)).toEqual(compressed);
  }, 60_000);

  it('a compress cancelled while it copies leaves the disk byte for byte as it was, and no temporary file', async () => {
    const { path } = disk(32);
    const hashBefore = fileHash(path);
    const eventStart = backend.events.length;
    const id = await backend.start('image.compress', path, {});
    await expect
      .poll(() => backend.events.slice(eventStart).some((entry) => entry.event === 'job.progress' && (entry.payload as JobProgress).jobId === id && (entry.payload as JobProgress).stage === 'copying'), { timeout: 20_000, interval: 5 })
      .toBe(true);
    expect(await backend.handle('job.cancel', { jobId: id })).toEqual({ ok: true, value: { cancelled: true } });
    expect(errorOf(await backend.ended(id)).code).toBe('CANCELLED');
    expect(fileHash(path)).toBe(hashBefore);
    expect(temporaryFilesIn(folder.path)).toEqual([]);
  }, 60_000);

  it('previews an encrypted disk from its metadata alone; compress is refused outright and compact without the passphrase ends LOCKED, the file untouched', async () => {
    const path = folder.file(`luks-${counter++}.qcow2`);
    await createLuks(path);
    const hashBefore = fileHash(path);
    const preview = await run<RewritePreview>(backend, 'image.rewritePreview', path, { compression: 'keep' });
    expect(preview.fileBytes).toBe(fs.statSync(path).size);
    // Unlocked, no sample is read (ciphertext would say nothing): the estimate is the bound.
    expect(preview.sampledClusters).toBe(0);
    expect(preview.expectedBytes).toBe(preview.maxBytes);
    for (const [kind, args, code] of [
      ['image.compress', {}, 'INVALID_ARGUMENT'],
      ['image.compact', {}, 'LOCKED'],
    ] as const) {
      const error = errorOf(await backend.ended(await backend.start(kind, path, args)));
      expect(error.code, kind).toBe(code);
      expect(error.message, kind).toMatch(/encrypted/);
    }
    expect(fileHash(path)).toBe(hashBefore);
  }, 60_000);

  it('refuses zstd on a compat 0.10 disk before writing anything (NEEDS_VERSION_3); with compat 1.1 asked, upgrades it and says so', async () => {
    const { path } = makeSnapshottedDisk(folder.path, `v2-${counter++}.qcow2`, 2, { compat: '0.10' });
    const hashBefore = fileHash(path);
    expect(errorOf(await backend.ended(await backend.start('image.compress', path, { compressionType: 'zstd' }))).code).toBe('NEEDS_VERSION_3');
    expect(fileHash(path)).toBe(hashBefore);

    const before = allStateDigests(path);
    const preview = await run<RewritePreview>(backend, 'image.rewritePreview', path, { compression: 'compress', compressionType: 'zstd', compat: '1.1' });
    expect(preview.snapshots).toBe(2);
    const summary = await run<RewriteSummary>(backend, 'image.compress', path, { compressionType: 'zstd', compat: '1.1' });
    expect(summary).toMatchObject({ snapshots: 2, verified: true, upgradedToVersion3: true });
    const formatData = (JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', path], { encoding: 'utf8' })) as { 'format-specific': { data: Record<string, unknown> } })['format-specific'].data;
    expect(formatData).toMatchObject({ compat: '1.1', 'compression-type': 'zstd' });
    expect(allStateDigests(path)).toEqual(before);
    expect(qemuCheckReport(path)).toMatchObject({ code: 0, corruptions: 0, leaks: 0 });
    expect(qemuCheckReport(path).compressedClusters).toBeGreaterThan(0);
  }, 60_000);
});

describe('save a snapshot as a new disk', () => {
  let backend: Backend;
  beforeAll(() => {
    backend = startBackend({ maxThreads: 2 });
  });
  afterAll(() => backend.close());

  it.each(['qcow2', 'raw'] as const)('writes the snapshot’s state as a standalone %s disk, as qemu-img reads it; the source stays as it was', async (format) => {
    const { path } = disk(4);
    const hashBefore = fileHash(path);
    const target = folder.file(`saved-${counter++}.${format}`);
    const saved = await run<SnapshotExport>(backend, 'snapshot.export', path, { name: 'installed', target, format });
    expect(saved).toEqual({ target, format, virtualSize: snapshottedDiskSize(4), fileBytes: fs.statSync(target).size });
    expect(stateDigest(target, null, format)).toBe(stateDigest(path, 'installed'));
    expect(stateDigest(target, null, format)).not.toBe(stateDigest(path, 'updated'));
    if (format === 'qcow2') {
      expect(qemuCheckReport(target)).toMatchObject({ code: 0 });
      expect(qemuSnapshotNames(target)).toEqual([]);
    }
    expect(fileHash(path)).toBe(hashBefore);
  }, 60_000);

  it('refuses a target that exists or a folder that does not, before any job; and a snapshot that is not there', async () => {
    const { path } = disk(1);
    const existing = folder.file(`exists-${counter++}.qcow2`);
    fs.writeFileSync(existing, 'mine');
    const refusedExisting = await backend.handle('job.start', { kind: 'snapshot.export', path, args: { name: 'installed', target: existing, format: 'qcow2' } });
    expect(refusedExisting).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    const refusedFolder = await backend.handle('job.start', { kind: 'snapshot.export', path, args: { name: 'installed', target: folder.file('no-such-folder/new.qcow2'), format: 'qcow2' } });
    expect(refusedFolder).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    expect(fs.readFileSync(existing, 'utf8')).toBe('mine');

    const missing = await backend.ended(await backend.start('snapshot.export', path, { name: 'never taken', target: folder.file(`never-${counter++}.qcow2`), format: 'qcow2' }));
    expect(errorOf(missing).code).toBe('SNAPSHOT_NOT_FOUND');
    expect(temporaryFilesIn(folder.path)).toEqual([]);
  }, 60_000);
});

/** The built main's chunk of a helper thread's module, as the Electron entry hands it to the pool. */
function builtHelperChunk(name: 'compress-worker' | 'early-verify-worker'): string {
  ensureBuilt();
  const main = fs.readFileSync(projectPath('out/main/index.js'), 'utf8');
  const chunk = new RegExp(`"\\./(chunks/${name}-[^"]+\\.js)"`).exec(main)?.[1];
  if (chunk === undefined) throw new Error(`out/main/index.js names no ${name} chunk`);
  return projectPath('out/main', chunk);
}

describe('compressing on more than one core', () => {
  const builtCompressWorker = (): string => builtHelperChunk('compress-worker');

  it('the build has the compress-worker chunk, and it compresses a batch on its own thread', async () => {
    const chunk = builtCompressWorker();
    expect(fs.existsSync(chunk)).toBe(true);
    const clusterBytes = 65536;
    const count = 8;
    const input = letterBytes(count * clusterBytes);
    const shared: CompressWorkerData = {
      type: 0,
      clusterBytes,
      control: new SharedArrayBuffer(CONTROL.size * 4),
      input: new SharedArrayBuffer(count * clusterBytes),
      output: new SharedArrayBuffer(count * clusterBytes),
      lengths: new SharedArrayBuffer(count * 4),
    };
    new Uint8Array(shared.input).set(input);
    const control = new Int32Array(shared.control);
    const worker = new Worker(chunk, { workerData: shared });
    try {
      // A batch as threadedCompressor hands one out, with nobody else working on it. A helper waits for
      // the generation after the one it saw on starting, so the batch is handed out again until it is taken.
      Atomics.store(control, CONTROL.count, count);
      for (let generation = 1; Atomics.load(control, CONTROL.done) === 0 && generation < 100; generation++) {
        Atomics.store(control, CONTROL.claim, generation << 20);
        Atomics.store(control, CONTROL.generation, generation);
        Atomics.notify(control, CONTROL.generation);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await expect.poll(() => Atomics.load(control, CONTROL.done), { timeout: 10_000, interval: 10 }).toBe(count);
      const lengths = new Int32Array(shared.lengths);
      for (let index = 0; index < count; index++) {
        const length = lengths[index] ?? NOT_COMPRESSED;
        expect(length).toBeGreaterThan(0);
        expect(length).toBeLessThan(clusterBytes);
        const compressed = new Uint8Array(shared.output, index * clusterBytes, length);
        expect(Buffer.from(decompressCluster(0, compressed, clusterBytes)).equals(input.subarray(index * clusterBytes, (index + 1) * clusterBytes))).toBe(true);
      }
      expect(Atomics.load(control, CONTROL.failed)).toBe(0);
    } finally {
      await worker.terminate();
    }
  }, 120_000);

  it('a compress job with that chunk as its helper spends CPU on two threads, and the disk comes out right', async () => {
    const backend = startBackend({ maxThreads: 1, workerSettings: { compressionThreads: 2, compressWorker: builtCompressWorker() } });
    try {
      const { path } = makeSnapshottedDisk(folder.path, `threads-${counter++}.qcow2`, 32);
      const before = allStateDigests(path);
      const sampler = sampleThreadCpu(process.pid);
      await run<RewriteSummary>(backend, 'image.compress', path, {});
      const helpers = compressHelpersShare(sampler.stop());
      expect(helpers.share, `thread CPU seconds: ${helpers.summary}`).toBeGreaterThan(0.1);
      expect(allStateDigests(path)).toEqual(before);
      expect(qemuCheckReport(path).code).toBe(0);
    } finally {
      await backend.close();
    }
  }, 120_000);
});

describe('compacting with the comparison started early on a second core', () => {
  it('the build has the early-verify-worker chunk, and it confirms a copy on its own thread', () => {
    const chunk = builtHelperChunk('early-verify-worker');
    const clusterBytes = 65536;
    const bytes = letterBytes(16 * clusterBytes);
    const sourcePath = folder.file(`early-source-${counter++}`);
    const outputPath = folder.file(`early-output-${counter++}`);
    fs.writeFileSync(sourcePath, bytes);
    // The copy: the two halves swapped.
    fs.writeFileSync(outputPath, Buffer.concat([bytes.subarray(8 * clusterBytes), bytes.subarray(0, 8 * clusterBytes)]));
    const source = NodeBlockFile.open(sourcePath, { readOnly: true });
    const output = NodeBlockFile.open(outputPath, { readOnly: true });
    try {
      const verifier = startEarlyVerifier(source, output, clusterBytes, 0, chunk);
      if (verifier === null) throw new Error('no helper thread');
      verifier.add(0, 8 * clusterBytes, 8);
      verifier.add(8 * clusterBytes, 0, 8);
      verifier.finish();
      for (let cluster = 0; cluster < 16; cluster++) expect(verifier.confirmed.has(cluster * clusterBytes, ((cluster + 8) % 16) * clusterBytes), `cluster ${cluster}`).toBe(true);
    } finally {
      source.close();
      output.close();
    }
  }, 120_000);

  it.each([0, 1] as const)('the build\'s early-verify-worker chunk decompresses the clusters a compress hands it (type %i), and confirms them', (type) => {
    const chunk = builtHelperChunk('early-verify-worker');
    const clusterBytes = 65536;
    const bytes = letterBytes(4 * clusterBytes);
    const sourcePath = folder.file(`early-compressed-source-${counter++}`);
    const outputPath = folder.file(`early-compressed-output-${counter++}`);
    fs.writeFileSync(sourcePath, bytes);
    // Each cluster compressed and packed byte by byte after a 1000-byte start, as a rewrite writes them.
    const placed: { outputHost: number; length: number }[] = [];
    const parts: Uint8Array[] = [new Uint8Array(1000)];
    let at = 1000;
    for (let cluster = 0; cluster < 4; cluster++) {
      const compressed = compressCluster(type, bytes.subarray(cluster * clusterBytes, (cluster + 1) * clusterBytes));
      if (compressed === null) throw new Error('letters did not compress');
      placed.push({ outputHost: at, length: compressed.length });
      parts.push(compressed);
      at += compressed.length;
    }
    parts.push(new Uint8Array(512));
    fs.writeFileSync(outputPath, Buffer.concat(parts));
    const source = NodeBlockFile.open(sourcePath, { readOnly: true });
    const output = NodeBlockFile.open(outputPath, { readOnly: true });
    try {
      const verifier = startEarlyVerifier(source, output, clusterBytes, type, chunk);
      if (verifier === null) throw new Error('no helper thread');
      placed.forEach(({ outputHost, length }, cluster) => verifier.addCompressed(cluster * clusterBytes, outputHost, length));
      expect(verifier.finish(), 'the helper ran').toBe(true);
      placed.forEach(({ outputHost, length }, cluster) => expect(verifier.confirmed.has(cluster * clusterBytes, outputHost, compressedEntrySize(outputHost, length)), `cluster ${cluster}`).toBe(true));
    } finally {
      source.close();
      output.close();
    }
  }, 120_000);

  it('a compress job compares on the helper the settings name (the build\'s chunk), and the disk is compressed right', async () => {
    // The build's chunk, behind a module that leaves a mark: a job that took the default path would leave none.
    const marker = folder.file(`early-helper-ran-${counter++}`);
    const helper = folder.file(`marking-early-verify-${counter++}.mjs`);
    fs.writeFileSync(helper, `import * as fs from 'node:fs';\nfs.writeFileSync(${JSON.stringify(marker)}, 'ran');\nawait import(${JSON.stringify(pathToFileURL(builtHelperChunk('early-verify-worker')).href)});\n`);
    const backend = startBackend({ maxThreads: 1, workerSettings: { compressionThreads: 2, earlyVerifyWorker: helper } });
    try {
      const { path } = makeSnapshottedDisk(folder.path, `early-${counter++}.qcow2`, 40);
      const before = allStateDigests(path);
      const summary = await run<RewriteSummary>(backend, 'image.compress', path, { compressionType: 'zstd' });
      expect(summary.verified).toBe(true);
      expect(fs.readFileSync(marker, 'utf8')).toBe('ran');
      expect(allStateDigests(path)).toEqual(before);
      const check = qemuCheckReport(path);
      expect(check.code).toBe(0);
      expect(check.compressedClusters).toBeGreaterThan(0);
    } finally {
      await backend.close();
    }
  }, 120_000);

  it('a compact job whose helper module is missing still compacts the disk right, on its own thread', async () => {
    const backend = startBackend({ maxThreads: 1, workerSettings: { compressionThreads: 1, earlyVerifyWorker: folder.file('no-such-helper.js') } });
    try {
      const { path } = makeSnapshottedDisk(folder.path, `early-${counter++}.qcow2`, 40);
      const before = allStateDigests(path);
      const summary = await run<RewriteSummary>(backend, 'image.compact', path, {});
      expect(summary.verified).toBe(true);
      expect(allStateDigests(path)).toEqual(before);
      expect(qemuCheckReport(path).code).toBe(0);
    } finally {
      await backend.close();
    }
  }, 120_000);
});
