/**
 * Compress, compact and convert keeping snapshots, on a 512 MiB mixed disk (and the same disk
 * with 3 snapshots), each beside qemu-img doing the nearest work in the same run: `convert -c -W`
 * (which drops snapshots) for compress, `convert` for compact and convert, both flushing their output
 * (-t writeback) unless a row says otherwise. Targets (issue 18):
 * compress ≤ 1.0 × `qemu-img convert -c -W` (zlib, and zstd beside it), size ≤ 1.03 × qemu-img's
 * output for the disk without snapshots; compact and convert ≤ 1.0 × `qemu-img convert`; peak memory ≤ 160 MiB.
 * With snapshots, the size is set against what qemu-img needs to keep the same states: one
 * export per snapshot (`-l`) plus the current state, each compressed. Two informational rows time
 * compact where the tables, not the data, are the work: a 16 TiB sparse disk and 300 snapshots.
 * One more compacts the disk with snapshots after a compress, where the compressed clusters are kept.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compareRuns, cowbellCli, measureCowbell, measureQemuImg } from './lib.ts';
import { writeMixedImage } from './mixed-image.ts';

const MiB = 1024 * 1024;
const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'cowbell-bench-rewrite-'));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

const size = (file: string): number => fs.statSync(file).size;

/** Cowbell's output size over qemu-img's, for the note. */
const sizeRatio = (cowbellOutput: string, qemuOutput: string): string =>
  `; size ${(size(cowbellOutput) / MiB).toFixed(0)} MiB = ${(size(cowbellOutput) / size(qemuOutput)).toFixed(3)} × qemu-img's`;

/** qemu-io commands against `image`, 100 to a process. */
function qemuIo(image: string, commands: string[]): void {
  for (let start = 0; start < commands.length; start += 100) {
    const result = spawnSync('qemu-io', ['-f', 'qcow2', ...commands.slice(start, start + 100).flatMap((command) => ['-c', command]), image], { encoding: 'utf8' });
    if (result.status !== 0 || /error|failed/i.test(result.stdout + result.stderr)) throw new Error(`qemu-io failed:\n${result.stdout}${result.stderr}`);
  }
}

/** The disk with three snapshots and 32 MiB rewritten between each (random and text data moved around). */
function withSnapshots(source: string, target: string): void {
  fs.copyFileSync(source, target);
  for (let index = 0; index < 3; index++) {
    measureQemuImg(['snapshot', '-c', `s${index}`, target]);
    const raw = path.join(folder, `patch-${index}.raw`);
    writeMixedImage(raw, 32 * MiB, 0x1000 + index);
    // The patch lands at a different place each time (qemu-io's write -s takes its data from a file).
    qemuIo(target, [`write -s ${raw} ${(index * 96 + 16) * MiB} ${32 * MiB}`]);
  }
}

/** A 16 TiB disk holding 1 MiB every 80 GiB (200 MiB in all), and one snapshot: most of every table is empty. */
function sparseHugeDisk(target: string): void {
  measureQemuImg(['create', '-f', 'qcow2', target, '16T']);
  qemuIo(target, Array.from({ length: 200 }, (_, index) => `write -P ${(index % 250) + 1} ${index * 80}G 1M`));
  measureQemuImg(['snapshot', '-c', 's1', target]);
}

/** An 8 GiB disk with 300 snapshots, 1 MiB written before each: 300 states, each with its own copy of one L2 table. */
function manySnapshotsDisk(target: string): void {
  measureQemuImg(['create', '-f', 'qcow2', target, '8G']);
  for (let index = 1; index <= 300; index++) {
    qemuIo(target, [`write -P ${(index % 250) + 1} ${index * 16}M 1M`]);
    measureQemuImg(['snapshot', '-c', `snap${index}`, target]);
  }
}

/** What qemu-img needs to keep every state of `image` compressed: one export per snapshot plus the current state. */
function qemuPerStateBytes(image: string): number {
  let total = 0;
  for (const name of ['s0', 's1', 's2', null]) {
    const output = path.join(folder, `state-${name ?? 'current'}.qcow2`);
    measureQemuImg(['convert', '-c', '-W', '-O', 'qcow2', ...(name === null ? [] : ['-l', `snapshot.name=${name}`]), image, output]);
    total += size(output);
    fs.rmSync(output);
  }
  return total;
}

