/**
 * Power cuts during guest writes to an image with an external data file: two files, each with its
 * own write cache. Every cut of the joint order of their writes and flushes, with each file
 * keeping all, none or a random part of its writes since its last flush, must leave each guest
 * cluster as it was before or after, and an image `qemu-img check` finds no corruption in (leaks
 * at worst). What makes it hold: the data file is flushed before any table naming its new
 * clusters is written (image.ts flushRefcounts).
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { crashState, FaultFile, type CrashPoint, type LossPattern } from '../../helpers/fault-file.ts';
import { qemuCheck, qemuImg, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const CLUSTER = 4 * KiB;

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

/** Which file each logged event of the run went to, in the order they happened. */
type JointLog = ('image' | 'data')[];

/** Forwards to a FaultFile and notes the file of every change in the joint log. */
function noting(file: FaultFile, which: 'image' | 'data', joint: JointLog): BlockFile {
  const note = <T>(result: T): T => {
    while (joint.filter((entry) => entry === which).length < file.log.length) joint.push(which);
    return result;
  };
  return {
    path: file.path,
    readOnly: false,
    read: (buffer, position) => file.read(buffer, position),
    write: (buffer, position) => note(file.write(buffer, position)),
    flush: () => note(file.flush()),
    size: () => file.size(),
    truncate: (size) => note(file.truncate(size)),
    close: () => file.close(),
  };
}

interface Setup {
  imagePath: string;
  dataPath: string;
  raw: boolean;
}

