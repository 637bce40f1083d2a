/**
 * The starting images of the crash table, made by the real qemu tools (qemu-img create, qemu-io
 * writes, qemu-img snapshot), so the engine also meets QEMU's own layouts: a few shapes of data
 * and snapshots, compressed clusters, a backing file, and the image a crash in the middle of an
 * operation leaves (the input of a repair).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { crashPoints, crashState, FaultFile } from '../../helpers/fault-file.ts';
import { qemuImg, qemuIo, type TempDir } from '../../helpers/qemu.ts';
import { compressibleBytes } from '../../helpers/seeded-random.ts';
import { walkImage } from './image-walk.ts';

export const KiB = 1024;

export const V3_512 = 'compat=1.1,cluster_size=512,refcount_bits=16';
export const V2_512 = 'compat=0.10,cluster_size=512';
export const V3_4K = 'compat=1.1,cluster_size=4096,refcount_bits=16';

export type Step = { io: string } | { snapshot: string } | { deleteSnapshot: string };

/** qemu-img create, then qemu-io writes and qemu-img snapshots (or deletes) in order. */
export async function buildImage(imagePath: string, options: string, size: number, steps: Step[] = []): Promise<void> {
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', options, imagePath, String(size)]);
  for (const step of steps) {
    if ('io' in step) await qemuIo(imagePath, [step.io]);
    else if ('snapshot' in step) await qemuImg(['snapshot', '-c', step.snapshot, imagePath]);
    else await qemuImg(['snapshot', '-d', step.deleteSnapshot, imagePath]);
  }
}

/** Data, a snapshot, more data over part of it: L2 tables and clusters both shared and not. */
export const withSnapshot: Step[] = [{ io: 'write -P 0x11 0 24k' }, { io: 'write -P 0x12 40k 8k' }, { snapshot: 's1' }, { io: 'write -P 0x13 4k 2k' }];

/** Two snapshots with different data, and a current state different from both. */
export const twoSnapshots: Step[] = [
  { io: 'write -P 0x21 0 20k' },
  { snapshot: 's1' },
  { io: 'write -P 0x22 2k 10k' },
  { io: 'write -P 0x23 70k 6k' },
  { snapshot: 's2' },
  { io: 'write -P 0x24 6k 20k' },
  { io: 'write -z 90k 4k' },
];

/** Snapshots over data spread across 20 L2 tables (more than the tiny caches hold). */
export const spreadSnapshots: Step[] = [
  ...Array.from({ length: 20 }, (_, table) => ({ io: `write -P ${0x40 + table} ${table * 32 * KiB + 1024} 1k` })),
  { snapshot: 's1' },
  ...Array.from({ length: 10 }, (_, index) => ({ io: `write -P ${0x60 + index} ${index * 64 * KiB} 2k` })),
  { snapshot: 's2' },
  ...Array.from({ length: 10 }, (_, index) => ({ io: `write -P ${0x70 + index} ${index * 64 * KiB + 32 * KiB} 1k` })),
];

/** An image of compressed clusters (qemu-img convert -c), several packed into each host cluster, then a snapshot and a write. */
export async function compressedImage(imagePath: string): Promise<void> {
  const rawPath = `${imagePath}.raw`;
  fs.writeFileSync(rawPath, compressibleBytes(256 * KiB, 5));
  await qemuImg(['convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'compat=1.1,cluster_size=4096', rawPath, imagePath]);
  fs.rmSync(rawPath);
  await qemuImg(['snapshot', '-c', 's1', imagePath]);
  await qemuIo(imagePath, ['write -P 0x17 64k 8k']);
}

/** An overlay (v3 or v2) on a qcow2 backing file, both with data of their own. */
export async function imageOverBacking(imagePath: string, compat: '1.1' | '0.10'): Promise<void> {
  const backingPath = path.join(path.dirname(imagePath), 'backing.qcow2');
  await buildImage(backingPath, V3_512, 128 * KiB, [{ io: 'write -P 0x51 0 64k' }]);
  await buildImage(imagePath, `compat=${compat},cluster_size=512,backing_file=backing.qcow2,backing_fmt=qcow2`, 128 * KiB, [{ io: 'write -P 0x52 8k 4k' }, { snapshot: 's1' }]);
}

/**
 * Replaces the image with what a power cut in the middle of `run` leaves: the cut (everything
 * written kept) with the most leaked clusters — the realistic input of a repair.
 */
export function crashInTheMiddle(imagePath: string, run: (image: Qcow2Image) => void): void {
  const initial = new Uint8Array(fs.readFileSync(imagePath));
  const fault = new FaultFile(imagePath, initial);
  const image = Qcow2Image.openFile(fault);
  run(image);
  image.close();
  let chosen: Uint8Array | null = null;
  let mostLeaks = 0;
  for (const point of crashPoints(fault.log, 0, 0)) {
    if (point.pattern.kind !== 'keep-all') continue;
    const state = crashState(imagePath, initial, fault.log, point);
    const walk = walkImage(state);
    const leaks = walk.findings.filter((finding) => finding.kind === 'leak').length;
    if (walk.harmful.length === 0 && leaks > mostLeaks) {
      mostLeaks = leaks;
      chosen = state.bytes();
    }
  }
  if (chosen === null) throw new Error('no crash point of the setup leaks anything; the repair case would test nothing');
  fs.writeFileSync(imagePath, chosen);
}

export async function qemuMadeImage(folder: TempDir, name: string, options: string, size: number, steps: Step[]): Promise<Uint8Array> {
  const imagePath = folder.file(name);
  await buildImage(imagePath, options, size, steps);
  return new Uint8Array(fs.readFileSync(imagePath));
}

