/**
 * `cowbell convert --rescue`: a damaged disk is copied as far as it can be read, the unreadable
 * ranges are listed (a table and a total, or JSON), and exit code 3 says some were.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRescue } from '../../src/cli/rescue-report.ts';
import { run } from '../helpers/cli.ts';
import { COPIED, layout, readU64, writeU64 } from '../helpers/qcow2-poke.ts';
import { qemuCheck, qemuImg, qemuIo, tempDir, type TempDir } from '../helpers/qemu.ts';

const MiB = 1024 * 1024;

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

let counter = 0;
function fresh(name: string): string {
  counter++;
  return folder.file(`${counter}-${name}`);
}

/** 4 KiB clusters (an L2 table maps 2 MiB), data in every table's range, and a snapshot. */
async function diskWithSnapshot(): Promise<string> {
  const image = fresh('disk.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', image, '8M']);
  await qemuIo(image, ['write -P 0x11 0 1M', 'write -P 0x22 2M 1M', 'write -P 0x33 4M 1M', 'write -P 0x44 6M 1M']);
  await qemuImg(['snapshot', '-c', 'first', image]);
  return image;
}

/** Makes L1 entry `index` of the current state point one sector past its L2 table. */
function misalignL2(image: string, index: number): void {
  const at = layout(image).l1Offset + index * 8;
  writeU64(image, at, readU64(image, at) + 0x200n);
}

function sha(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

describe('cowbell convert --rescue', () => {
  it('copies what it can, lists the unreadable range in a table with a total, and exits 3', async () => {
    const image = await diskWithSnapshot();
    misalignL2(image, 1);
    const before = sha(image);
    const strict = await run('convert', '-O', 'raw', image, fresh('strict.raw'));
    expect(strict.code).toBe(1);
    expect(strict.err).toMatch(/unaligned L2 table .*\(convert --rescue copies what can be read\)\n$/);

    const output = fresh('rescued.raw');
    const result = await run('convert', '--rescue', '-O', 'raw', image, output);
    expect(result.code).toBe(3);
    const lines = result.out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^guest offset\s+length\s+reason\s+detail$/);
    expect(lines[1]).toMatch(/^0x200000\s+2 MiB\s+L2_UNALIGNED\s+L1 entry 1 points to an unaligned L2 table/);
    expect(lines.at(-1)).toBe(`Unreadable: 2 MiB (25.00% of the disk) in 1 range, written as zeros in ${output}.`);
    expect(result.err).toMatch(/a raw disk holds no snapshots/);
    expect(sha(image)).toBe(before);
    const copied = fs.readFileSync(output);
    expect(copied.subarray(2 * MiB, 4 * MiB).every((byte) => byte === 0)).toBe(true);
    expect(copied.subarray(0, MiB).every((byte) => byte === 0x11)).toBe(true);
    expect(copied.subarray(6 * MiB, 7 * MiB).every((byte) => byte === 0x44)).toBe(true);
  });

  it('--json prints every range; a qcow2 output is clean', async () => {
    const image = await diskWithSnapshot();
    misalignL2(image, 2);
    writeU64(image, layout(image).l1Offset + 3 * 8, COPIED | BigInt(Math.ceil(layout(image).fileSize / MiB) * MiB + 64 * MiB));
    const output = fresh('rescued.qcow2');
    const result = await run('convert', '--rescue', '--json', '-O', 'qcow2', image, output);
    expect(result.code).toBe(3);
    expect(JSON.parse(result.out)).toEqual({
      'virtual-size': 8 * MiB,
      'unreadable-bytes': 4 * MiB,
      unreadable: [
        { start: 4 * MiB, length: 2 * MiB, reason: 'L2_UNALIGNED', detail: expect.any(String) as string },
        { start: 6 * MiB, length: 2 * MiB, reason: 'L2_OUT_OF_FILE', detail: expect.any(String) as string },
      ],
    });
    expect(result.err).toMatch(/a rescue copies one state/);
    expect((await qemuCheck(output)).code).toBe(0);
    expect((await qemuInfoSnapshots(output)).length).toBe(0);
  });

  it("-l copies a snapshot's state, which the damage to the current state does not touch: exit 0", async () => {
    const image = await diskWithSnapshot();
    await qemuIo(image, ['write -P 0x55 2M 64k']);
    misalignL2(image, 1);
    const output = fresh('snapshot.raw');
    const result = await run('convert', '--rescue', '-l', 'first', '-O', 'raw', image, output);
    expect(result).toMatchObject({ code: 0, out: `Everything was read: ${output} holds the whole disk.\n` });
    expect(fs.readFileSync(output).subarray(2 * MiB, 3 * MiB).every((byte) => byte === 0x22)).toBe(true);
  });

  it('a disk cut short before its snapshot table (qemu-img still reads it) gives its current state whole: exit 0', async () => {
    const image = await diskWithSnapshot();
    // The snapshot table's offset (header bytes 64–71), the last thing written: the file is cut there, as a copy stopped short would be.
    const tableOffset = Number(readU64(image, 64));
    expect(tableOffset).toBeGreaterThan(0);
    fs.truncateSync(image, tableOffset);
    const before = sha(image);
    const theirs = fresh('truncated-qemu.raw');
    await qemuImg(['convert', '-O', 'raw', image, theirs]);
    const output = fresh('truncated.raw');
    const result = await run('convert', '--rescue', '-O', 'raw', image, output);
    expect(result).toMatchObject({ code: 0, out: `Everything was read: ${output} holds the whole disk.\n` });
    expect(sha(output)).toBe(sha(theirs));
    expect(sha(image)).toBe(before);
  });

  it('the human table shows the first 20 ranges and says how many more --json lists', () => {
    const unreadable = Array.from({ length: 23 }, (_, index) => ({ start: index * 2 * MiB, length: 4096, reason: 'CLUSTER_OUT_OF_FILE' as const, detail: `L2 table at 0x5000, entry ${index * 512} points past the end of the file` }));
    const lines = describeRescue({ virtualSize: 64 * MiB, dataBytes: 0, compressedBytes: 0, zeroBytes: 0, backingBytes: 0, unreadable }, '/vms/out.img').trimEnd().split('\n');
    expect(lines).toHaveLength(1 + 20 + 2);
    expect(lines[20]).toMatch(/^0x2600000\s+4 KiB\s+CLUSTER_OUT_OF_FILE\s+L2 table at 0x5000, entry 9728/);
    expect(lines[21]).toBe('… and 3 more (--json lists them all)');
    expect(lines[22]).toBe('Unreadable: 92 KiB (0.14% of the disk) in 23 ranges, written as zeros in /vms/out.img.');
  });

  it('--json needs --rescue, and the help documents exit code 3', async () => {
    const image = await diskWithSnapshot();
    const refused = await run('convert', '--json', image, fresh('x.raw'));
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/--json prints the --rescue report/);
    const help = await run('convert', '--help');
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/--rescue/);
    expect(help.out).toMatch(/3 \(--rescue\) copied with unreadable ranges/);
  });
});

async function qemuInfoSnapshots(image: string): Promise<unknown[]> {
  const info = JSON.parse((await qemuImg(['info', '--output=json', image])).stdout) as { snapshots?: unknown[] };
  return info.snapshots ?? [];
}
