import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allocationMap, readAllocationMap } from '../../../src/shared/qcow2/snapshots/allocation-map.ts';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { mapImage } from '../../../src/shared/qcow2/image/map.ts';
import type { AllocationMap, MapEntry } from '../../../src/shared/qcow2/model.ts';
import { qemuImg, qemuImgTimingPbkdf2, qemuIo, qemuMap, tempDir, type QemuMapEntry, type TempDir } from '../../helpers/qemu.ts';

const MiB = 1024 * 1024;

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

function ourMap(imagePath: string): MapEntry[] {
  const image = Qcow2Image.open(imagePath, { readOnly: true });
  try {
    return mapImage(image);
  } finally {
    image.close();
  }
}

/** qemu-img 7.2 has no "compressed" key: compare without it, and check it separately. */
function withoutCompressed(entries: MapEntry[]): QemuMapEntry[] {
  return entries.map(({ compressed: _compressed, ...rest }) => rest);
}

async function expectSameMap(imagePath: string): Promise<MapEntry[]> {
  const ours = ourMap(imagePath);
  expect(withoutCompressed(ours)).toEqual(await qemuMap(imagePath));
  return ours;
}

async function create(name: string, size: string, options: string[] = []): Promise<string> {
  const file = folder.file(name);
  await qemuImg(['create', '-q', '-f', 'qcow2', ...options, file, size]);
  return file;
}

