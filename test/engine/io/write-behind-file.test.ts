/**
 * The write-behind file: what a helper thread writes must be exactly what direct writes would have
 * made, in order, whenever the helper starts; every other call sees the queued writes; a write the
 * helper fails fails the caller's next call with its typed error.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BlockFile, DescribedBlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { NodeBlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { WriteBehindFile, writeBehind } from '../../../src/shared/qcow2/io/write-behind-file.ts';
import { tempDir, type TempDir } from '../../helpers/qemu.ts';

const MiB = 1024 * 1024;
let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

function sleep(milliseconds: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, milliseconds);
}

/** Long enough for the helper thread to have started on any machine these tests run on. */
function waitForHelper(): void {
  sleep(1500);
}

/** Seeded pieces of varied sizes (up to three slots) at varied places, some overlapping earlier ones. */
function writePlan(seed: number): { position: number; bytes: Uint8Array }[] {
  let state = seed;
  const next = (limit: number): number => {
    state = (state * 1103515245 + 12345) >>> 0;
    return state % limit;
  };
  const plan: { position: number; bytes: Uint8Array }[] = [];
  for (let index = 0; index < 40; index++) {
    const length = index % 7 === 0 ? 9 * MiB + next(4096) : 1 + next(256 * 1024);
    plan.push({ position: next(24 * MiB), bytes: new Uint8Array(randomBytes(length)) });
  }
  return plan;
}

function applyPlan(file: BlockFile, plan: { position: number; bytes: Uint8Array }[], pauseAfter = -1): void {
  plan.forEach((piece, index) => {
    file.write(piece.bytes, piece.position);
    if (index === pauseAfter) waitForHelper();
  });
}

