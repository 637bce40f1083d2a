/**
 * Truncated, corrupted and hostile images: each fails with its typed Qcow2Error code and a message
 * a user can act on, never a raw TypeError/RangeError, a hang or an unbounded allocation.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ErrorCode } from '../../../src/shared/qcow2/errors.ts';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { readImageInfo } from '../../../src/shared/qcow2/image/info.ts';
import { MemoryBlockFile } from '../../helpers/memory-block-file.ts';
import { qemuImg, qemuInfo, qemuIo, runTool, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { compressibleBytes } from '../../helpers/seeded-random.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

let imageCounter = 0;

/** A 1 MiB qemu-img image with 64 KiB clusters and 128 KiB of data (so it has an L2 table): header, refcount table, refcount block, L1, L2, data. */
async function qemuImage(createOptions = 'compat=1.1'): Promise<string> {
  const image = folder.file(`image-${imageCounter++}.qcow2`);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', createOptions, image, '1M']);
  await qemuIo(image, ['write -P 0x11 0 128k']);
  return image;
}

function patch(file: string, offset: number, bytes: Uint8Array): void {
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, bytes, 0, bytes.length, offset);
  fs.closeSync(fd);
}

function be32(value: number): Uint8Array {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value);
  return bytes;
}

function be64(value: bigint): Uint8Array {
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64BE(value);
  return bytes;
}

function readBe64(file: string, offset: number): bigint {
  const bytes = Buffer.alloc(8);
  const fd = fs.openSync(file, 'r');
  fs.readSync(fd, bytes, 0, 8, offset);
  fs.closeSync(fd);
  return bytes.readBigUInt64BE();
}

/** Runs `action` and returns what it threw, failing the test if it threw nothing or not a Qcow2Error with `code`. */
function expectFailure(action: () => unknown, code: ErrorCode): Qcow2Error {
  let thrown: unknown = null;
  try {
    action();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, 'the operation should have failed').not.toBeNull();
  expect(thrown).toBeInstanceOf(Qcow2Error);
  const error = thrown as Qcow2Error;
  expect({ code: error.code, message: error.message }).toMatchObject({ code });
  expect(error.message.length).toBeGreaterThan(10);
  return error;
}

function openAndReadAll(image: string): void {
  const opened = Qcow2Image.open(image, { readOnly: true });
  try {
    opened.read(0, opened.virtualSize);
  } finally {
    opened.close();
  }
}

/** The host offset of the first L2 table, from L1 entry 0 of a 64 KiB-cluster image. */
function firstL2Offset(image: string): number {
  const l1Offset = Number(readBe64(image, 40));
  return Number(readBe64(image, l1Offset) & 0x00ff_ffff_ffff_fe00n);
}

