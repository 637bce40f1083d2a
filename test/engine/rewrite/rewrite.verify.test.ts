/**
 * The comparison a rewrite makes before its output may replace anything (rewrite/verify.ts) must
 * catch a copy whose guest data differs from the source's in any one state — on a small disk and on
 * one whose clusters are compared in many batches — and name that
 * state; a faithful copy passes. The copies are Cowbell's own, written without the check, then
 * damaged by one byte where a cluster only one state uses lies (found by its bytes, not by
 * Cowbell's reading of the tables).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { silentJob } from '../../../src/shared/qcow2/job-context.ts';
import { rewriteImage, rewriteSteps } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { verifyRewrite } from '../../../src/shared/qcow2/rewrite/verify.ts';
import { tempDir, type TempDir } from '../../helpers/qemu.ts';
import { makeSnapshottedDisk, MiB } from '../../helpers/rewrite-disks.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

const CLUSTER = 64 * 1024;

/** The first cluster of guest data of a state, as qemu-img reads it. */
function firstCluster(image: string, offset: number, snapshot: string | null): Buffer {
  const raw = `${image}.cluster.raw`;
  execFileSync('qemu-img', ['convert', '-U', '-O', 'raw', ...(snapshot === null ? [] : ['-l', `snapshot.name=${snapshot}`]), image, raw]);
  try {
    const bytes = fs.readFileSync(raw);
    return bytes.subarray(offset, offset + CLUSTER);
  } finally {
    fs.rmSync(raw, { force: true });
  }
}

/** Where in the file a cluster holding exactly `bytes` lies (every match, cluster-aligned). */
function hostOffsetsOf(file: string, bytes: Buffer): number[] {
  const content = fs.readFileSync(file);
  const found: number[] = [];
  for (let offset = 0; offset + CLUSTER <= content.length; offset += CLUSTER) if (content.subarray(offset, offset + CLUSTER).equals(bytes)) found.push(offset);
  return found;
}

function flipByte(file: string, position: number): void {
  const descriptor = fs.openSync(file, 'r+');
  try {
    const byte = Buffer.alloc(1);
    fs.readSync(descriptor, byte, 0, 1, position);
    byte[0] = (byte[0] ?? 0) ^ 0x40;
    fs.writeSync(descriptor, byte, 0, 1, position);
  } finally {
    fs.closeSync(descriptor);
  }
}

/** A copy of `image` with one byte of the compressed data the current state has at `guestOffset` flipped. */
function damagedCompressedCopy(image: string, guestOffset: number): string {
  const opened = Qcow2Image.open(image, { readOnly: true, openBacking: false });
  const entry = opened.lookup(opened.l1, guestOffset);
  opened.close();
  expect(entry?.kind).toBe('compressed');
  const damaged = image.replace(/\.qcow2$/, '-damaged.qcow2');
  fs.copyFileSync(image, damaged);
  // Early in the stream: the stored length is rounded up to whole sectors, past the stream's end.
  flipByte(damaged, (entry?.hostOffset ?? 0) + 10);
  return damaged;
}

/** verifyRewrite's error, or null. */
function verifyError(source: string, output: string): Qcow2Error | null {
  const sourceImage = Qcow2Image.open(source, { readOnly: true, openBacking: false });
  const outputImage = Qcow2Image.open(output, { readOnly: true, openBacking: false });
  try {
    verifyRewrite(sourceImage, outputImage, silentJob);
    return null;
  } catch (error) {
    if (error instanceof Qcow2Error) return error;
    throw error;
  } finally {
    sourceImage.close();
    outputImage.close();
  }
}