describe('write-behind file', () => {
  it('ends with the same bytes as direct writes, when the helper starts at once, midway or never in time', () => {
    const plan = writePlan(7);
    const expected = folder.file('direct.bin');
    const direct = NodeBlockFile.open(expected, { create: true });
    applyPlan(direct, plan);
    direct.close();
    for (const [name, pauseAfter] of [['at-once', -2], ['midway', 5], ['late', -1]] as const) {
      const target = folder.file(`behind-${name}.bin`);
      const file = writeBehind(NodeBlockFile.open(target, { create: true }), { startWriteback: true });
      expect(file).toBeInstanceOf(WriteBehindFile);
      if (pauseAfter === -2) waitForHelper();
      applyPlan(file, plan, pauseAfter);
      file.flush();
      file.close();
      expect(fs.readFileSync(target).equals(fs.readFileSync(expected)), name).toBe(true);
    }
  });

  // Hundreds of MiB flushed: seconds on a slow or busy disk.
  it('writes from lent buffers, reused many times over, the bytes they held when written', { timeout: 60_000 }, () => {
    const target = folder.file('lent.bin');
    const file = writeBehind(NodeBlockFile.open(target, { create: true }), { startWriteback: true });
    // What each lent buffer held, and what was written from it: replayed at the end. Filling is
    // much faster than writing, so the helper falls behind and busy slots must not be lent again.
    const writes: { fill: number; from: number; to: number; position: number }[] = [];
    let lentNull = false;
    // Each of the six slots lent several times in each pass.
    const CHUNKS = 40;
    for (const pause of [false, true]) {
      if (pause) waitForHelper();
      for (let chunk = 0; chunk < CHUNKS; chunk++) {
        const buffer = file.lendBuffer?.(4 * MiB) ?? null;
        if (buffer === null) {
          lentNull = true;
          break;
        }
        const fill = (pause ? CHUNKS : 0) + chunk;
        buffer.fill(fill);
        // Three pieces of each buffer, out of order, one of them overlapping the previous chunk.
        const start = chunk * 4 * MiB;
        for (const [from, to, position] of [[MiB, 3 * MiB, start + MiB], [0, MiB, start], [0, 64 * 1024, Math.max(0, start - 32 * 1024)]] as const) {
          file.write(buffer.subarray(from, to), position);
          writes.push({ fill, from, to, position });
        }
      }
    }
    file.flush();
    file.close();
    expect(lentNull).toBe(false);
    const expected = new Uint8Array(fs.statSync(target).size);
    for (const write of writes) expected.fill(write.fill % 256, write.position, write.position + write.to - write.from);
    expect(expected.length).toBe(CHUNKS * 4 * MiB - MiB);
    expect(Buffer.from(expected).equals(fs.readFileSync(target))).toBe(true);
  });

  it('lets reads, size and truncate see every write queued before them', () => {
    const file = writeBehind(NodeBlockFile.open(folder.file('reads.bin'), { create: true }), { startWriteback: false });
    waitForHelper();
    const bytes = new Uint8Array(randomBytes(6 * MiB));
    file.write(bytes, MiB);
    expect(file.size()).toBe(7 * MiB);
    const back = new Uint8Array(6 * MiB);
    expect(file.read(back, MiB)).toBe(6 * MiB);
    expect(Buffer.from(back).equals(Buffer.from(bytes))).toBe(true);
    file.write(new Uint8Array(4096).fill(1), 10 * MiB);
    file.truncate(8 * MiB);
    expect(file.size()).toBe(8 * MiB);
    file.close();
    expect(fs.statSync(folder.file('reads.bin')).size).toBe(8 * MiB);
  });

  it('lets its process end at any moment, even while the helper thread is still starting', () => {
    // The helper is unref'd: a short write can end the process while it starts. It once loaded a
    // native module there, and a process ending during that load died with a FATAL ERROR.
    const modules = (name: string): string => fileURLToPath(new URL(`../../../src/shared/qcow2/io/${name}`, import.meta.url));
    const script = `
      const { NodeBlockFile } = await import(${JSON.stringify(modules('block-file.ts'))});
      const { writeBehind } = await import(${JSON.stringify(modules('write-behind-file.ts'))});
      const file = writeBehind(NodeBlockFile.open(process.argv[1], { create: true }), { startWriteback: true });
      file.write(new Uint8Array(4096).fill(1), 0);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(process.argv[2]));
      file.close();
      process.exit(0);`;
    for (let delay = 0; delay < 60; delay += 3) {
      const target = folder.file(`exit-${delay}.bin`);
      const result = spawnSync(process.execPath, ['--input-type=module', '-e', script, target, String(delay)], { encoding: 'utf8' });
      expect({ delay, status: result.status, stderr: result.stderr }).toEqual({ delay, status: 0, stderr: '' });
      expect(fs.statSync(target).size).toBe(4096);
    }
  }, 60_000);

  it('leaves a file it cannot hand to a helper thread as it is', () => {
    const plain: BlockFile = { path: 'x', readOnly: false, read: () => 0, write: () => {}, flush: () => {}, size: () => 0, truncate: () => {}, close: () => {} };
    expect(writeBehind(plain, { startWriteback: true })).toBe(plain);
  });

  it('fails the next call with the typed error of a write the helper could not do (disk full)', () => {
    // /dev/full refuses every write with ENOSPC.
    const fd = fs.openSync('/dev/full', 'w');
    let closed = false;
    const full: DescribedBlockFile = {
      path: 'full-disk.img',
      readOnly: false,
      descriptor: fd,
      read: () => 0,
      write: () => {
        throw new Error('the test writes through the helper only');
      },
      flush: () => {},
      size: () => 0,
      truncate: () => {},
      close: () => {
        fs.closeSync(fd);
        closed = true;
      },
    };
    const file = writeBehind(full, { startWriteback: false });
    waitForHelper();
    file.write(new Uint8Array(64 * 1024).fill(9), 0);
    let failure: unknown = null;
    try {
      for (let index = 0; index < 20; index++) file.write(new Uint8Array(4096), index * 4096);
      file.flush();
    } catch (error) {
      failure = error;
    }
    expect(failure).toBeInstanceOf(Qcow2Error);
    expect(failure).toMatchObject({ code: 'NO_SPACE', message: expect.stringMatching(/full-disk\.img: the disk is full/) });
    expect(() => file.close()).toThrow(/the disk is full/);
    expect(closed).toBe(true);
  });
});
