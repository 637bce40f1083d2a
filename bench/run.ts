/**
 * `npm run bench`: runs every bench/*.bench.ts (or those named on the command line) in its own
 * process, collects the BENCH rows each prints (see lib.ts), and prints one table of Cowbell beside
 * qemu-img, with the machine noted. Benchmarks are not tests: nothing here fails on a slow run.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { machine, NODE, ROOT, type BenchRow } from './lib.ts';

const benchFolder = path.join(ROOT, 'bench');
const wanted = process.argv.slice(2);
const files = fs
  .readdirSync(benchFolder)
  .filter((name) => name.endsWith('.bench.ts'))
  .filter((name) => wanted.length === 0 || wanted.some((filter) => name.includes(filter)))
  .sort();

const rows: BenchRow[] = [];
let failed = false;
for (const file of files) {
  process.stderr.write(`== ${file}\n`);
  const result = spawnSync(NODE, [path.join(benchFolder, file)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 16 * 1024 * 1024 });
  for (const line of result.stdout.split('\n')) {
    if (line.startsWith('BENCH ')) rows.push(JSON.parse(line.slice('BENCH '.length)) as BenchRow);
    else if (line.trim() !== '') process.stderr.write(`${line}\n`);
  }
  if (result.status !== 0) {
    failed = true;
    process.stderr.write(`${file} exited with ${result.status ?? result.signal}\n`);
  }
}

const header = ['benchmark', 'cowbell s', 'qemu-img s', 'ratio', 'best ratio', 'peak MiB', 'note'];
const table = rows.map((row) => [
  row.name,
  row.cowbellSeconds.toFixed(2),
  row.qemuSeconds.toFixed(2),
  (row.cowbellSeconds / row.qemuSeconds).toFixed(2),
  row.bestRatio === undefined ? '' : row.bestRatio.toFixed(2),
  row.cowbellPeakMiB === null ? '' : row.cowbellPeakMiB.toFixed(0),
  row.note ?? '',
]);
const widths = header.map((title, column) => Math.max(title.length, ...table.map((cells) => (cells[column] ?? '').length)));
const format = (cells: string[]): string => cells.map((cell, column) => (column === 0 || column === header.length - 1 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0))).join('  ');
process.stdout.write(`\nmachine: ${machine()}\n\n${format(header)}\n${format(widths.map((width) => '-'.repeat(width)))}\n`);
for (const cells of table) process.stdout.write(`${format(cells)}\n`);
process.exitCode = failed ? 1 : 0;
