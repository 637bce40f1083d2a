/** Backing chains made by qemu-img and qemu-io for the chain tests: base ← mid ← top, each with data of its own. */
import * as fs from 'node:fs';
import { afterEach, beforeEach } from 'vitest';
import { qemuCheck, qemuImg, qemuIo, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';

export const MiB = 1024 * 1024;

export interface ChainShape {
  /** qemu-img create -o for every qcow2 file of the chain. */
  options: string;
  /** The bottom file: qcow2, or a raw file. */
  baseFormat?: 'qcow2' | 'raw';
  size?: number;
  /** qemu-io commands per file, bottom first. */
  base?: string[];
  mid?: string[];
  top?: string[];
  /** A snapshot taken in the middle file after its writes. */
  midSnapshot?: string;
}

export const defaultWrites = {
  base: ['write -P 0x11 0 1M', 'write -P 0x12 3M 512k'],
  mid: ['write -P 0x21 512k 1M', 'write -z 3M 64k'],
  top: ['write -P 0x31 100k 300k', 'write -P 0x32 2M 200k', 'write -z 3200k 64k', 'write -P 0x33 4095k 1k'],
};

/** Makes base, mid and top in `folder` (relative backing names, as QEMU writes them); returns their paths. */
export async function makeChain(folder: TempDir, shape: ChainShape): Promise<{ base: string; mid: string; top: string }> {
  const size = shape.size ?? 4 * MiB;
  const baseFormat = shape.baseFormat ?? 'qcow2';
  const base = folder.file(baseFormat === 'raw' ? 'base.raw' : 'base.qcow2');
  const mid = folder.file('mid.qcow2');
  const top = folder.file('top.qcow2');
  if (baseFormat === 'raw') await qemuImg(['create', '-q', '-f', 'raw', base, String(size)]);
  else await qemuImg(['create', '-q', '-f', 'qcow2', '-o', shape.options, base, String(size)]);
  await write(base, shape.base ?? defaultWrites.base, baseFormat);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', shape.options, '-b', baseFormat === 'raw' ? 'base.raw' : 'base.qcow2', '-F', baseFormat, mid, String(size)]);
  await write(mid, shape.mid ?? defaultWrites.mid, 'qcow2');
  if (shape.midSnapshot !== undefined) await qemuImg(['snapshot', '-c', shape.midSnapshot, mid]);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', shape.options, '-b', 'mid.qcow2', '-F', 'qcow2', top, String(size)]);
  await write(top, shape.top ?? defaultWrites.top, 'qcow2');
  return { base, mid, top };
}

async function write(image: string, commands: string[], format: 'qcow2' | 'raw'): Promise<void> {
  if (commands.length > 0) await qemuIo(image, commands, { format });
}

/** Copies every file of a chain folder into another folder (same names, so relative backing names still resolve). */
export function copyFolder(from: TempDir, to: TempDir): void {
  for (const name of fs.readdirSync(from.path)) fs.copyFileSync(from.file(name), to.file(name));
}

/** What is wrong with each qcow2 file by qemu-img check's standards (empty when all are clean). */
export async function uncleanFiles(files: string[]): Promise<string[]> {
  const problems: string[] = [];
  for (const file of files) {
    if (!file.endsWith('.qcow2')) continue;
    const result = await qemuCheck(file);
    if (result.code !== 0) problems.push(`${file}: ${result.output}`);
  }
  return problems;
}

export async function guestOf(file: string): Promise<Uint8Array> {
  return rawOf(file, { format: file.endsWith('.raw') ? 'raw' : 'qcow2' });
}

export interface TwoFolders {
  /** Where cowbell works. */
  ours: TempDir;
  /** A copy of the same files for qemu-img. */
  theirs: TempDir;
}

/** Two fresh folders for each test (handed to `made` before it), removed after it. */
export function useTwoFolders(made: (folders: TwoFolders) => void): void {
  let folders: TwoFolders | null = null;
  beforeEach(() => {
    folders = { ours: tempDir(), theirs: tempDir() };
    made(folders);
  });
  afterEach(() => {
    folders?.ours.cleanup();
    folders?.theirs.cleanup();
  });
}

export { expectSameBytes } from '../../helpers/outcomes.ts';