describe('images that are not qcow2, or are cut short', { timeout: 30_000 }, () => {
  it('a file that does not start with the qcow2 magic fails with BAD_MAGIC', () => {
    const file = folder.file('text.img');
    fs.writeFileSync(file, 'hello, this is not a disk image\n'.repeat(100));
    expectFailure(() => Qcow2Image.open(file, { readOnly: true }), 'BAD_MAGIC');
    expectFailure(() => readImageInfo(file), 'BAD_MAGIC');
  });

  it('an empty file fails with TRUNCATED', () => {
    const file = folder.file('empty.qcow2');
    fs.writeFileSync(file, '');
    expectFailure(() => Qcow2Image.open(file, { readOnly: true }), 'TRUNCATED');
  });

  it('a header cut at 40 bytes (v2 and v3) or at 100 bytes (v3) fails with TRUNCATED', async () => {
    for (const [options, length] of [['compat=0.10', 40], ['compat=1.1', 40], ['compat=1.1', 100]] as const) {
      const image = await qemuImage(options);
      fs.truncateSync(image, length);
      expectFailure(() => Qcow2Image.open(image, { readOnly: true }), 'TRUNCATED');
    }
  });

  it('an image cut inside its L1 table fails with TRUNCATED; cut after it, reading fails with CORRUPT at the missing L2 table', async () => {
    const image = await qemuImage();
    const l1Offset = Number(readBe64(image, 40));
    fs.truncateSync(image, l1Offset + 4);
    expectFailure(() => Qcow2Image.open(image, { readOnly: true }), 'TRUNCATED');
    const later = await qemuImage();
    fs.truncateSync(later, l1Offset + 8);
    const error = expectFailure(() => openAndReadAll(later), 'CORRUPT');
    expect(error.message).toMatch(/L2 table .* past the end of the file/);
  });

  it('an L1 table offset past the end of the file fails with TRUNCATED', async () => {
    const image = await qemuImage();
    patch(image, 40, be64(0x1000_0000n));
    const error = expectFailure(() => Qcow2Image.open(image, { readOnly: true }), 'TRUNCATED');
    expect(error.message).toMatch(/L1/);
  });

  it('a refcount table past the end of the file fails with TRUNCATED', async () => {
    const image = await qemuImage();
    patch(image, 48, be64(0x1000_0000n));
    const error = expectFailure(() => Qcow2Image.open(image, { readOnly: true }), 'TRUNCATED');
    expect(error.message).toMatch(/[Rr]efcount/);
  });

  it('a snapshot table past the end of the file fails with TRUNCATED', async () => {
    const image = await qemuImage();
    await qemuImg(['snapshot', '-c', 'S', image]);
    patch(image, 64, be64(0x1000_0000n));
    expectFailure(() => Qcow2Image.open(image, { readOnly: true }), 'TRUNCATED');
  });
});

describe('header fields Cowbell cannot or must not accept', { timeout: 30_000 }, () => {
  it('version 4 (and version 1) fail with UNSUPPORTED_VERSION', async () => {
    for (const version of [4, 1]) {
      const image = await qemuImage();
      patch(image, 4, be32(version));
      const error = expectFailure(() => Qcow2Image.open(image, { readOnly: true }), 'UNSUPPORTED_VERSION');
      expect(error.message).toContain(String(version));
    }
  });

  it('an unknown incompatible feature fails with UNSUPPORTED_FEATURE and is named when the feature table names it', async () => {
    const image = await qemuImage();
    const header = fs.readFileSync(image).subarray(0, 4096);
    // qemu-img writes a feature name table for clusters over 4 KiB; give its first entry to bit 9.
    const tableStart = header.indexOf(Buffer.from([0x68, 0x03, 0xf8, 0x57])) + 8;
    expect(tableStart).toBeGreaterThan(8);
    const entry = new Uint8Array(48);
    entry[0] = 0;
    entry[1] = 9;
    entry.set(new TextEncoder().encode('frobnicated clusters'), 2);
    patch(image, tableStart, entry);
    patch(image, 72, be64(1n << 9n));
    const named = expectFailure(() => Qcow2Image.open(image, { readOnly: true }), 'UNSUPPORTED_FEATURE');
    expect(named.message).toContain('frobnicated clusters');

    patch(image, 72, be64(1n << 40n));
    const unnamed = expectFailure(() => Qcow2Image.open(image, { readOnly: true }), 'UNSUPPORTED_FEATURE');
    expect(unnamed.message).toMatch(/0x10000000000/);
    expectFailure(() => readImageInfo(image), 'UNSUPPORTED_FEATURE');
  });

  it('cluster_bits 30 (and 8) fail with CORRUPT', async () => {
    for (const bits of [30, 8]) {
      const image = await qemuImage();
      patch(image, 20, be32(bits));
      expectFailure(() => Qcow2Image.open(image, { readOnly: true }), 'CORRUPT');
    }
  });

  it('sizes that would size memory (L1 entries, refcount table clusters, snapshot count, refcount order) fail with CORRUPT', async () => {
    const patches: [number, Uint8Array][] = [
      [36, be32(0x1000_0000)],
      [56, be32(0x0100_0000)],
      [60, be32(0x0010_0000)],
      [96, be32(7)],
    ];
    for (const [offset, bytes] of patches) {
      const image = await qemuImage();
      patch(image, offset, bytes);
      expectFailure(() => Qcow2Image.open(image, { readOnly: true }), 'CORRUPT');
    }
  });

  it('a header extension running past the header cluster fails with CORRUPT', async () => {
    const image = await qemuImage();
    patch(image, 112 + 4, be32(0x10_0000));
    expectFailure(() => Qcow2Image.open(image, { readOnly: true }), 'CORRUPT');
  });

  it('a backing file name outside the header cluster fails with CORRUPT', async () => {
    const image = await qemuImage();
    patch(image, 8, be64(65530n));
    patch(image, 16, be32(100));
    expectFailure(() => Qcow2Image.open(image, { readOnly: true }), 'CORRUPT');
  });

  it('an encrypted image opens without its passphrase, but reading its data fails with LOCKED', async () => {
    const image = await qemuImage('compat=0.10');
    patch(image, 32, be32(1));
    const opened = Qcow2Image.open(image, { readOnly: true });
    try {
      expectFailure(() => opened.read(0, 512), 'LOCKED');
    } finally {
      opened.close();
    }
  });
});

