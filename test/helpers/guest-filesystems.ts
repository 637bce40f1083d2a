/**
 * Guest disks with real filesystems, for the files/ tests: an ext2/3/4 filesystem image made by
 * `mkfs.ext4 -d` (populated without mounting) and changed with `debugfs -w`, partition tables by
 * `sfdisk` (MBR) and `sgdisk` (GPT) on a raw disk file, filesystem images copied into their
 * partitions, and the raw disk turned into qcow2 by qemu-img — a later version of the raw disk is
 * written into the same qcow2 with `qemu-img convert -n`, so snapshots taken in between keep the
 * earlier files. What the tools put there is read back with debugfs for the assertions.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { qemuImg, runTool } from './qemu.ts';

export const MiB = 1024 * 1024;

/** A file's content, a symlink's target, or an (empty) folder. */
export type TreeNode = string | Uint8Array | { symlink: string } | { folder: true };

/** Writes `tree` (paths relative to the root) into a new folder under `folder`, for mkfs -d. */
export function writeTree(folder: string, tree: Record<string, TreeNode>): string {
  const root = fs.mkdtempSync(path.join(folder, 'tree-'));
  for (const [relative, node] of Object.entries(tree)) {
    const target = path.join(root, relative);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    if (typeof node === 'string' || node instanceof Uint8Array) fs.writeFileSync(target, node);
    else if ('symlink' in node) fs.symlinkSync(node.symlink, target);
    else fs.mkdirSync(target, { recursive: true });
  }
  return root;
}

export interface ExtOptions {
  /** mkfs's type: ext4 (extents) unless told; ext2 keeps block maps. */
  type?: 'ext2' | 'ext3' | 'ext4';
  label?: string;
  /** Extra mkfs arguments (e.g. ['-b', '1024'] or ['-O', '^metadata_csum']). */
  mkfsArgs?: string[];
}

/** An ext filesystem image of sizeMiB at `image`, holding `tree` (mkfs -d: no mounting). */
export async function makeExtImage(image: string, sizeMiB: number, tree: Record<string, TreeNode>, options: ExtOptions = {}): Promise<void> {
  const source = writeTree(path.dirname(image), tree);
  try {
    const args = ['-q', '-F', '-t', options.type ?? 'ext4', '-d', source, ...(options.label ? ['-L', options.label] : []), ...(options.mkfsArgs ?? []), image, `${sizeMiB}M`];
    await runTool('mke2fs', args);
  } finally {
    fs.rmSync(source, { recursive: true, force: true });
  }
}

/** Runs debugfs commands on an ext image, writable; any complaint debugfs prints fails the call. */
export async function debugfs(image: string, commands: string[]): Promise<string> {
  const script = `${image}.debugfs-${process.hrtime.bigint()}`;
  fs.writeFileSync(script, commands.join('\n') + '\n');
  try {
    const result = await runTool('debugfs', ['-w', '-f', script, image]);
    const complaints = result.stderr.split('\n').filter((line) => line.trim() !== '' && !line.startsWith('debugfs '));
    if (complaints.length > 0) throw new Error(`debugfs on ${image} complained:\n${complaints.join('\n')}`);
    return result.stdout;
  } finally {
    fs.rmSync(script, { force: true });
  }
}

/**
 * A file's size, modification time (ms), the filesystem's block size and the blocks holding the
 * file's content, in file order, as debugfs's `stat` reads them (its BLOCKS/EXTENTS list without
 * the (IND)/(DIND)/(TIND) and extent-tree (ETB) blocks, which hold no content).
 */
export async function debugfsFacts(image: string, guestPath: string): Promise<{ size: number; mtimeMs: number; blockBytes: number; blocks: number[] }> {
  const stat = await runTool('debugfs', ['-R', `stat ${guestPath}`, image]);
  const size = /Size: (\d+)/.exec(stat.stdout);
  // Seconds, and the extra field where the inode has one: epoch bits (2 low) and nanoseconds (30 high).
  const mtime = /mtime: 0x([0-9a-f]+)(?::([0-9a-f]+))?/.exec(stat.stdout);
  const stats = await runTool('debugfs', ['-R', 'stats', image]);
  const blockBytes = /Block size:\s+(\d+)/.exec(stats.stdout);
  if (!size || !mtime || !blockBytes) throw new Error(`debugfs printed no size, mtime or block size for ${guestPath}:\n${stat.stdout}${stat.stderr}`);
  const list = stat.stdout.slice(Math.max(0, stat.stdout.search(/^(BLOCKS|EXTENTS):/m)));
  const blocks: number[] = [];
  for (const match of list.matchAll(/\((\d+)(?:-(\d+))?\)(?:\[u\])?:(\d+)(?:-(\d+))?/g)) {
    const first = Number(match[3]);
    const last = match[4] === undefined ? first : Number(match[4]);
    for (let block = first; block <= last; block++) blocks.push(block);
  }
  const extra = mtime[2] === undefined ? 0 : parseInt(mtime[2], 16);
  const seconds = (parseInt(mtime[1] as string, 16) | 0) + (extra & 3) * 2 ** 32;
  return { size: Number(size[1]), mtimeMs: seconds * 1000 + Math.floor((extra >>> 2) / 1e6), blockBytes: Number(blockBytes[1]), blocks };
}

export interface PartitionSpec {
  startMiB: number;
  sizeMiB: number;
  /** sfdisk's type (e.g. "83", "82", "5" for extended) or sgdisk's type code (e.g. "8300", "EF00"). */
  type: string;
}

/** A raw disk of sizeMiB with an MBR (sfdisk; logical partitions go after an extended one) or GPT (sgdisk). */
export async function makePartitionedDisk(disk: string, sizeMiB: number, table: 'mbr' | 'gpt', partitions: PartitionSpec[]): Promise<void> {
  fs.writeFileSync(disk, '');
  fs.truncateSync(disk, sizeMiB * MiB);
  if (table === 'mbr') {
    const script = ['label: dos', ...partitions.map((part) => `start=${part.startMiB * 2048}, size=${part.sizeMiB * 2048}, type=${part.type}`)].join('\n') + '\n';
    await runToolWithInput('sfdisk', ['--quiet', disk], script);
  } else {
    const args = ['-o'];
    partitions.forEach((part, index) => args.push('-n', `${index + 1}:${part.startMiB * 2048}:${(part.startMiB + part.sizeMiB) * 2048 - 1}`, '-t', `${index + 1}:${part.type}`));
    await runTool('sgdisk', [...args, disk]);
  }
}

/** Copies a filesystem image into the raw disk at offsetBytes (what `dd conv=notrunc` does). */
export function placeImage(disk: string, image: string, offsetBytes: number): void {
  const bytes = fs.readFileSync(image);
  const handle = fs.openSync(disk, 'r+');
  try {
    fs.writeSync(handle, bytes, 0, bytes.length, offsetBytes);
  } finally {
    fs.closeSync(handle);
  }
}

/** A new qcow2 image holding the raw disk's bytes. */
export async function qcow2FromRaw(raw: string, qcow2: string): Promise<void> {
  await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
}

/** Rewrites the qcow2's current state to the raw disk's bytes (its snapshots stay as they were). */
export async function writeRawIntoQcow2(raw: string, qcow2: string): Promise<void> {
  await qemuImg(['convert', '-n', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
}

export async function qemuSnapshot(qcow2: string, name: string): Promise<void> {
  await qemuImg(['snapshot', '-c', name, qcow2]);
}

function runToolWithInput(tool: string, args: string[], input: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(tool, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${tool} ${args.join(' ')} exited with ${code}:\n${stderr}`))));
    child.stdin.end(input);
  });
}
