/**
 * A rewrite's comparison started early on a helper thread (rewrite/early-verify.ts): it confirms
 * only runs it read back equal from both files, never reads a run before the copy says it is in
 * the file, costs nothing but the final comparison's time when its thread cannot start, and cannot
 * hide a bad copy: the final comparison still reads what the helper did not confirm. Through a
 * whole compact, the final comparison then reads back only a small part of the data.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { compressCluster, type CompressionType } from '../../../src/shared/qcow2/codec/compression.ts';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { compressedEntrySize } from '../../../src/shared/qcow2/format/entries.ts';
import { NodeBlockFile, type BlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { HELPER_START_MS, resetHelperThreadNotice } from '../../../src/shared/qcow2/io/helper-threads.ts';
import { ClusterPairs, OUTPUT_UNALLOCATED, OUTPUT_ZERO } from '../../../src/shared/qcow2/rewrite/cluster-pairs.ts';
import { startEarlyVerifier, type EarlyVerifier } from '../../../src/shared/qcow2/rewrite/early-verify.ts';
import { rewriteImage } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { tempDir, type TempDir } from '../../helpers/qemu.ts';
import { compressibleBytes } from '../../helpers/seeded-random.ts';
import { makeSnapshottedDisk, qemuCheckReport } from '../../helpers/rewrite-disks.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());
afterEach(() => resetHelperThreadNotice());

const CLUSTER = 64 * 1024;

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** A source of `clusters` random clusters and an empty output file, both open. */
function filePair(name: string, clusters: number): { sourceBytes: Buffer; source: NodeBlockFile; output: NodeBlockFile; close(): void } {
  const sourcePath = path.join(folder.path, `${name}.source`);
  const outputPath = path.join(folder.path, `${name}.output`);
  const sourceBytes = randomBytes(clusters * CLUSTER);
  fs.writeFileSync(sourcePath, sourceBytes);
  fs.writeFileSync(outputPath, '');
  const source = NodeBlockFile.open(sourcePath, { readOnly: true });
  const output = NodeBlockFile.open(outputPath);
  return {
    sourceBytes,
    source,
    output,
    close: () => {
      source.close();
      output.close();
    },
  };
}

function started(source: BlockFile, output: BlockFile): EarlyVerifier {
  const verifier = startEarlyVerifier(source, output, CLUSTER);
  if (verifier === null) throw new Error('no early verifier started');
  return verifier;
}

/**
 * How long a test waits for the helper thread to start: a rewrite gives up on it after
 * HELPER_START_MS, which a loaded machine (CI, two test workers on two cores) can pass, and these
 * tests are about what the helper confirms once it runs.
 */
const STARTED_WITHIN_MS = 60_000;

/** [source cluster, output cluster] for each of the source's `clusters` clusters the verifier confirmed, from its finish. */
function confirmedBy(verifier: EarlyVerifier, clusters: number): [number, number][] {
  expect(verifier.finish(STARTED_WITHIN_MS), 'the helper ran').toBe(true);
  const pairs = verifier.confirmed;
  const found: [number, number][] = [];
  for (let source = 0; source < clusters; source++) {
    for (let output = 0; output < 4 * clusters; output++) if (pairs.has(source * CLUSTER, output * CLUSTER)) found.push([source, output]);
  }
  return found;
}