describe('corrupt tables and clusters', { timeout: 30_000 }, () => {
  it('an unaligned L2 table offset opens, then fails with CORRUPT on read', async () => {
    const image = await qemuImage();
    const l1Offset = Number(readBe64(image, 40));
    patch(image, l1Offset, be64(readBe64(image, l1Offset) + 512n));
    const opened = Qcow2Image.open(image, { readOnly: true });
    try {
      const error = expectFailure(() => opened.read(0, 4096), 'CORRUPT');
      expect(error.message).toMatch(/unaligned/);
    } finally {
      opened.close();
    }
  });

  it('an L2 table past the end of the file fails with CORRUPT on read', async () => {
    const image = await qemuImage();
    const l1Offset = Number(readBe64(image, 40));
    patch(image, l1Offset, be64((1n << 63n) | 0x4000_0000n));
    expectFailure(() => openAndReadAll(image), 'CORRUPT');
  });

  for (const compression of ['zlib', 'zstd'] as const) {
    it(`a ${compression}-compressed cluster holding garbage, or lying past the end of the file, fails with CORRUPT`, async () => {
      const source = folder.file(`compressible-${compression}.raw`);
      fs.writeFileSync(source, compressibleBytes(1024 * 1024, 7));
      const image = folder.file(`compressed-${compression}.qcow2`);
      await qemuImg(['convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', `compression_type=${compression}`, source, image]);
      // 64 KiB clusters: a compressed descriptor keeps its host offset in the low 54 bits.
      const entry = readBe64(image, firstL2Offset(image));
      expect(entry & (1n << 62n)).not.toBe(0n);
      const dataOffset = Number(entry & ((1n << 54n) - 1n));
      openAndReadAll(image);

      const garbage = folder.file(`garbage-${compression}.qcow2`);
      fs.copyFileSync(image, garbage);
      patch(garbage, dataOffset, new Uint8Array(64).fill(0xff));
      expectFailure(() => openAndReadAll(garbage), 'CORRUPT');

      const cut = folder.file(`cut-${compression}.qcow2`);
      fs.copyFileSync(image, cut);
      fs.truncateSync(cut, dataOffset + 16);
      expectFailure(() => openAndReadAll(cut), 'CORRUPT');
    });
  }

  it('guest data pointed into metadata (the L1 table) is refused with CORRUPT on write, and the image is left as it was', async () => {
    const image = await qemuImage();
    const l1Offset = Number(readBe64(image, 40));
    const l2Offset = firstL2Offset(image);
    patch(image, l2Offset, be64((1n << 63n) | BigInt(l1Offset)));
    const before = fs.readFileSync(image);
    const opened = Qcow2Image.open(image);
    try {
      expectFailure(() => opened.write(new Uint8Array(512).fill(0xee), 0), 'CORRUPT');
      expectFailure(() => opened.write(new Uint8Array(512), 512), 'READ_ONLY');
    } finally {
      opened.close();
    }
    expect(fs.readFileSync(image).equals(before)).toBe(true);
  });
});