async function buildSetup(name: string, raw: boolean): Promise<Setup> {
  const imagePath = folder.file(`${name}.qcow2`);
  const dataPath = folder.file(`${name}.data`);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${CLUSTER},data_file=${dataPath},data_file_raw=${raw ? 'on' : 'off'}`, imagePath, String(16 * MiB)]);
  // Where nothing maps to it, a data file may hold anything (raw ones excepted): stale bytes there
  // are what a table published before its data would expose.
  if (!raw) fs.writeFileSync(dataPath, Buffer.alloc(16 * MiB, 0xee));
  // Data already there to overwrite, zero and discard; the rest of the disk is still unallocated (unless raw).
  await qemuIo(imagePath, ['write -P 0x31 0 64k', `write -P 0x32 ${5 * MiB} 64k`, `write -P 0x33 ${9 * MiB} 8k`]);
  return { imagePath, dataPath, raw };
}

/** Disjoint guest ranges, so each cluster has one before and one after: fresh allocations across several L2 tables, an overwrite, a zero write, a discard. */
function operations(image: Qcow2Image): void {
  const random = new SeededRandom(7);
  image.write(random.bytes(5 * CLUSTER + 1000), 2 * MiB + 512);
  image.write(random.bytes(3 * CLUSTER), 12 * MiB);
  image.write(random.bytes(CLUSTER + 100), 4 * KiB + 7);
  image.writeZeroes(5 * MiB, 2 * CLUSTER);
  image.discard(9 * MiB, CLUSTER);
  image.write(random.bytes(2 * CLUSTER), 15 * MiB + 4 * KiB);
}

function guestOf(image: BlockFile, data: BlockFile, dataPath: string): Uint8Array {
  const opened = Qcow2Image.openFile(image, { readOnly: true, openFile: (filePath) => (filePath === dataPath ? data : failOpen(filePath)) });
  try {
    return opened.read(0, opened.virtualSize);
  } finally {
    opened.close();
  }
}

function failOpen(filePath: string): never {
  throw new Error(`unexpected open of ${filePath}`);
}

function clusterMismatch(guest: Uint8Array, before: Uint8Array, after: Uint8Array): number {
  for (let start = 0; start < guest.length; start += CLUSTER) {
    const end = start + CLUSTER;
    const cluster = guest.subarray(start, end);
    if (!Buffer.from(cluster).equals(Buffer.from(before.subarray(start, end))) && !Buffer.from(cluster).equals(Buffer.from(after.subarray(start, end)))) return start;
  }
  return -1;
}

describe.each([false, true])('guest writes on an image with a data file (raw: %s)', (raw) => {
  it('a power cut anywhere, in either file, leaves every cluster before or after and no corruption', async () => {
    const setup = await buildSetup(raw ? 'raw' : 'plain', raw);
    const imageInitial = new Uint8Array(fs.readFileSync(setup.imagePath));
    const dataInitial = new Uint8Array(fs.readFileSync(setup.dataPath));
    const imageFault = new FaultFile(setup.imagePath, imageInitial);
    const dataFault = new FaultFile(setup.dataPath, dataInitial);
    const joint: JointLog = [];
    const imageFile = noting(imageFault, 'image', joint);
    const dataFile = noting(dataFault, 'data', joint);
    const before = guestOf(new FaultFile(setup.imagePath, imageInitial), new FaultFile(setup.dataPath, dataInitial), setup.dataPath);
    const image = Qcow2Image.openFile(imageFile, { cacheBytes: { l2Tables: CLUSTER }, openFile: (filePath) => (filePath === setup.dataPath ? dataFile : failOpen(filePath)) });
    operations(image);
    image.close();
    const after = guestOf(new FaultFile(setup.imagePath, imageFault.contents()), new FaultFile(setup.dataPath, dataFault.contents()), setup.dataPath);
    expect(clusterMismatch(after, before, before), 'the operations change the guest').not.toBe(-1);
    expect(joint.filter((entry) => entry === 'data').length, 'data reaches the data file').toBeGreaterThan(0);

    const patterns: [LossPattern, LossPattern][] = [
      [{ kind: 'keep-all' }, { kind: 'lose-all' }],
      [{ kind: 'lose-all' }, { kind: 'keep-all' }],
      [{ kind: 'keep-all' }, { kind: 'keep-all' }],
      [{ kind: 'random', seed: 1 }, { kind: 'random', seed: 2 }],
      [{ kind: 'random', seed: 3 }, { kind: 'lose-all' }],
    ];
    const failures: string[] = [];
    const checked = new Set<string>();
    let checks = 0;
    for (let cut = 0; cut <= joint.length; cut++) {
      const imageCut = joint.slice(0, cut).filter((entry) => entry === 'image').length;
      const dataCut = cut - imageCut;
      for (const [imagePattern, dataPattern] of patterns) {
        const imagePoint: CrashPoint = { cut: imageCut, pattern: imagePattern };
        const dataPoint: CrashPoint = { cut: dataCut, pattern: dataPattern };
        const imageState = crashState(setup.imagePath, imageInitial, imageFault.log, imagePoint);
        const dataState = crashState(setup.dataPath, dataInitial, dataFault.log, dataPoint);
        const where = `cut ${cut}/${joint.length} (image ${imageCut} ${imagePattern.kind}, data ${dataCut} ${dataPattern.kind})`;
        const guest = guestOf(imageState, dataState, setup.dataPath);
        const at = clusterMismatch(guest, before, after);
        if (at !== -1) failures.push(`${where}: guest cluster at ${at} is neither before nor after`);
        const signature = `${imageState.signature()}:${dataState.signature()}`;
        // qemu-img check on every third distinct crash state: the data file is written where the header names it.
        if (checked.has(signature) || checked.size % 3 !== 0) {
          checked.add(signature);
          continue;
        }
        checked.add(signature);
        const crashPath = folder.file(`crash-${raw ? 'raw' : 'plain'}.qcow2`);
        fs.writeFileSync(crashPath, imageState.bytes());
        fs.writeFileSync(setup.dataPath, dataState.bytes());
        const check = await qemuCheck(crashPath);
        checks++;
        if ((check.report?.corruptions ?? 0) !== 0 || /ERROR/.test(check.output)) failures.push(`${where}: qemu-img check finds corruption:\n${check.output}`);
      }
    }
    expect(failures.slice(0, 5)).toEqual([]);
    expect(checks).toBeGreaterThan(3);
    console.log(`data file (raw: ${raw}): ${joint.length} events, ${checked.size} distinct crash states, ${checks} checked by qemu-img`);
  }, 180_000);
});