describe('mapImage agrees with qemu-img map --output=json', () => {
  it('data, zero clusters (with and without a host cluster) and discarded ranges', async () => {
    const image = await create('plain.qcow2', '8M');
    await qemuIo(image, ['write -P 1 0 192k', 'write -P 2 1M 64k', 'write -z 2M 128k', 'write -P 3 3M 128k', 'write -z 3M 64k', 'discard 1M 64k', 'write -P 4 7M 1M']);
    const entries = await expectSameMap(image);
    expect(entries.some((entry) => entry.zero && entry.present && entry.offset !== undefined)).toBe(true);
    expect(entries.some((entry) => entry.zero && entry.present && entry.offset === undefined)).toBe(true);
  });

  it('compressed clusters are data without an offset, flagged compressed', async () => {
    const source = await create('to-compress.qcow2', '4M');
    await qemuIo(source, ['write -P 7 0 1M', 'write -P 8 2M 256k']);
    const image = folder.file('compressed.qcow2');
    await qemuImg(['convert', '-c', '-O', 'qcow2', source, image]);
    await qemuIo(image, ['write -P 9 1M 64k']);
    const entries = await expectSameMap(image);
    const compressed = entries.filter((entry) => entry.compressed);
    expect(compressed.map((entry) => [entry.start, entry.length])).toEqual([
      [0, 1048576],
      [2097152, 262144],
    ]);
    for (const entry of entries) expect(entry.compressed).toBe(entry.data && entry.offset === undefined);
  });

  it('a backing chain of three, the top larger than its backing file', async () => {
    const base = await create('chain-base.qcow2', '4M');
    await qemuIo(base, ['write -P 1 0 2M', 'write -z 3M 64k']);
    const middle = await create('chain-middle.qcow2', '4M', ['-b', 'chain-base.qcow2', '-F', 'qcow2']);
    await qemuIo(middle, ['write -P 2 512k 128k', 'write -z 1M 64k']);
    const top = await create('chain-top.qcow2', '6M', ['-b', 'chain-middle.qcow2', '-F', 'qcow2']);
    await qemuIo(top, ['write -P 3 64k 64k', 'write -P 4 5M 64k']);
    const entries = await expectSameMap(top);
    expect(new Set(entries.map((entry) => entry.depth))).toEqual(new Set([0, 1, 2]));
  });

  it('a raw backing file', async () => {
    const raw = folder.file('backing.raw');
    fs.writeFileSync(raw, Buffer.alloc(3 * 1024 * 1024 + 1000, 5));
    const top = await create('over-raw.qcow2', '4M', ['-b', 'backing.raw', '-F', 'raw']);
    await qemuIo(top, ['write -P 6 1M 64k']);
    await expectSameMap(top);
  });

  it('extended L2 subclusters, over a backing file and alone', async () => {
    const base = await create('ext-base.qcow2', '2M');
    await qemuIo(base, ['write -P 1 0 1M']);
    const top = await create('ext-top.qcow2', '2M', ['-o', 'extended_l2=on', '-b', 'ext-base.qcow2', '-F', 'qcow2']);
    await qemuIo(top, ['write -P 2 0 4k', 'write -z 8k 2k', 'write -P 3 70k 6k', 'write -z 512k 64k', 'write -z 640k 4k']);
    await expectSameMap(top);
    const alone = await create('ext-alone.qcow2', '1M', ['-o', 'extended_l2=on,cluster_size=32k']);
    await qemuIo(alone, ['write -P 1 0 1k', 'write -P 3 8k 2k', 'write -z 64k 4k', 'write -z 128k 32k']);
    await expectSameMap(alone);
  });

  it('preallocation=metadata: data clusters over the file\'s holes read as zeros, with their offsets (an external data file\'s too)', async () => {
    const image = await create('preallocated.qcow2', '64M', ['-o', 'preallocation=metadata']);
    await qemuIo(image, ['write -P 1 0 100k', 'write -P 2 8M 4k', 'write -z 16M 1M']);
    const entries = await expectSameMap(image);
    expect(entries.some((entry) => entry.data && entry.zero && entry.offset !== undefined)).toBe(true);
    expect(entries.filter((entry) => entry.data && !entry.zero).reduce((sum, entry) => sum + entry.length, 0)).toBeLessThan(MiB);
    const external = await create('preallocated-external.qcow2', '16M', ['-o', `preallocation=metadata,data_file=${folder.file('preallocated-external.raw')}`]);
    await qemuIo(external, ['write -P 3 1M 64k']);
    await expectSameMap(external);
    // An ordinary image with a hole punched in a data cluster: QEMU does not ask (nor does Cowbell), so it maps as data.
    // (64 data clusters: one hole is well under QEMU's threshold; in a tiny image it would not be.)
    const ordinary = await create('punched.qcow2', '8M');
    await qemuIo(ordinary, ['write -P 4 0 4M']);
    const dataOffset = (await qemuMap(ordinary))[0]?.offset ?? 0;
    execFileSync('fallocate', ['--punch-hole', '--offset', String(dataOffset + 64 * 1024), '--length', '65536', ordinary]);
    expect((await expectSameMap(ordinary)).filter((entry) => entry.data).every((entry) => !entry.zero)).toBe(true);
  });

  it('an encrypted image: data without host offsets', async () => {
    const image = folder.file('encrypted.qcow2');
    const secret = ['--object', 'secret,id=sec0,data=cowbell'];
    const opened = `driver=qcow2,file.filename=${image},encrypt.key-secret=sec0`;
    await qemuImgTimingPbkdf2(['create', '-q', '-f', 'qcow2', ...secret, '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', image, '2M']);
    execFileSync('qemu-io', [...secret, '--image-opts', opened, '-c', 'write -P 1 0 128k', '-c', 'write -P 2 1M 64k']);
    const qemu = JSON.parse((await qemuImg(['map', ...secret, '--image-opts', opened, '--output=json'])).stdout) as QemuMapEntry[];
    const ours = ourMap(image);
    expect(withoutCompressed(ours)).toEqual(qemu);
    expect(ours.filter((entry) => entry.data).map((entry) => [entry.start, entry.length, entry.offset])).toEqual([
      [0, 131072, undefined],
      [1048576, 65536, undefined],
    ]);
  }, 60_000);

  it('compat 0.10 with 512-byte clusters and a size that is not a whole number of clusters', async () => {
    const image = await create('v2.qcow2', '1000k', ['-o', 'compat=0.10,cluster_size=512']);
    await qemuIo(image, ['write -P 1 0 5k', 'write -P 2 200k 1k', 'write -P 3 999k 1k']);
    await expectSameMap(image);
  });
});