describe('backing chains that cannot be followed', { timeout: 30_000 }, () => {
  it('a backing loop (two images naming each other, or one naming itself) fails with CORRUPT', async () => {
    const loop = folder.file('loop');
    fs.mkdirSync(loop);
    const a = path.join(loop, 'a.qcow2');
    const b = path.join(loop, 'b.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', b, '1M']);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', a]);
    await qemuImg(['rebase', '-u', '-b', 'a.qcow2', '-F', 'qcow2', b]);
    const error = expectFailure(() => Qcow2Image.open(a, { readOnly: true }), 'CORRUPT');
    expect(error.message).toMatch(/loop/);
    const self = path.join(loop, 'self.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', self, '1M']);
    await qemuImg(['rebase', '-u', '-b', 'self.qcow2', '-F', 'qcow2', self]);
    expectFailure(() => Qcow2Image.open(self, { readOnly: true }), 'CORRUPT');
  });

  it('a missing backing file fails with BACKING_NOT_FOUND, while info still describes the image', async () => {
    const image = folder.file('orphan.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-u', '-b', 'gone.qcow2', '-F', 'qcow2', image, '1M']);
    const error = expectFailure(() => Qcow2Image.open(image, { readOnly: true }), 'BACKING_NOT_FOUND');
    expect(error.message).toContain('gone.qcow2');
    expect(readImageInfo(image)['backing-filename']).toBe('gone.qcow2');
  });
});

