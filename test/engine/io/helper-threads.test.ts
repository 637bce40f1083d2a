/**
 * Helper threads start only where the address space left under `ulimit -v` has room for them
 * (V8 aborts the process when it has not); otherwise the work stays on the caller's thread and
 * the user is told once. test/cli/bundle.test.ts runs convert under a real limit.
 */
import * as fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { threadedCompressor } from '../../../src/shared/qcow2/codec/cluster-compressor.ts';
import { decompressCluster } from '../../../src/shared/qcow2/codec/compression.ts';
import { endHelperThread, HELPER_THREAD_NAMES, HELPER_THREAD_ROOM_BYTES, helperThreadRefusal, procThreadRoomProbe, resetHelperThreadNotice, startHelperThread, type ThreadRoomProbe } from '../../../src/shared/qcow2/io/helper-threads.ts';
import { compressibleBytes } from '../../helpers/seeded-random.ts';

const MiB = 1024 * 1024;
const probe = (limit: number | null, used: number): ThreadRoomProbe => ({ limitBytes: () => limit, usedBytes: () => used });

afterEach(() => resetHelperThreadNotice());

describe('helper thread room', () => {
  it('allows a thread without a limit, or with room under it, and refuses one without, naming the room left', () => {
    expect(helperThreadRefusal(probe(null, 50_000 * MiB))).toBeNull();
    expect(helperThreadRefusal(probe(4000 * MiB, 4000 * MiB - HELPER_THREAD_ROOM_BYTES))).toBeNull();
    const refusal = helperThreadRefusal(probe(4000 * MiB, 4000 * MiB - HELPER_THREAD_ROOM_BYTES + 1));
    expect(refusal).toContain('ulimit -v');
    expect(refusal).toContain(`leaves ${HELPER_THREAD_ROOM_BYTES / MiB - 1} MiB`);
    expect(helperThreadRefusal(probe(1000 * MiB, 2000 * MiB))).toContain('leaves 0 MiB');
  });

  it('reads this process\'s limit and mapped size from /proc', () => {
    const limits = fs.readFileSync('/proc/self/limits', 'utf8');
    const unlimited = /^Max address space\s+unlimited/m.test(limits);
    expect(procThreadRoomProbe.limitBytes() === null).toBe(unlimited);
    expect(procThreadRoomProbe.usedBytes()).toBeGreaterThan(64 * MiB);
  });

  it('starts no thread where there is no room, and says why once', () => {
    const lines: string[] = [];
    resetHelperThreadNotice((line) => lines.push(line));
    const tight = probe(2000 * MiB, 1900 * MiB);
    expect(startHelperThread('1', HELPER_THREAD_NAMES.compress, { eval: true }, tight)).toBeNull();
    expect(startHelperThread('1', HELPER_THREAD_NAMES.compress, { eval: true }, tight)).toBeNull();
    expect(lines).toEqual(['cowbell: working on one thread: the address-space limit (ulimit -v) leaves 100 MiB, too little for a helper thread (384 MiB)\n']);
  });

  it('starts a thread where there is room, with a small code range, and survives its failure', async () => {
    const lines: string[] = [];
    resetHelperThreadNotice((line) => lines.push(line));
    const worker = startHelperThread('throw new Error("broken helper")', HELPER_THREAD_NAMES.compress, { eval: true }, probe(null, 0));
    expect(worker).not.toBeNull();
    const exitCode = await new Promise<number>((resolve) => worker?.once('exit', resolve));
    expect(exitCode).toBe(1);
    expect(lines).toEqual(['cowbell: working on one thread: a helper thread failed (broken helper)\n']);
  });

  it('names its thread, so that top -H and /proc tell the helpers apart', async () => {
    // The helper says when it is running; its name is then in /proc/self/task/TID/comm.
    const control = new Int32Array(new SharedArrayBuffer(8));
    const worker = startHelperThread(
      'const c = require("node:worker_threads").workerData; Atomics.store(c, 0, 1); Atomics.notify(c, 0); Atomics.wait(c, 1, 0);',
      HELPER_THREAD_NAMES.earlyVerify,
      { eval: true, workerData: control },
      probe(null, 0),
    );
    expect(worker).not.toBeNull();
    try {
      await expect.poll(() => Atomics.load(control, 0), { timeout: 10_000 }).toBe(1);
      const names = fs.readdirSync('/proc/self/task').map((thread) => {
        try {
          return fs.readFileSync(`/proc/self/task/${thread}/comm`, 'utf8').trim();
        } catch {
          return '';
        }
      });
      expect(names).toContain('cb-early-verify');
    } finally {
      Atomics.store(control, 1, 1);
      Atomics.notify(control, 1);
      await worker?.terminate();
    }
  });

  it('lets a stopped helper end on its own (exit code 0), and terminates one that does not end (exit code 1)', async () => {
    // Each helper waits until told to stop through shared memory; the second never looks.
    const control = new Int32Array(new SharedArrayBuffer(8));
    const polite = startHelperThread('const c = require("node:worker_threads").workerData; while (Atomics.load(c, 0) === 0) Atomics.wait(c, 0, 0);', HELPER_THREAD_NAMES.compress, { eval: true, workerData: control }, probe(null, 0));
    const deaf = startHelperThread('const c = require("node:worker_threads").workerData; Atomics.store(c, 1, 1); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);', HELPER_THREAD_NAMES.compress, { eval: true, workerData: control }, probe(null, 0));
    if (polite === null || deaf === null) throw new Error('no helper thread started');
    const exits = [polite, deaf].map((worker) => new Promise<number>((resolve) => worker.once('exit', resolve)));
    // A thread terminated before its script runs exits with 0 too: wait until the deaf one waits.
    await expect.poll(() => Atomics.load(control, 1), { timeout: 10_000 }).toBe(1);
    Atomics.store(control, 0, 1);
    Atomics.notify(control, 0);
    endHelperThread(polite, 60_000);
    endHelperThread(deaf, 50);
    expect(await exits[0]).toBe(0);
    expect(await exits[1]).toBe(1);
  });

  it('a compressor whose helpers cannot start compresses every cluster on the caller\'s thread', () => {
    resetHelperThreadNotice(() => {});
    const clusterBytes = 65536;
    const input = new Uint8Array(8 * clusterBytes);
    for (let index = 0; index < 8; index++) input.set(compressibleBytes(clusterBytes, index), index * clusterBytes);
    // The real probe, under a limit just below what this process maps: no room.
    const original = procThreadRoomProbe.limitBytes;
    procThreadRoomProbe.limitBytes = () => procThreadRoomProbe.usedBytes() + MiB;
    try {
      const compressor = threadedCompressor(0, clusterBytes, 8, 2);
      const results = compressor.compress(input, 8);
      expect(compressor.threadsReady()).toBe(1);
      compressor.close();
      results.forEach((result, index) => {
        expect(result).not.toBeNull();
        expect(Buffer.from(decompressCluster(0, result ?? new Uint8Array(0), clusterBytes)).equals(Buffer.from(input.subarray(index * clusterBytes, (index + 1) * clusterBytes)))).toBe(true);
      });
    } finally {
      procThreadRoomProbe.limitBytes = original;
    }
  });
});
