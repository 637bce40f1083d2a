/** The write-joining file commit and rebase write through: same bytes, same order at flushes, and a failed held write stops every later change. */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeBlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { CoalescingFile } from '../../../src/shared/qcow2/io/coalescing-file.ts';
import { FailingFile } from '../../helpers/failing-file.ts';
import { FaultFile } from '../../helpers/fault-file.ts';
import { tempDir, type TempDir } from '../../helpers/qemu.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

describe('CoalescingFile', () => {
  it('joins writes that continue one another, and writes what it holds before a read, a write elsewhere or a flush', () => {
    const inner = new FaultFile('/disk', new Uint8Array(0));
    const file = new CoalescingFile(inner);
    file.write(new Uint8Array(1000).fill(1), 0);
    file.write(new Uint8Array(1000).fill(2), 1000);
    expect(inner.log).toEqual([]);
    const back = new Uint8Array(2000);
    expect(file.read(back, 0)).toBe(2000);
    expect(back.subarray(999, 1001)).toEqual(new Uint8Array([1, 2]));
    expect(inner.log.map((event) => (event.kind === 'write' ? `write ${event.position}+${event.bytes.length}` : event.kind))).toEqual(['write 0+2000']);
    file.write(new Uint8Array(10).fill(3), 5000);
    file.write(new Uint8Array(10).fill(4), 100);
    file.flush();
    expect(inner.log.map((event) => (event.kind === 'write' ? `write ${event.position}+${event.bytes.length}` : event.kind))).toEqual(['write 0+2000', 'write 5000+10', 'write 100+10', 'flush']);
    expect(inner.contents().subarray(100, 102)).toEqual(new Uint8Array([4, 4]));
  });

  it('a held write that fails when a read sends it out fails every later write and flush', () => {
    const inner = new FailingFile(new FaultFile('/disk', new Uint8Array(0)), { event: 0, code: 'ENOSPC' });
    const file = new CoalescingFile(inner);
    file.write(new Uint8Array(512), 0);
    expect(() => file.read(new Uint8Array(512), 0)).toThrow(/ENOSPC/);
    expect(() => file.write(new Uint8Array(512), 4096)).toThrow(/ENOSPC/);
    expect(() => file.flush()).toThrow(/ENOSPC/);
  });

  it('with startWriteback, a real file ends with the same bytes as direct writes (joined, scattered and 4 MiB ones, past several writeback steps)', () => {
    const random = new SeededRandom(20);
    const KiB = 1024;
    // Runs of 64 KiB pieces (joined), pieces far back (in place), and whole 4 MiB writes: 40 MiB in all.
    const plan: { position: number; bytes: Uint8Array }[] = [];
    for (let run = 0; run < 8; run++) {
      for (let piece = 0; piece < 48; piece++) plan.push({ position: (run * 48 + piece) * 64 * KiB, bytes: random.bytes(64 * KiB) });
      plan.push({ position: run * 512 * KiB + 4 * KiB, bytes: random.bytes(4 * KiB) });
      plan.push({ position: (8 * 48 * 64 + run * 4096) * KiB, bytes: random.bytes(4096 * KiB) });
    }
    const direct = NodeBlockFile.open(folder.file('direct.bin'), { create: true });
    const joined = new CoalescingFile(NodeBlockFile.open(folder.file('joined.bin'), { create: true }), { startWriteback: true });
    for (const { position, bytes } of plan) {
      direct.write(bytes, position);
      joined.write(bytes, position);
    }
    direct.close();
    joined.flush();
    joined.close();
    expect(fs.readFileSync(folder.file('joined.bin')).equals(fs.readFileSync(folder.file('direct.bin')))).toBe(true);
  });

  it('with startWriteback on a file without a descriptor (a test double), writes as without it', () => {
    const inner = new FaultFile('/disk', new Uint8Array(0));
    const file = new CoalescingFile(inner, { startWriteback: true });
    for (let piece = 0; piece < 200; piece++) file.write(new Uint8Array(65536).fill(piece), piece * 65536);
    file.flush();
    // Joined into writes of 1 MiB (what the file holds at most), the last one shorter.
    const MiB = 1024 * 1024;
    const joined = Array.from({ length: 12 }, (_, index) => `write ${index * MiB}+${MiB}`);
    expect(inner.log.map((event) => (event.kind === 'write' ? `write ${event.position}+${event.bytes.length}` : event.kind))).toEqual([...joined, `write ${12 * MiB}+${200 * 65536 - 12 * MiB}`, 'flush']);
    expect(inner.contents()[199 * 65536]).toBe(199);
  });
});