describe('images that must not be written', { timeout: 30_000 }, () => {
  it('a dirty v3 image (QEMU killed with lazy refcounts) opens read-only with a reason, and writes fail with READ_ONLY', async () => {
    const image = folder.file('dirty.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'lazy_refcounts=on', image, '1M']);
    // SIGABRT (128 + 6) right after the write: the dirty bit stays set, as after a host crash.
    await runTool('sh', ['-c', 'ulimit -c 0; exec qemu-io -f qcow2 -c "write -P 0x22 0 64k" -c abort "$0"', image], { okCodes: [134] });
    expect((await qemuInfo(image))['dirty-flag']).toBe(true);
    const before = fs.readFileSync(image);
    const opened = Qcow2Image.open(image);
    try {
      expect(opened.readOnly).toBe(true);
      expect(opened.readOnlyReason).toMatch(/closed cleanly|repair/);
      expect(opened.read(0, 65536).every((byte) => byte === 0x22)).toBe(true);
      const error = expectFailure(() => opened.write(new Uint8Array(10), 0), 'READ_ONLY');
      expect(error.message).toMatch(/repair/);
      expectFailure(() => opened.writeZeroes(0, 65536), 'READ_ONLY');
      expectFailure(() => opened.discard(0, 65536), 'READ_ONLY');
    } finally {
      opened.close();
    }
    const info = readImageInfo(image);
    expect(info['dirty-flag']).toBe(true);
    expect(info['read-only-reason']).toMatch(/repair/);
    expect(fs.readFileSync(image).equals(before)).toBe(true);
  });

  it('an image marked corrupt opens read-only with a reason, and writes fail with READ_ONLY', async () => {
    const image = await qemuImage();
    patch(image, 72, be64(2n));
    const opened = Qcow2Image.open(image);
    try {
      expect(opened.readOnlyReason).toMatch(/corrupt/);
      expectFailure(() => opened.write(new Uint8Array(10), 0), 'READ_ONLY');
    } finally {
      opened.close();
    }
    expect(readImageInfo(image)['format-specific'].data.corrupt).toBe(true);
  });
});

describe('random damage to metadata', { timeout: 30_000 }, () => {
  /** Offsets of every metadata structure of a small qemu-img image, where damage matters most. */
  function metadataOffsets(bytes: Uint8Array): number[] {
    const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const clusterBytes = 2 ** data.readUInt32BE(20);
    const offsets = [0, 8, 16, 20, 24, 32, 36, 40, 48, 56, 60, 64, 72, 96, 100, 104, 112, 120];
    const l1Offset = Number(data.readBigUInt64BE(40));
    const refcountTable = Number(data.readBigUInt64BE(48));
    const snapshots = Number(data.readBigUInt64BE(64));
    for (let index = 0; index < 4; index++) offsets.push(l1Offset + index * 8, refcountTable + index * 8);
    if (snapshots > 0) for (let index = 0; index < 48; index += 4) offsets.push(snapshots + index);
    const l2 = Number(data.readBigUInt64BE(l1Offset) & 0x00ff_ffff_ffff_fe00n);
    if (l2 > 0) for (let index = 0; index < 64; index += 8) offsets.push(l2 + index);
    const block = Number(data.readBigUInt64BE(refcountTable) & 0xffff_ffff_ffff_fe00n);
    if (block > 0) for (let index = 0; index < 16; index += 2) offsets.push(block + index);
    return offsets.filter((offset) => offset + 8 <= bytes.length || clusterBytes === 0);
  }

  /** Everything a caller might do with an image; only Qcow2Errors may come out. */
  function exercise(bytes: Uint8Array): void {
    const file = new MemoryBlockFile('/fuzz/image.qcow2', bytes);
    const openFile = (filePath: string): MemoryBlockFile => {
      if (filePath === file.path) return file;
      throw new Qcow2Error('NOT_FOUND', `${filePath}: no such file`);
    };
    const onlyQcow2Errors = (action: () => void): void => {
      try {
        action();
      } catch (error) {
        if (!(error instanceof Qcow2Error)) throw error;
      }
    };
    let opened: Qcow2Image | null = null;
    onlyQcow2Errors(() => {
      opened = Qcow2Image.open(file.path, { openFile });
      const image = opened;
      const length = Math.min(image.virtualSize, 1024 * 1024);
      image.read(0, length);
      for (const snapshot of image.snapshots) image.snapshotReader(snapshot).readInto(new Uint8Array(Math.min(length, 256 * 1024)), 0);
      if (!image.readOnly && length > 70_000) {
        image.write(new Uint8Array(5000).fill(0x5a), 60_000);
        image.writeZeroes(0, 65536);
        image.discard(65536, 65536);
        image.flush();
      }
    });
    onlyQcow2Errors(() => (opened as Qcow2Image | null)?.close());
  }

  it('never throws anything but a Qcow2Error, never hangs (seeded; COWBELL_FC_SEED overrides)', { timeout: 120_000 }, async () => {
    const source = folder.file('fuzz.raw');
    const bytes = new Uint8Array(1024 * 1024);
    bytes.set(compressibleBytes(256 * 1024, 3));
    fs.writeFileSync(source, bytes);
    const bases: Uint8Array[] = [];
    for (const options of ['compat=1.1,cluster_size=4096', 'compat=0.10', 'compat=1.1,extended_l2=on,refcount_bits=1']) {
      const image = folder.file(`fuzz-${bases.length}.qcow2`);
      await qemuImg(['convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', options, source, image]);
      await qemuIo(image, ['write -P 0x33 300k 70k', 'write -z 600k 64k']);
      if (!options.includes('refcount_bits=1')) await qemuImg(['snapshot', '-c', 'fuzzed', image]);
      bases.push(new Uint8Array(fs.readFileSync(image)));
    }
    const interesting = [0, 1, 0x7f, 0x80, 0xff];
    const mutation = fc.record({
      base: fc.nat(bases.length - 1),
      edits: fc.array(fc.record({ target: fc.nat(), value: fc.oneof(fc.constantFrom(...interesting), fc.nat(255)), width: fc.constantFrom(1, 4, 8) }), { minLength: 1, maxLength: 6 }),
    });
    const seed = Number(process.env.COWBELL_FC_SEED ?? 424242);
    fc.assert(
      fc.property(mutation, ({ base, edits }) => {
        const original = bases[base] ?? new Uint8Array(0);
        const damaged = original.slice();
        const targets = metadataOffsets(original);
        for (const edit of edits) {
          const offset = targets[edit.target % targets.length] ?? 0;
          // A u32/u64 field set to 0xff.. / 0x7f.. / a small value; a single byte anything.
          for (let index = 0; index < edit.width && offset + index < damaged.length; index++) damaged[offset + index] = index === edit.width - 1 || edit.width === 1 ? edit.value : edit.value >= 0x7f ? edit.value : 0;
        }
        exercise(damaged);
      }),
      { seed, numRuns: Number(process.env.COWBELL_FC_RUNS ?? 400) },
    );
  });
});
