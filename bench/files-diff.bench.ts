/**
 * files-diff on a 4 GiB ext4 guest holding 50,000 files (500 folders of 100), made by mkfs.ext4 -d:
 * a snapshot "before", then 20 files rewritten and 10 added by debugfs and only the changed 64 KiB
 * pieces written into the qcow2 (as a guest leaves them). The comparison runs in this process: a
 * first, cold run, then warm runs (the page cache and the WebAssembly module loaded), of which the
 * median is reported. qemu-img has no file-level comparison: its column holds the target (issue 22:
 * under a second warm), so the ratio is the share of the budget used. An informational row does the
 * same with the changes left in the later state's journal (written there, not home: a snapshot of a
 * running guest), which Cowbell replays in memory.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { diffStatesByName } from '../src/shared/qcow2/files/files-diff.ts';
import { openStateFiles } from '../src/shared/qcow2/files/state-files.ts';
import { readDiff } from '../src/shared/qcow2/snapshots/operations.ts';
import { median, report } from './lib.ts';

const MiB = 1024 * 1024;
const FOLDERS = 500;
const FILES_PER_FOLDER = 100;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'cowbell-bench-files-'));

function run(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 * MiB });
  if (result.status !== 0) throw new Error(`${command} ${args.slice(0, 6).join(' ')} failed (${result.status}):\n${result.stderr}`);
  return result.stdout;
}

function makeTree(root: string): void {
  for (let dir = 0; dir < FOLDERS; dir++) {
    const dirPath = path.join(root, `d${String(dir).padStart(3, '0')}`);
    fs.mkdirSync(dirPath, { recursive: true });
    for (let file = 0; file < FILES_PER_FOLDER; file++) fs.writeFileSync(path.join(dirPath, `f${file}.txt`), `file ${dir}/${file} `.repeat(1 + (file % 40)));
  }
}

/** Writes into the qcow2 the 64 KiB pieces where the raw file changed (compared 16 MiB at a time). */
function writeChangedPieces(image: string, before: string, after: string): number {
  const chunk = 16 * MiB;
  const piece = 64 * 1024;
  const a = Buffer.alloc(chunk);
  const b = Buffer.alloc(chunk);
  const fdA = fs.openSync(before, 'r');
  const fdB = fs.openSync(after, 'r');
  const commands: string[] = [];
  const size = fs.statSync(after).size;
  for (let offset = 0; offset < size; offset += chunk) {
    const length = fs.readSync(fdA, a, 0, chunk, offset);
    fs.readSync(fdB, b, 0, chunk, offset);
    if (a.subarray(0, length).equals(b.subarray(0, length))) continue;
    for (let at = 0; at < length; at += piece) {
      if (a.subarray(at, at + piece).equals(b.subarray(at, at + piece))) continue;
      const source = path.join(folder, `piece-${offset + at}`);
      fs.writeFileSync(source, b.subarray(at, at + piece));
      commands.push(`write -s ${source} ${offset + at} ${piece}`);
    }
  }
  fs.closeSync(fdA);
  fs.closeSync(fdB);
  for (let start = 0; start < commands.length; start += 200) run('qemu-io', ['-f', 'qcow2', ...commands.slice(start, start + 200).flatMap((command) => ['-c', command]), image]);
  return commands.length;
}

/** The 4 KiB blocks where two raw filesystems differ, and a file of the later one's contents of them, in order. */
function changedBlocks(before: string, after: string, contents: string): number[] {
  const block = 4096;
  const chunk = 16 * MiB;
  const a = Buffer.alloc(chunk);
  const b = Buffer.alloc(chunk);
  const fdA = fs.openSync(before, 'r');
  const fdB = fs.openSync(after, 'r');
  const blocks: number[] = [];
  const pieces: Buffer[] = [];
  const size = fs.statSync(after).size;
  for (let offset = 0; offset < size; offset += chunk) {
    const length = fs.readSync(fdA, a, 0, chunk, offset);
    fs.readSync(fdB, b, 0, chunk, offset);
    if (a.subarray(0, length).equals(b.subarray(0, length))) continue;
    for (let at = 0; at < length; at += block) {
      if (a.subarray(at, at + block).equals(b.subarray(at, at + block))) continue;
      blocks.push((offset + at) / block);
      pieces.push(Buffer.from(b.subarray(at, at + block)));
    }
  }
  fs.closeSync(fdA);
  fs.closeSync(fdB);
  fs.writeFileSync(contents, Buffer.concat(pieces));
  return blocks;
}