try {
  const raw = path.join(folder, 'mixed.raw');
  const plain = path.join(folder, 'plain.qcow2');
  const snapshotted = path.join(folder, 'snapshots.qcow2');
  process.stderr.write(`making a 512 MiB mixed disk in ${folder}\n`);
  writeMixedImage(raw, 512 * MiB);
  measureQemuImg(['convert', '-f', 'raw', '-O', 'qcow2', raw, plain]);
  withSnapshots(plain, snapshotted);
  // Untimed: warms Node's compile cache for the Cowbell runs.
  measureCowbell(['compact', plain, path.join(folder, 'warm.qcow2')]);
  fs.rmSync(path.join(folder, 'warm.qcow2'));

  // The same work means the same cache mode: both flush the output (-t writeback), unless a row says otherwise.
  const qemuCompressW = (source: string) => (output: string) => ['convert', '-t', 'writeback', '-c', '-W', '-O', 'qcow2', source, output];
  const qemuCompress = (source: string) => (output: string) => ['convert', '-t', 'writeback', '-c', '-O', 'qcow2', source, output];
  const qemuCopy = (source: string) => (output: string) => ['convert', '-t', 'writeback', '-O', 'qcow2', source, output];
  const qemuCopyUnsafe = (source: string) => (output: string) => ['convert', '-O', 'qcow2', source, output];
  const base = { folder, extension: 'qcow2', rounds: ROUNDS };

  await compareRuns({
    ...base,
    name: 'compress 512 MiB (qemu-img convert -c -W)',
    note: 'target ≤ 1.0, size ≤ 1.03, ≤ 160 MiB',
    runCowbell: cowbellCli((output) => ['compress', plain, output]),
    qemuArgs: qemuCompressW(plain),
    inspect: sizeRatio,
  });
  await compareRuns({
    ...base,
    name: 'compress 512 MiB with zstd (qemu-img convert -c -W, zstd)',
    note: 'target ≤ 1.0, ≤ 160 MiB',
    runCowbell: cowbellCli((output) => ['compress', '-o', 'compression_type=zstd', plain, output]),
    qemuArgs: (output) => ['convert', '-t', 'writeback', '-c', '-W', '-O', 'qcow2', '-o', 'compression_type=zstd', plain, output],
    inspect: sizeRatio,
  });
  await compareRuns({
    ...base,
    name: 'compress 512 MiB, --no-verify (qemu-img convert -c -W)',
    note: 'informational: without the final comparison of every state',
    runCowbell: cowbellCli((output) => ['compress', '--no-verify', plain, output]),
    qemuArgs: qemuCompressW(plain),
  });
  await compareRuns({
    ...base,
    name: 'compress 512 MiB (qemu-img convert -c, one core)',
    note: 'informational: qemu-img without out-of-order writes',
    runCowbell: cowbellCli((output) => ['compress', plain, output]),
    qemuArgs: qemuCompress(plain),
  });
  const perState = qemuPerStateBytes(snapshotted);
  await compareRuns({
    ...base,
    name: 'compress 512 MiB + 3 snapshots (qemu-img -c -W drops them)',
    note: 'target ≤ 1.0, ≤ 160 MiB',
    runCowbell: cowbellCli((output) => ['compress', snapshotted, output]),
    qemuArgs: qemuCompressW(snapshotted),
    inspect: (cowbellOutput) => `; size ${(size(cowbellOutput) / MiB).toFixed(0)} MiB with every state, qemu-img's exports of the 4 states ${(perState / MiB).toFixed(0)} MiB (${(size(cowbellOutput) / perState).toFixed(2)} ×)`,
  });
  await compareRuns({
    ...base,
    name: 'compact 512 MiB + 3 snapshots (qemu-img convert)',
    note: 'target ≤ 1.0, ≤ 160 MiB; qemu-img drops the snapshots',
    runCowbell: cowbellCli((output) => ['compact', snapshotted, output]),
    qemuArgs: qemuCopy(snapshotted),
    inspect: sizeRatio,
  });
  await compareRuns({
    ...base,
    name: 'convert qcow2→qcow2 512 MiB + 3 snapshots (qemu-img convert)',
    note: 'target ≤ 1.0, ≤ 160 MiB; qemu-img drops the snapshots',
    runCowbell: cowbellCli((output) => ['convert', '-O', 'qcow2', snapshotted, output]),
    qemuArgs: qemuCopy(snapshotted),
    inspect: sizeRatio,
  });
  await compareRuns({
    ...base,
    name: 'compact 512 MiB + 3 snapshots, --no-verify (qemu-img convert)',
    note: 'informational: without the final comparison of every state',
    runCowbell: cowbellCli((output) => ['compact', '--no-verify', snapshotted, output]),
    qemuArgs: qemuCopy(snapshotted),
  });
  await compareRuns({
    ...base,
    name: 'compact 512 MiB + 3 snapshots, neither flushed (-t unsafe)',
    note: 'informational: qemu-img convert\'s default cache mode on both sides',
    runCowbell: cowbellCli((output) => ['compact', '-t', 'unsafe', snapshotted, output]),
    qemuArgs: qemuCopyUnsafe(snapshotted),
  });
  // A disk compressed earlier, compacted later (after a snapshot delete, say): its compressed
  // clusters are kept as stored. qemu-img's convert decompresses them into a plain copy.
  const compressedSnapshotted = path.join(folder, 'compressed-snapshots.qcow2');
  measureCowbell(['compress', snapshotted, compressedSnapshotted]);
  await compareRuns({
    ...base,
    name: 'compact a compressed 512 MiB disk + 3 snapshots (qemu-img convert)',
    note: 'target ≤ 1.0, ≤ 160 MiB (as compact); qemu-img drops the snapshots and stores the data uncompressed',
    runCowbell: cowbellCli((output) => ['compact', compressedSnapshotted, output]),
    qemuArgs: qemuCopy(compressedSnapshotted),
    inspect: sizeRatio,
  });
  // Shapes whose cost is in the tables rather than the data (informational: no target).
  const sparse = path.join(folder, 'sparse-16t.qcow2');
  sparseHugeDisk(sparse);
  await compareRuns({
    ...base,
    name: 'compact 16 TiB sparse disk, 200 MiB + 1 snapshot (qemu-img convert)',
    note: 'informational: qemu-img drops the snapshot',
    runCowbell: cowbellCli((output) => ['compact', sparse, output]),
    qemuArgs: qemuCopy(sparse),
  });
  const many = path.join(folder, 'many-snapshots.qcow2');
  manySnapshotsDisk(many);
  await compareRuns({
    ...base,
    name: 'compact 8 GiB disk with 300 snapshots, 300 MiB (qemu-img convert)',
    note: 'informational: qemu-img drops the snapshots',
    runCowbell: cowbellCli((output) => ['compact', many, output]),
    qemuArgs: qemuCopy(many),
  });
} finally {
  fs.rmSync(folder, { recursive: true, force: true });
}