// 72 MiB of data: many 4 MiB batches of clusters compared.
describe.each([4, 72])('verify of a rewrite of a disk with %i MiB of data and two snapshots', (dataMiB) => {
  let source: string;
  let copy: string;
  beforeAll(() => {
    const dir = path.join(folder.path, `disk-${dataMiB}`);
    fs.mkdirSync(dir);
    source = makeSnapshottedDisk(dir, 'source.qcow2', dataMiB).path;
    copy = path.join(dir, 'copy.qcow2');
    rewriteImage({ source, target: copy, compression: 'keep', verify: false });
  }, 120_000);

  it('passes a faithful copy', () => {
    expect(verifyError(source, copy)).toBeNull();
  });

  // "installed" alone keeps the letters the patterned MiB later covered; the current state alone holds 0x5a at 4 MiB.
  it.each([
    ['installed', 0, 'snapshot installed'],
    [null, 4 * MiB, 'the current state'],
  ] as const)('names the state whose data differs by one byte (%s at %i)', (snapshot, guestOffset, named) => {
    const damaged = path.join(path.dirname(copy), `damaged-${snapshot ?? 'current'}.qcow2`);
    fs.copyFileSync(copy, damaged);
    const cluster = firstCluster(source, guestOffset, snapshot);
    const hosts = hostOffsetsOf(damaged, cluster);
    expect(hosts.length, 'the copy holds the cluster').toBeGreaterThan(0);
    flipByte(damaged, (hosts[0] ?? 0) + 1234);
    const error = verifyError(source, damaged);
    expect(error?.code).toBe('INTERNAL');
    expect(error?.message).toContain(named);
  }, 60_000);

  it('catches a compressed copy whose compressed data differs (each source cluster remembered by what it became)', () => {
    const compressed = path.join(path.dirname(copy), 'compressed.qcow2');
    rewriteImage({ source, target: compressed, compression: 'compress', verify: false });
    expect(verifyError(source, compressed)).toBeNull();
    // The current state's cluster at 4 MiB (0x5a, that state's alone), stored compressed.
    expect(verifyError(source, damagedCompressedCopy(compressed, 4 * MiB))).not.toBeNull();
  }, 60_000);

  it('catches a compacted copy of a compressed disk whose compressed data differs (each compressed source remembered by its offset and size)', () => {
    const compressedSource = path.join(path.dirname(copy), 'compressed-source.qcow2');
    rewriteImage({ source, target: compressedSource, compression: 'compress', verify: false });
    const kept = path.join(path.dirname(copy), 'compressed-kept.qcow2');
    rewriteImage({ source: compressedSource, target: kept, compression: 'keep', verify: false });
    expect(verifyError(compressedSource, kept)).toBeNull();
    expect(verifyError(compressedSource, damagedCompressedCopy(kept, 4 * MiB))).not.toBeNull();
  }, 60_000);

  it('yields as it verifies, so that a command line hears Ctrl-C meanwhile (rewriteSteps; the final comparison doing it all)', () => {
    let stage = '';
    const steps = rewriteSteps({ source, target: path.join(path.dirname(copy), 'yielding.qcow2'), compression: 'keep', earlyVerify: false }, { progress: (name) => (stage = name), throwIfCancelled() {} });
    let verifyingSteps = 0;
    for (let step = steps.next(); step.done !== true; step = steps.next()) if (stage === 'verifying') verifyingSteps++;
    // A batch is 4 MiB of clusters compared: the bigger disk's verify is many batches.
    expect(verifyingSteps).toBeGreaterThanOrEqual(dataMiB >= 64 ? 10 : 1);
  }, 60_000);

  it('reports its progress as it goes: never back, never past the total, and, for many batches, many times before the end (the final comparison doing it all)', () => {
    const reports: [number, number][] = [];
    let cancelChecks = 0;
    rewriteImage({ source, target: path.join(path.dirname(copy), 'progress.qcow2'), compression: 'keep', earlyVerify: false }, {
      progress: (stage, done, total) => {
        if (stage === 'verifying') reports.push([done, total]);
      },
      throwIfCancelled: () => {
        cancelChecks++;
      },
    });
    const total = reports[0]?.[1] ?? 0;
    expect(total).toBeGreaterThan(0);
    expect(reports.every(([, each]) => each === total)).toBe(true);
    expect(reports.every(([done], index) => done <= total && done >= (reports[index - 1]?.[0] ?? 0))).toBe(true);
    expect(reports.at(-1)).toEqual([total, total]);
    const before = new Set(reports.map(([done]) => done).filter((done) => done < total));
    expect(before.size).toBeGreaterThanOrEqual(dataMiB >= 64 ? 10 : 1);
    expect(cancelChecks).toBeGreaterThan(before.size);
  }, 60_000);
});


describe('verify of entries that store nothing, over a backing file', () => {
  // A zero cluster reads zeros; an unallocated one reads the backing file's bytes: a copy that
  // turned one into the other reads differently, though neither side stores any data.
  it('catches a zero cluster that became unallocated, and the other way round', () => {
    const dir = path.join(folder.path, 'over-backing');
    fs.mkdirSync(dir);
    const base = path.join(dir, 'base.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', base, '4M']);
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 4M', base]);
    const source = path.join(dir, 'overlay.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', source]);
    // Guest cluster 1 reads zeros (a zero cluster); cluster 2 reads the base; cluster 3 holds data.
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -z ${CLUSTER} ${CLUSTER}`, '-c', `write -P 0x22 ${3 * CLUSTER} ${CLUSTER}`, source]);
    const copy = path.join(dir, 'copy.qcow2');
    rewriteImage({ source, target: copy, compression: 'keep', verify: false });
    expect(verifyError(source, copy)).toBeNull();
    for (const [guestCluster, replacement] of [
      [1, 0n],
      [2, 1n],
    ] as const) {
      const damaged = path.join(dir, `damaged-${guestCluster}.qcow2`);
      fs.copyFileSync(copy, damaged);
      const image = Qcow2Image.open(damaged, { readOnly: true, openBacking: false });
      const entryPosition = image.l2OffsetAt(image.l1, 0) + guestCluster * image.l2EntryBytes;
      image.close();
      // 0: unallocated; 1: the zero flag (bit 0), no host cluster.
      const entry = Buffer.alloc(8);
      entry.writeBigUInt64BE(replacement);
      const descriptor = fs.openSync(damaged, 'r+');
      fs.writeSync(descriptor, entry, 0, 8, entryPosition);
      fs.closeSync(descriptor);
      expect(verifyError(source, damaged)?.message, `guest cluster ${guestCluster}`).toContain('the current state');
    }
  });
});