/** The same snapshot and changes, the changes in the later state's journal only (debugfs jw), not home. */
function makeInUseDisk(pristine: string, changed: string): string {
  const contents = path.join(folder, 'journal-blocks');
  const blocks = changedBlocks(pristine, changed, contents);
  const inUse = path.join(folder, 'in-use.raw');
  run('cp', ['--sparse=always', pristine, inUse]);
  const script = path.join(folder, 'journal.debugfs');
  fs.writeFileSync(script, `jo\njw -b ${blocks.join(',')} ${contents}\njc\n`);
  run('debugfs', ['-w', '-f', script, inUse]);
  if (!run('dumpe2fs', ['-h', inUse]).includes('needs_recovery')) throw new Error('the journaled filesystem does not need recovery');
  const image = path.join(folder, 'in-use.qcow2');
  run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', pristine, image]);
  run('qemu-img', ['snapshot', '-c', 'before', image]);
  const pieces = writeChangedPieces(image, pristine, inUse);
  fs.rmSync(inUse);
  process.stderr.write(`${blocks.length} blocks in the journal (${pieces} 64 KiB pieces written); the disk: ${image}\n`);
  return image;
}

/** The disk with its snapshot and changes (and the same saved in use): built afresh, or BENCH_FILES_IMAGE's (kept from an earlier run with BENCH_KEEP=1; then no in-use disk). */
function makeDisks(): { image: string; inUse: string | null } {
  const kept = process.env.BENCH_FILES_IMAGE;
  if (kept !== undefined && fs.existsSync(kept)) return { image: kept, inUse: null };
  const tree = path.join(folder, 'tree');
  makeTree(tree);
  const raw = path.join(folder, 'disk.raw');
  run('mkfs.ext4', ['-q', '-F', '-d', tree, raw, '4G']);
  fs.rmSync(tree, { recursive: true });
  const image = path.join(folder, 'disk.qcow2');
  run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, image]);
  run('qemu-img', ['snapshot', '-c', 'before', image]);
  const pristine = path.join(folder, 'before.raw');
  run('cp', ['--sparse=always', raw, pristine]);
  const script = path.join(folder, 'changes.debugfs');
  const content = path.join(folder, 'content');
  fs.writeFileSync(content, 'rewritten by the benchmark\n'.repeat(3));
  const commands: string[] = [];
  for (let index = 0; index < 20; index++) commands.push(`rm d${String(index * 25).padStart(3, '0')}/f7.txt`, `write ${content} d${String(index * 25).padStart(3, '0')}/f7.txt`);
  for (let index = 0; index < 10; index++) commands.push(`write ${content} d${String(index * 50).padStart(3, '0')}/new${index}.txt`);
  fs.writeFileSync(script, `${commands.join('\n')}\n`);
  run('debugfs', ['-w', '-f', script, raw]);
  const pieces = writeChangedPieces(image, pristine, raw);
  const inUse = makeInUseDisk(pristine, raw);
  fs.rmSync(raw);
  fs.rmSync(pristine);
  process.stderr.write(`${pieces} changed 64 KiB pieces written; the disk: ${image}\n`);
  return { image, inUse };
}

async function main(): Promise<void> {
  const { image, inUse } = makeDisks();

  const measureDiff = async (disk: string, name: string, note: string): Promise<void> => {
    const once = async (): Promise<{ seconds: number; differences: number }> => {
      const started = process.hrtime.bigint();
      const result = await diffStatesByName((state) => openStateFiles(disk, state), 'before', 'current', () => readDiff(disk, 'before', 'current').ranges);
      return { seconds: Number(process.hrtime.bigint() - started) / 1e9, differences: result.differences.length };
    };
    const cold = await once();
    const warm: number[] = [];
    for (let round = 0; round < ROUNDS; round++) warm.push((await once()).seconds);
    report({
      name,
      cowbellSeconds: median(warm),
      qemuSeconds: 1,
      bestRatio: Math.min(...warm),
      cowbellPeakMiB: process.resourceUsage().maxRSS / 1024,
      note: `${note}; cold ${cold.seconds.toFixed(2)} s; ${cold.differences} differences`,
    });
  };
  await measureDiff(image, `files-diff ${FOLDERS * FILES_PER_FOLDER} files, 4 GiB ext4 (warm)`, 'target < 1 s (qemu-img column = target)');
  if (inUse !== null) await measureDiff(inUse, `files-diff ${FOLDERS * FILES_PER_FOLDER} files, the later state saved in use (warm)`, 'informational: its journal replayed in memory');
  if (process.env.BENCH_KEEP === undefined) fs.rmSync(folder, { recursive: true, force: true });
}

await main();
