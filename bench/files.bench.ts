/**
 * Files inside a state (issue 22), beside the tools that read the same bytes, in the same run:
 *  - restore: `cowbell copy-out` of a 100 MiB file from an ext4 guest in a qcow2 image, beside
 *    `qemu-img convert -O raw` of a qcow2 whose guest is exactly those 100 MiB: both read the same
 *    100 MiB of qcow2 clusters and write them to a new raw file. Cowbell also reads the ext4
 *    metadata, and flushes the file (fsync) before renaming it into place; qemu-img convert's
 *    default cache mode for its output is "unsafe" (it never flushes), so a second row runs it
 *    with `-t writeback`, which flushes once at the end (fdatasync), as Cowbell does. Target:
 *    ratio ≤ 1.0.
 *  - listing: `cowbell ls` of the root of an ext4 guest (4 GiB disk) holding BENCH_FILES files
 *    (50,000 unless told), beside `debugfs -R "ls -l /"` on the raw filesystem (qemu-img cannot
 *    list files). Target: under a second.
 * Cowbell runs as a user runs it, `bin/cowbell`: its start-up is part of the figure.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { assertSameCli, CLI, compareRuns, measure, measureCowbell, median, NODE, report, spreadNote, syncDisk, type Measurement, pairedRounds } from './lib.ts';

const MiB = 1024 * 1024;
const FILES = Number(process.env.BENCH_FILES ?? 50_000);
const ROUNDS = pairedRounds(Number(process.env.BENCH_ROUNDS ?? 3));
const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'cowbell-bench-files-'));

function run(command: string, args: string[]): void {
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 * MiB });
  if (result.status !== 0) throw new Error(`${command} ${args.slice(0, 6).join(' ')} failed (${result.status}):\n${result.stderr}`);
}

try {
  // The restore: one 100 MiB file of noise in a 256 MiB ext4, and the same bytes as a whole guest.
  const content = path.join(folder, 'content');
  fs.mkdirSync(content);
  fs.writeFileSync(path.join(content, 'big.bin'), randomBytes(100 * MiB));
  const ext4 = path.join(folder, 'guest.ext4');
  run('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', content, ext4, '256M']);
  const guestDisk = path.join(folder, 'guest.qcow2');
  run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', ext4, guestDisk]);
  const bytesDisk = path.join(folder, 'bytes.qcow2');
  run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', path.join(content, 'big.bin'), bytesDisk]);
  fs.rmSync(content, { recursive: true });
  fs.rmSync(ext4);
  await compareRuns({
    folder,
    name: 'copy-out 100 MiB file',
    note: 'cowbell copy-out of an ext4 file (flushed) vs qemu-img convert -O raw of a qcow2 holding the same 100 MiB (not flushed: its default -t unsafe)',
    runCowbell: (output) => measureCowbell(['copy-out', guestDisk, '/big.bin', output]),
    qemuArgs: (output) => ['convert', '-f', 'qcow2', '-O', 'raw', bytesDisk, output],
    extension: 'bin',
    rounds: ROUNDS,
    inspect: (cowbellOutput, qemuOutput) => (spawnSync('cmp', ['-s', cowbellOutput, qemuOutput]).status === 0 ? '; outputs identical' : '; OUTPUTS DIFFER'),
  });
  await compareRuns({
    folder,
    name: 'copy-out 100 MiB file, both flushing',
    note: 'the same, qemu-img convert -t writeback (it flushes once at the end, as cowbell does)',
    runCowbell: (output) => measureCowbell(['copy-out', guestDisk, '/big.bin', output]),
    qemuArgs: (output) => ['convert', '-t', 'writeback', '-f', 'qcow2', '-O', 'raw', bytesDisk, output],
    extension: 'bin',
    rounds: ROUNDS,
    inspect: (cowbellOutput, qemuOutput) => (spawnSync('cmp', ['-s', cowbellOutput, qemuOutput]).status === 0 ? '; outputs identical' : '; OUTPUTS DIFFER'),
  });

  // The listing: FILES small files in the root of a 4 GiB ext4.
  const many = path.join(folder, 'many');
  fs.mkdirSync(many);
  for (let index = 0; index < FILES; index++) fs.writeFileSync(path.join(many, `file-${String(index).padStart(6, '0')}.txt`), `${index}\n`);
  const manyRaw = path.join(folder, 'many.ext4');
  run('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', many, manyRaw, '4G']);
  fs.rmSync(many, { recursive: true });
  const manyDisk = path.join(folder, 'many.qcow2');
  run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', manyRaw, manyDisk]);
  const cowbell: Measurement[] = [];
  const debugfs: Measurement[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const side of round % 2 === 0 ? (['debugfs', 'cowbell'] as const) : (['cowbell', 'debugfs'] as const)) {
      syncDisk();
      // Through a shell to /dev/null: either listing is megabytes, more than a pipe to this process holds.
      if (side === 'cowbell') assertSameCli();
      const command = side === 'cowbell' ? `'${NODE}' '${CLI}' ls --json '${manyDisk}' / > /dev/null` : `debugfs -R 'ls -l /' '${manyRaw}' > /dev/null 2>&1`;
      const measurement = measure('sh', ['-c', command]);
      (side === 'cowbell' ? cowbell : debugfs).push(measurement);
      process.stderr.write(`  ls ${FILES} files ${side} round ${round + 1}: ${measurement.seconds.toFixed(2)} s, ${measurement.peakMiB.toFixed(0)} MiB\n`);
    }
  }
  report({
    name: `ls root of ${FILES} files`,
    cowbellSeconds: median(cowbell.map((entry) => entry.seconds)),
    qemuSeconds: median(debugfs.map((entry) => entry.seconds)),
    bestRatio: Math.min(...cowbell.map((entry) => entry.seconds)) / Math.min(...debugfs.map((entry) => entry.seconds)),
    cowbellPeakMiB: Math.max(...cowbell.map((entry) => entry.peakMiB)),
    note: `cowbell ls --json of a 4 GiB ext4 qcow2 vs debugfs "ls -l /" of the raw filesystem (the qemu-img column is debugfs here)${spreadNote(cowbell, debugfs)}`,
  });
} finally {
  fs.rmSync(folder, { recursive: true, force: true });
}