describe('allocationMap', () => {
  /** The counts an allocation map must have, worked out from map runs. */
  function countsFromMap(entries: MapEntry[], cellBytes: number, cellCount: number): Pick<AllocationMap, 'data' | 'zero' | 'compressed' | 'unallocated' | 'backing'> {
    const counts = { data: [], zero: [], compressed: [], unallocated: [], backing: [] } as Record<'data' | 'zero' | 'compressed' | 'unallocated' | 'backing', number[]>;
    for (const list of Object.values(counts)) for (let cell = 0; cell < cellCount; cell++) list.push(0);
    for (const entry of entries) {
      let state: keyof typeof counts;
      if (entry.depth > 0) state = entry.present ? 'backing' : 'unallocated';
      else if (!entry.present) state = 'unallocated';
      else state = entry.zero ? 'zero' : entry.compressed ? 'compressed' : 'data';
      for (let position = entry.start; position < entry.start + entry.length; ) {
        const cell = Math.floor(position / cellBytes);
        const end = Math.min(entry.start + entry.length, (cell + 1) * cellBytes);
        counts[state][cell] = (counts[state][cell] ?? 0) + end - position;
        position = end;
      }
    }
    return counts;
  }

  async function expectAgreesWithMap(imagePath: string, cells: number): Promise<AllocationMap> {
    const image = Qcow2Image.open(imagePath, { readOnly: true });
    try {
      const result = allocationMap(image, image.l1, cells);
      const { data, zero, compressed, unallocated, backing } = result;
      expect({ data, zero, compressed, unallocated, backing }).toEqual(countsFromMap(mapImage(image), result.cellBytes, result.cellCount));
      expect(result.cellCount).toBeLessThanOrEqual(cells);
      expect(result.cellBytes % image.clusterBytes).toBe(0);
      return result;
    } finally {
      image.close();
    }
  }

  it('agrees with map on a chain with compressed, zero and extended-L2 clusters', async () => {
    const source = await create('am-source.qcow2', '4M');
    await qemuIo(source, ['write -P 7 0 1M']);
    const compressed = folder.file('am-compressed.qcow2');
    await qemuImg(['convert', '-c', '-O', 'qcow2', source, compressed]);
    const top = await create('am-top.qcow2', '6M', ['-o', 'extended_l2=on', '-b', 'am-compressed.qcow2', '-F', 'qcow2']);
    await qemuIo(top, ['write -P 2 512k 6k', 'write -z 2M 64k', 'write -P 3 5M 128k']);
    for (const cells of [1, 7, 96, 65536]) await expectAgreesWithMap(top, cells);
    const result = await expectAgreesWithMap(top, 96);
    expect(result.cellCount).toBe(96);
    expect(result.compressed.reduce((sum, value) => sum + value, 0)).toBe(0);
    expect(result.backing.reduce((sum, value) => sum + value, 0)).toBe(1024 * 1024 - 6 * 1024);
    await expectAgreesWithMap(compressed, 16);
  });

  it('maps a sparse 1 TiB disk from its L1 table alone', async () => {
    const image = await create('huge.qcow2', '1T');
    await qemuIo(image, ['write -P 1 100G 1M', 'write -z 200G 64k']);
    const result = await expectAgreesWithMap(image, 65536);
    expect(result.cellBytes).toBe(16 * 1024 * 1024);
    expect(result.data.reduce((sum, value) => sum + value, 0)).toBe(1024 * 1024);
    expect(result.zero[(200 * 1024) / 16]).toBe(65536);
  });

  it('maps a snapshot as it was taken', async () => {
    const image = await create('snapshots.qcow2', '4M');
    await qemuIo(image, ['write -P 1 0 1M']);
    await qemuImg(['snapshot', '-c', 'before', image]);
    await qemuIo(image, ['write -P 2 2M 1M', 'discard 0 512k']);
    const reverted = folder.file('snapshots-reverted.qcow2');
    fs.copyFileSync(image, reverted);
    await qemuImg(['snapshot', '-a', 'before', reverted]);
    const ofSnapshot = readAllocationMap(image, { snapshot: 'before', cells: 64 });
    const ofReverted = readAllocationMap(reverted, { cells: 64 });
    expect(ofSnapshot).toEqual(ofReverted);
    expect(ofSnapshot.data.reduce((sum, value) => sum + value, 0)).toBe(1024 * 1024);
    expect(readAllocationMap(image, { cells: 64 })).not.toEqual(ofSnapshot);
    expect(() => readAllocationMap(image, { snapshot: 'nope', cells: 4 })).toThrow(expect.objectContaining({ code: 'SNAPSHOT_NOT_FOUND' }));
  });

  it('refuses a cell count out of range', async () => {
    const image = await create('cells.qcow2', '1M');
    for (const cells of [0, 65537, 1.5]) {
      expect(() => readAllocationMap(image, { cells })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
  });
});

describe('hostile tables', () => {
  it('an L2 entry with an unaligned host offset is CORRUPT, not a wrong map', async () => {
    const image = await create('unaligned.qcow2', '1M');
    await qemuIo(image, ['write -P 1 0 64k']);
    const bytes = fs.readFileSync(image);
    const l1Offset = Number(bytes.readBigUInt64BE(40));
    const l2Offset = Number(bytes.readBigUInt64BE(l1Offset) & 0x00ff_ffff_ffff_fe00n);
    const entry = bytes.readBigUInt64BE(l2Offset);
    bytes.writeBigUInt64BE(entry + 512n, l2Offset);
    fs.writeFileSync(image, bytes);
    let error: unknown;
    try {
      ourMap(image);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(Qcow2Error);
    expect((error as Qcow2Error).code).toBe('CORRUPT');
  });
});