describe('the early verifier', () => {
  it('confirms the runs it read back equal, in order, up to the first that differs', () => {
    const files = filePair('differs', 12);
    try {
      const verifier = started(files.source, files.output);
      // Source clusters 4-7 → output 0-3, then 0 → 4 (damaged), 9-11 → 5-7 and 1-3 → 8-10.
      const copy = (sourceCluster: number, outputCluster: number, clusters: number): void => {
        files.output.write(files.sourceBytes.subarray(sourceCluster * CLUSTER, (sourceCluster + clusters) * CLUSTER), outputCluster * CLUSTER);
        verifier.add(sourceCluster * CLUSTER, outputCluster * CLUSTER, clusters);
      };
      copy(4, 0, 4);
      copy(0, 4, 1);
      const damaged = Buffer.from(files.sourceBytes.subarray(0, CLUSTER));
      damaged[777] = (damaged[777] ?? 0) ^ 1;
      files.output.write(damaged, 4 * CLUSTER);
      copy(9, 5, 3);
      copy(1, 8, 3);
      const confirmed = confirmedBy(verifier, 12);
      expect(confirmed).toEqual([4, 5, 6, 7].map((source) => [source, source - 4]));
    } finally {
      files.close();
    }
  });

  it('confirms a faithful copy whole, handed over as it is written', () => {
    const files = filePair('faithful', 300);
    try {
      const verifier = started(files.source, files.output);
      for (let cluster = 0; cluster < 300; cluster++) {
        files.output.write(files.sourceBytes.subarray(cluster * CLUSTER, (cluster + 1) * CLUSTER), cluster * CLUSTER);
        verifier.add(cluster * CLUSTER, cluster * CLUSTER, 1);
        if (cluster % 20 === 19) verifier.publish((cluster + 1) * CLUSTER);
      }
      expect(confirmedBy(verifier, 300)).toEqual(Array.from({ length: 300 }, (_, cluster) => [cluster, cluster]));
    } finally {
      files.close();
    }
  });

  it('confirms zeros left out only where the source reads all zeros, whatever the output file holds', () => {
    const files = filePair('zeros', 6);
    try {
      // Source clusters 2-3 and 5 zeroed; 4 stays random.
      files.sourceBytes.fill(0, 2 * CLUSTER, 4 * CLUSTER);
      files.sourceBytes.fill(0, 5 * CLUSTER);
      fs.writeFileSync(files.source.path, files.sourceBytes);
      const verifier = started(files.source, files.output);
      verifier.addZeros(2 * CLUSTER, OUTPUT_ZERO, 1);
      verifier.addZeros(3 * CLUSTER, OUTPUT_ZERO, 1);
      verifier.addZeros(5 * CLUSTER, OUTPUT_UNALLOCATED, 1);
      verifier.finish(STARTED_WITHIN_MS);
      const pairs = verifier.confirmed;
      expect([2, 3].map((cluster) => pairs.has(cluster * CLUSTER, OUTPUT_ZERO))).toEqual([true, true]);
      expect(pairs.has(5 * CLUSTER, OUTPUT_UNALLOCATED)).toBe(true);
      expect(pairs.has(5 * CLUSTER, OUTPUT_ZERO)).toBe(false);

      // A cluster of data claimed to be zeros is not confirmed, nor anything handed over after it.
      const wrong = started(files.source, files.output);
      wrong.addZeros(4 * CLUSTER, OUTPUT_ZERO, 1);
      wrong.addZeros(5 * CLUSTER, OUTPUT_ZERO, 1);
      wrong.finish(STARTED_WITHIN_MS);
      const none = wrong.confirmed;
      expect([4, 5].map((cluster) => none.has(cluster * CLUSTER, OUTPUT_ZERO))).toEqual([false, false]);
    } finally {
      files.close();
    }
  });

  it('reads no run before the copy says it is in the file', () => {
    const files = filePair('unwritten', 6);
    try {
      const verifier = started(files.source, files.output);
      const run = (cluster: number): Buffer => files.sourceBytes.subarray(cluster * CLUSTER, (cluster + 2) * CLUSTER);
      // Three runs of two clusters, apart in the output: source 0 → 0, 2 → 3, 4 → 6.
      files.output.write(run(0), 0);
      verifier.add(0, 0, 2);
      verifier.add(2 * CLUSTER, 3 * CLUSTER, 2);
      verifier.add(4 * CLUSTER, 6 * CLUSTER, 2);
      // Only the first run is in the file; the helper has time to read whatever it was given.
      verifier.publish(2 * CLUSTER);
      sleep(300);
      files.output.write(run(2), 3 * CLUSTER);
      files.output.write(run(4), 6 * CLUSTER);
      expect(confirmedBy(verifier, 6)).toEqual([0, 1].map((source) => [source, source]).concat([2, 3].map((source) => [source, source + 1]), [4, 5].map((source) => [source, source + 2])));
    } finally {
      files.close();
    }
  });

  it('hands over no more runs than its ring holds at once; the rest are left to the final comparison, none confirmed wrongly', () => {
    // 5,000 runs of one 512-byte cluster, none continuing the last (sources in reverse order), handed over at the end only.
    const small = 512;
    const runs = 5000;
    const sourcePath = path.join(folder.path, 'ring.source');
    const outputPath = path.join(folder.path, 'ring.output');
    const bytes = randomBytes(runs * small);
    fs.writeFileSync(sourcePath, bytes);
    const reversed = Buffer.alloc(runs * small);
    for (let index = 0; index < runs; index++) bytes.copy(reversed, index * small, (runs - 1 - index) * small, (runs - index) * small);
    fs.writeFileSync(outputPath, reversed);
    const source = NodeBlockFile.open(sourcePath, { readOnly: true });
    const output = NodeBlockFile.open(outputPath, { readOnly: true });
    try {
      const verifier = startEarlyVerifier(source, output, small);
      if (verifier === null) throw new Error('no early verifier started');
      for (let index = 0; index < runs; index++) verifier.add((runs - 1 - index) * small, index * small, 1);
      verifier.finish(STARTED_WITHIN_MS);
      const pairs = verifier.confirmed;
      // The ring holds 4,096 runs: the first 4,096 handed over are confirmed, the rest are not.
      const confirmed = Array.from({ length: runs }, (_, index) => pairs.has((runs - 1 - index) * small, index * small));
      expect(confirmed.slice(0, 4096).every(Boolean)).toBe(true);
      expect(confirmed.slice(4096).some(Boolean)).toBe(false);
    } finally {
      source.close();
      output.close();
    }
  });

  it('whose thread fails to start confirms nothing, does not hold the rewrite up, and says so once', async () => {
    const files = filePair('no-thread', 2);
    const notices: string[] = [];
    resetHelperThreadNotice((line) => notices.push(line));
    try {
      const verifier = startEarlyVerifier(files.source, files.output, CLUSTER, 0, path.join(folder.path, 'missing-worker.mjs'));
      if (verifier === null) throw new Error('the thread was refused before it started');
      files.output.write(files.sourceBytes, 0);
      verifier.add(0, 0, 2);
      sleep(500);
      // Given up on at its start limit: never waited for (a helper that runs is waited for until it stops or stalls for seconds).
      expect(verifier.finish(HELPER_START_MS)).toBe(false);
      const pairs = verifier.confirmed;
      expect([pairs.has(0, 0), pairs.has(CLUSTER, CLUSTER)]).toEqual([false, false]);
      // The thread's failure reaches the event loop once this thread is free again.
      for (let waited = 0; notices.length === 0 && waited < 5_000; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(notices.join('')).toMatch(/helper thread failed/);
    } finally {
      files.close();
    }
  });

  it('leaves a run it cannot read to the final comparison, quietly (that comparison reports the error)', async () => {
    const files = filePair('unreadable', 2);
    const notices: string[] = [];
    resetHelperThreadNotice((line) => notices.push(line));
    try {
      const verifier = started(files.source, files.output);
      files.output.write(files.sourceBytes, 0);
      verifier.add(0, 0, 2);
      // The source's descriptor goes away before the helper reads it.
      files.source.close();
      verifier.finish();
      const pairs = verifier.confirmed;
      expect([0, 1].map((cluster) => pairs.has(cluster * CLUSTER, cluster * CLUSTER))).toEqual([false, false]);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(notices).toEqual([]);
    } finally {
      files.output.close();
    }
  });

  describe.each([
    { type: 0 as const, name: 'zlib' },
    { type: 1 as const, name: 'zstd' },
  ])('with clusters compressed on the way ($name)', ({ type }) => {
    /** Source clusters of text, each compressed and packed byte by byte into the output as a rewrite does; where each went. */
    function packed(files: { sourceBytes: Buffer; output: NodeBlockFile }, clusters: number[], at = 1000): { outputHost: number; length: number }[] {
      const placed: { outputHost: number; length: number }[] = [];
      for (const cluster of clusters) {
        const bytes = compressCluster(type, files.sourceBytes.subarray(cluster * CLUSTER, (cluster + 1) * CLUSTER));
        if (bytes === null) throw new Error('text did not compress');
        files.output.write(bytes, at);
        placed.push({ outputHost: at, length: bytes.length });
        at += bytes.length;
      }
      return placed;
    }

    function packedOne(files: { sourceBytes: Buffer; output: NodeBlockFile }, cluster: number, at: number): { outputHost: number; length: number } {
      const [one] = packed(files, [cluster], at);
      if (one === undefined) throw new Error('nothing packed');
      return one;
    }

    function textPair(name: string, clusters: number): ReturnType<typeof filePair> {
      const files = filePair(name, clusters);
      files.sourceBytes.set(compressibleBytes(clusters * CLUSTER, 3));
      fs.writeFileSync(files.source.path, files.sourceBytes);
      return files;
    }

    it('confirms each compressed cluster that decompresses, as its entry will name it, to its source cluster; none after one that does not', () => {
      const files = textPair(`compressed-${type}`, 6);
      try {
        const verifier = startEarlyVerifier(files.source, files.output, CLUSTER, type);
        if (verifier === null) throw new Error('no early verifier started');
        const sources = [5, 0, 3, 1];
        const placed = packed(files, sources);
        placed.forEach(({ outputHost, length }, index) => verifier.addCompressed((sources[index] ?? 0) * CLUSTER, outputHost, length));
        // Source cluster 2 claimed to be what cluster 4 compressed to.
        const wrong = packedOne(files, 4, 200_000);
        verifier.addCompressed(2 * CLUSTER, wrong.outputHost, wrong.length);
        const after = packedOne(files, 4, 300_000);
        verifier.addCompressed(4 * CLUSTER, after.outputHost, after.length);
        expect(verifier.finish(STARTED_WITHIN_MS), 'the helper ran').toBe(true);
        // Each pair with the stored size its L2 entry reads back (the final comparison's key).
        placed.forEach(({ outputHost, length }, index) => {
          const source = (sources[index] ?? 0) * CLUSTER;
          expect(verifier.confirmed.has(source, outputHost, compressedEntrySize(outputHost, length)), `source cluster ${source / CLUSTER}`).toBe(true);
          expect(verifier.confirmed.has(source, outputHost, length === compressedEntrySize(outputHost, length) ? length + 1 : length)).toBe(false);
        });
        expect(verifier.confirmed.has(2 * CLUSTER, wrong.outputHost, compressedEntrySize(wrong.outputHost, wrong.length))).toBe(false);
        expect(verifier.confirmed.has(4 * CLUSTER, after.outputHost, compressedEntrySize(after.outputHost, after.length))).toBe(false);
      } finally {
        files.close();
      }
    });

    it('confirms compressed data kept as stored only where its stream reads the same on both sides, and all of it', () => {
      const files = textPair(`kept-${type}`, 4);
      try {
        const stream = compressCluster(type, files.sourceBytes.subarray(0, CLUSTER));
        if (stream === null) throw new Error('text did not compress');
        // The source stores the stream at 1000 (its entry names 600 bytes more, the next cluster's).
        const sourceSize = compressedEntrySize(1000, stream.length + 600);
        const source = Buffer.from(files.sourceBytes);
        source.set(stream, 1000);
        fs.writeFileSync(files.source.path, source);
        const verifier = startEarlyVerifier(files.source, files.output, CLUSTER, type);
        if (verifier === null) throw new Error('no early verifier started');
        // Kept at 70,000; at 140,000 with its last byte changed; at 210,000 cut short by the end of the file.
        const changed = Uint8Array.from(stream);
        changed[changed.length - 1] = (changed[changed.length - 1] ?? 0) ^ 0x40;
        files.output.write(stream, 70_000);
        files.output.write(changed, 140_000);
        files.output.write(stream.subarray(0, stream.length - 1), 210_000);
        verifier.addKeptCompressed(1000, sourceSize, 70_000, stream.length);
        verifier.publish(300_000);
        verifier.addKeptCompressed(1000, sourceSize, 140_000, stream.length);
        verifier.publish(300_000);
        expect(verifier.finish(STARTED_WITHIN_MS)).toBe(true);
        expect(verifier.confirmedCompressed.has(1000, sourceSize, 70_000, compressedEntrySize(70_000, stream.length))).toBe(true);
        expect(verifier.confirmedCompressed.has(1000, sourceSize, 140_000, compressedEntrySize(140_000, stream.length))).toBe(false);
        // A cluster's pair is never entered for data that was compressed at the source.
        expect(verifier.confirmed.has(0, 70_000, compressedEntrySize(70_000, stream.length))).toBe(false);

        const short = startEarlyVerifier(files.source, files.output, CLUSTER, type);
        if (short === null) throw new Error('no early verifier started');
        fs.truncateSync(files.output.path, 210_000 + stream.length - 1);
        short.addKeptCompressed(1000, sourceSize, 210_000, stream.length);
        expect(short.finish(STARTED_WITHIN_MS)).toBe(true);
        expect(short.confirmedCompressed.has(1000, sourceSize, 210_000, compressedEntrySize(210_000, stream.length))).toBe(false);
      } finally {
        files.close();
      }
    });

    it('reads no compressed cluster before the copy has written to the end of its last sector', () => {
      const files = textPair(`compressed-unwritten-${type}`, 2);
      try {
        const verifier = startEarlyVerifier(files.source, files.output, CLUSTER, type);
        if (verifier === null) throw new Error('no early verifier started');
        const bytes = compressCluster(type, files.sourceBytes.subarray(0, CLUSTER));
        if (bytes === null) throw new Error('text did not compress');
        verifier.addCompressed(0, 700, bytes.length);
        // Written up to the data's end, but not to its sector's: not yet handed over.
        verifier.publish(700 + bytes.length);
        sleep(300);
        files.output.write(bytes, 700);
        expect(verifier.finish(STARTED_WITHIN_MS)).toBe(true);
        expect(verifier.confirmed.has(0, 700, compressedEntrySize(700, bytes.length))).toBe(true);
      } finally {
        files.close();
      }
    });
  });

  it('starts only over files with descriptors (a test\'s own file has none)', () => {
    const files = filePair('no-descriptor', 1);
    try {
      const bare: BlockFile = { path: 'bare', readOnly: true, read: (buffer, position) => files.source.read(buffer, position), write() {}, flush() {}, size: () => files.source.size(), truncate() {}, close() {} };
      expect(startEarlyVerifier(bare, files.output, CLUSTER)).toBeNull();
    } finally {
      files.close();
    }
  });
});

/** The source, opened as the rewrite would, with what it reads counted by stage, and one cluster's reads damaged while a stage runs. */
function countingSource(reads: Map<string, number>, stage: () => string, damage?: { hostOffset: number; during: string }): (filePath: string) => BlockFile {
  return (filePath) => {
    const inner = NodeBlockFile.open(filePath, { guard: true });
    return {
      path: inner.path,
      readOnly: true,
      descriptor: inner.descriptor,
      read(buffer, position) {
        const count = inner.read(buffer, position);
        reads.set(stage(), (reads.get(stage()) ?? 0) + count);
        if (damage !== undefined && stage() === damage.during && position <= damage.hostOffset && damage.hostOffset < position + count) {
          const at = damage.hostOffset - position;
          buffer[at] = (buffer[at] ?? 0) ^ 0x20;
        }
        return count;
      },
      write: (buffer, position) => inner.write(buffer, position),
      flush: () => inner.flush(),
      size: () => inner.size(),
      truncate: (size) => inner.truncate(size),
      close: () => inner.close(),
    } as BlockFile & { descriptor: number };
  };
}

/** The host offset of a data cluster qemu-img maps for the current state at `guestOffset`. */
function hostOffsetOf(image: string, guestOffset: number): number {
  const map = JSON.parse(execFileSync('qemu-img', ['map', '-U', '--output=json', image], { encoding: 'utf8' })) as { start: number; length: number; data: boolean; offset?: number }[];
  const extent = map.find((each) => each.data && each.offset !== undefined && each.start <= guestOffset && guestOffset < each.start + each.length);
  if (extent?.offset === undefined) throw new Error(`nothing stored at ${guestOffset}`);
  return extent.offset + (guestOffset - extent.start);
}

/** What the final comparison of a compact of the compressed test disk reads of it at least, alone. */
const KEPT_MIN_BYTES = 1024 * 1024;

describe('a compact with the early verifier', () => {
  let source: string;
  beforeAll(() => {
    const dir = path.join(folder.path, 'compact');
    fs.mkdirSync(dir);
    source = makeSnapshottedDisk(dir, 'source.qcow2', 48).path;
    // 8 MiB written as zeros (allocated data clusters holding zeros, as a guest's zeroed free space): the compact leaves them out.
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -P 0 ${40 * 1024 * 1024} ${8 * 1024 * 1024}`, source]);
  }, 120_000);

  function compact(target: string, options: { earlyVerify: boolean; damage?: { hostOffset: number; during: string }; compress?: CompressionType; from?: string }): Map<string, number> {
    const reads = new Map<string, number>();
    let stage = '';
    const compression = options.compress === undefined ? { compression: 'keep' as const } : { compression: 'compress' as const, compressionType: options.compress, compressionThreads: 2, compressStartMs: STARTED_WITHIN_MS };
    rewriteImage(
      { source: options.from ?? source, target, ...compression, earlyVerify: options.earlyVerify, earlyVerifyStartMs: STARTED_WITHIN_MS, openFile: countingSource(reads, () => stage, options.damage) },
      { progress: (name) => (stage = name), throwIfCancelled() {} },
    );
    return reads;
  }

  /** Every state of `copy` reads as the source's, for qemu-img. */
  function expectSameStates(copy: string, original = source): void {
    for (const snapshot of ['installed', 'updated', null]) {
      const args = snapshot === null ? [] : ['-l', `snapshot.name=${snapshot}`];
      const raw = (image: string): Buffer => {
        const file = `${image}.${snapshot ?? 'current'}.raw`;
        execFileSync('qemu-img', ['convert', '-U', '-O', 'raw', ...args, image, file]);
        const bytes = fs.readFileSync(file);
        fs.rmSync(file);
        return bytes;
      };
      expect(raw(copy).equals(raw(original)), `state ${snapshot ?? 'current'}`).toBe(true);
    }
  }

  it('leaves the final comparison to read back only what the helper did not confirm (zeros left out included), and the copy is sound', () => {
    const early = path.join(folder.path, 'compact', 'early.qcow2');
    const late = path.join(folder.path, 'compact', 'late.qcow2');
    const withHelper = compact(early, { earlyVerify: true }).get('verifying') ?? 0;
    const alone = compact(late, { earlyVerify: false }).get('verifying') ?? 0;
    // Alone, the final comparison reads every data cluster of the source (48 MiB and more).
    expect(alone).toBeGreaterThan(48 * 1024 * 1024);
    // With the helper: nothing, or a table or two the source's cache let go (without it, the 8 MiB of zeros at least).
    expect(withHelper).toBeLessThan(1024 * 1024);
    expect(qemuCheckReport(early).code).toBe(0);
    expectSameStates(early);
  }, 120_000);

  it.each([0, 1] as const)('leaves the final comparison of a compress (type %i) little to read back: the helper decompressed and compared what the copy compressed', (type) => {
    const early = path.join(folder.path, 'compact', `compressed-early-${type}.qcow2`);
    const late = path.join(folder.path, 'compact', `compressed-late-${type}.qcow2`);
    const withHelper = compact(early, { earlyVerify: true, compress: type }).get('verifying') ?? 0;
    const alone = compact(late, { earlyVerify: false, compress: type }).get('verifying') ?? 0;
    expect(alone).toBeGreaterThan(48 * 1024 * 1024);
    expect(withHelper).toBeLessThan(1024 * 1024);
    const report = qemuCheckReport(early);
    expect(report.code).toBe(0);
    expect(report.compressedClusters).toBeGreaterThan(0);
    expectSameStates(early);
  }, 120_000);

  it.each([0, 1] as const)('leaves the final comparison of a compact of a compressed disk (type %i) little to read back: the helper compared the compressed data kept as stored', (type) => {
    const compressed = path.join(folder.path, 'compact', `compressed-source-${type}.qcow2`);
    rewriteImage({ source, target: compressed, compression: 'compress', compressionType: type });
    const early = path.join(folder.path, 'compact', `kept-early-${type}.qcow2`);
    const late = path.join(folder.path, 'compact', `kept-late-${type}.qcow2`);
    const withHelper = compact(early, { earlyVerify: true, from: compressed }).get('verifying') ?? 0;
    const alone = compact(late, { earlyVerify: false, from: compressed }).get('verifying') ?? 0;
    // Alone, the final comparison reads every compressed cluster of the source; with the helper, a table or two at most.
    expect(alone).toBeGreaterThan(KEPT_MIN_BYTES);
    expect(withHelper).toBeLessThan(alone / 20);
    const report = qemuCheckReport(early);
    expect(report.code).toBe(0);
    expect(report.compressedClusters).toBe(qemuCheckReport(compressed).compressedClusters);
    expectSameStates(early);
  }, 120_000);

  it.each([undefined, 1] as const)('still fails, and writes nothing, when the copy differs from the source (compressed: %s)', (compress) => {
    const target = path.join(folder.path, 'compact', `damaged-${compress ?? 'plain'}.qcow2`);
    // The copy reads one byte wrong; the helper and the final comparison read it right.
    const damage = { hostOffset: hostOffsetOf(source, 20 * 1024 * 1024) + 4321, during: 'copying' };
    let error: unknown = null;
    try {
      compact(target, { earlyVerify: true, damage, compress });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(Qcow2Error);
    expect((error as Qcow2Error).code).toBe('INTERNAL');
    expect((error as Qcow2Error).message).toMatch(/failed its check against the original/);
    expect(fs.existsSync(target)).toBe(false);
    expect(fs.readdirSync(path.dirname(target)).filter((name) => name.includes(path.basename(target, '.qcow2')))).toEqual([]);
  }, 120_000);
});

describe('the pairs the final comparison skips (ClusterPairs)', () => {
  it('holds one output cluster per source cluster, the last set, and forgets none within the file', () => {
    const pairs = new ClusterPairs(10 * CLUSTER - 100, CLUSTER);
    expect(pairs.has(0, 0)).toBe(false);
    pairs.set(9 * CLUSTER, 3 * CLUSTER);
    pairs.set(2 * CLUSTER, 5 * CLUSTER);
    pairs.set(2 * CLUSTER, 6 * CLUSTER);
    expect(pairs.has(9 * CLUSTER, 3 * CLUSTER)).toBe(true);
    expect(pairs.has(2 * CLUSTER, 5 * CLUSTER)).toBe(false);
    expect(pairs.has(2 * CLUSTER, 6 * CLUSTER)).toBe(true);
  });

  it('does not remember a cluster past the end of the source file (compared again each time, never skipped)', () => {
    const pairs = new ClusterPairs(4 * CLUSTER, CLUSTER);
    pairs.set(4 * CLUSTER, 0);
    expect(pairs.has(4 * CLUSTER, 0)).toBe(false);
  });
});
