/**
 * Images whose guest clusters live in an external data file (qcow2 incompatible bit 2,
 * `qemu-img create -o data_file=…[,data_file_raw=on]`), round-tripped through qemu-img 7.2: Cowbell
 * reads them as qemu-img does, its writes pass `qemu-img check` and read back through qemu-img, a raw
 * data file stays a raw image of the guest, and what QEMU refuses on them Cowbell refuses.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { readImageInfo } from '../../../src/shared/qcow2/image/info.ts';
import { mapImage } from '../../../src/shared/qcow2/image/map.ts';
import { convertImage } from '../../../src/shared/qcow2/convert/convert.ts';
import { rebaseSteps } from '../../../src/shared/qcow2/chain/rebase.ts';
import { rewriteImage } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { runSteps } from '../../../src/shared/qcow2/steps.ts';
import { createSnapshot } from '../../../src/shared/qcow2/snapshots/snapshots.ts';
import { imageUsage } from '../../../src/shared/qcow2/snapshots/usage.ts';
import { checkImagePath } from '../../../src/shared/qcow2/check/check.ts';
import { applyToImage, applyToModel, randomGuestOps } from '../../helpers/guest-model.ts';
import { fileHash, holdWithQemuIo, lockedBytes } from '../../helpers/image-locks.ts';
import { firstDifference, qemuCheck, qemuCompare, qemuImg, qemuInfo, qemuIo, qemuMap, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';
import { appendCluster, readU64, setRefcount, writeU64 } from '../../helpers/qcow2-poke.ts';
import { checkEncrypted, createLuksImage, qemuIoEncrypted, rawOfEncrypted } from '../../helpers/encrypted-images.ts';
import { thrownQcow2Error } from '../../helpers/outcomes.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

interface DataFileConfig {
  name: string;
  clusterSize: number;
  raw: boolean;
  extendedL2: boolean;
}

const configs: DataFileConfig[] = [
  { name: 'data file, 64 KiB clusters', clusterSize: 64 * KiB, raw: false, extendedL2: false },
  { name: 'raw data file, 64 KiB clusters', clusterSize: 64 * KiB, raw: true, extendedL2: false },
  { name: 'data file, 4 KiB clusters', clusterSize: 4 * KiB, raw: false, extendedL2: false },
  { name: 'data file, extended L2, 64 KiB clusters', clusterSize: 64 * KiB, raw: false, extendedL2: true },
];

let serial = 0;

/** A qemu-img image with an (absolute) external data file; returns both paths. */
async function makeImage(config: DataFileConfig, size = 4 * MiB): Promise<{ image: string; data: string }> {
  serial++;
  const image = folder.file(`image-${serial}.qcow2`);
  const data = folder.file(`image-${serial}.data`);
  const options = [`cluster_size=${config.clusterSize}`, `data_file=${data}`, `data_file_raw=${config.raw ? 'on' : 'off'}`, `extended_l2=${config.extendedL2 ? 'on' : 'off'}`];
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', options.join(','), image, String(size)]);
  return { image, data };
}

/** qemu-io writes covering guest offset 0 (host offset 0 in the data file), partial clusters, zero writes and a discard. */
async function fillWithQemu(image: string, clusterSize: number): Promise<void> {
  await qemuIo(image, [
    'write -P 0x5a 0 4k',
    `write -P 0x6b ${clusterSize + 512} 3k`,
    'write -P 0x7c 1M 128k',
    'write -z 1088k 32k',
    `write -P 0x11 ${3 * MiB} ${clusterSize}`,
    `discard ${3 * MiB} ${clusterSize}`,
    `write -P 0x22 ${3 * MiB + 2 * clusterSize} 1k`,
  ]);
}

function readAll(image: string): Uint8Array {
  const opened = Qcow2Image.open(image, { readOnly: true });
  try {
    return opened.read(0, opened.virtualSize);
  } finally {
    opened.close();
  }
}

describe.each(configs)('$name', (config) => {
  it('reads what qemu-img reads, maps as qemu-img maps, and converts to an image qemu-img finds identical', async () => {
    const { image, data } = await makeImage(config);
    await fillWithQemu(image, config.clusterSize);
    const expected = await rawOf(image);
    const ours = readAll(image);
    expect(firstDifference(ours, expected), 'first byte Cowbell reads differently').toBe(-1);
    // The guest's first bytes are in the data file at offset 0, not in the qcow2 file.
    expect(ours[0]).toBe(0x5a);
    expect(fs.readFileSync(data).subarray(0, 4)).toEqual(Buffer.from([0x5a, 0x5a, 0x5a, 0x5a]));

    const check = await qemuCheck(image);
    expect(check.code).toBe(0);
    const opened = Qcow2Image.open(image, { readOnly: true });
    try {
      const map = mapImage(opened).map(({ compressed: _compressed, ...rest }) => rest);
      expect(map).toEqual(await qemuMap(image));
      // Space: the data clusters (in the data file) are the current state's own, beside its L2 tables; nothing leaks.
      const usage = imageUsage(opened);
      const dataBytes = (check.report?.['allocated-clusters'] ?? -1) * config.clusterSize;
      const l2Bytes = usage.current.exclusiveBytes - dataBytes;
      expect(l2Bytes).toBeGreaterThan(0);
      expect(l2Bytes % config.clusterSize).toBe(0);
      expect(l2Bytes).toBeLessThanOrEqual(2 * config.clusterSize);
      expect(usage.leakedBytes).toBe(0);
    } finally {
      opened.close();
    }

    const copy = folder.file(`copy-${serial}.qcow2`);
    convertImage({ source: image, target: copy, targetFormat: 'qcow2' });
    expect((await qemuCompare(image, copy, { formatB: 'qcow2' })).code).toBe(0);
    const copyInfo = await qemuInfo(copy);
    expect(JSON.stringify(copyInfo)).not.toMatch(/data-file/);
  });

  it('Cowbell writes into the data file; qemu-img check is clean and qemu-img reads what Cowbell wrote', async () => {
    const { image, data } = await makeImage(config);
    await fillWithQemu(image, config.clusterSize);
    const model = await rawOf(image);
    const qcow2Before = fs.statSync(image).size;
    const random = new SeededRandom(config.clusterSize + (config.raw ? 1 : 0) + (config.extendedL2 ? 2 : 0));
    const semantics = { clusterSize: config.clusterSize, virtualSize: model.length, version: 3 as const, hasBacking: false };
    for (let round = 0; round < 3; round++) {
      const opened = Qcow2Image.open(image);
      try {
        for (const op of randomGuestOps(random, model.length, config.clusterSize, 24)) {
          applyToImage(opened, op);
          applyToModel(model, op, semantics);
        }
      } finally {
        opened.close();
      }
    }
    const check = await qemuCheck(image);
    expect(check.output).not.toMatch(/ERROR|Leaked/);
    expect(check.code).toBe(0);
    expect(firstDifference(await rawOf(image), model), 'first byte qemu-img reads differently').toBe(-1);
    expect(firstDifference(readAll(image), model), 'first byte Cowbell reads back differently').toBe(-1);
    // Only tables were added to the qcow2 file: at most one L2 table per 2 MiB-or-more of guest disk, no data.
    const l2Span = (config.clusterSize / (config.extendedL2 ? 16 : 8)) * config.clusterSize;
    expect(fs.statSync(image).size - qcow2Before).toBeLessThanOrEqual(Math.ceil(model.length / l2Span) * config.clusterSize);
    const info = await qemuInfo(image);
    const specific = (info as unknown as { 'format-specific': { data: Record<string, unknown> } })['format-specific'].data;
    expect(specific['data-file']).toBe(data);
    expect(specific['data-file-raw']).toBe(config.raw);
    // A raw data file is the guest disk by itself, as the autoclear bit Cowbell kept promises.
    if (config.raw) expect(firstDifference(new Uint8Array(fs.readFileSync(data)).subarray(0, model.length), model), 'first byte the raw data file differs').toBe(-1);
  });
});

/** Random guest writes, zero writes and discards by Cowbell, mirrored on a model of the guest. */
function cowbellWrites(open: () => Qcow2Image, model: Uint8Array, clusterSize: number, hasBacking: boolean, seed: number): void {
  const random = new SeededRandom(seed);
  const semantics = { clusterSize, virtualSize: model.length, version: 3 as const, hasBacking };
  const opened = open();
  try {
    for (const op of randomGuestOps(random, model.length, clusterSize, 32)) {
      applyToImage(opened, op);
      applyToModel(model, op, semantics);
    }
  } finally {
    opened.close();
  }
}

describe('a data file under a backing file, and an encrypted one', () => {
  it('over a backing file: partial writes merge the backing data, discards hide it, and qemu-img reads what Cowbell wrote', async () => {
    const base = folder.file('backing-base.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', base, '4M']);
    await qemuIo(base, ['write -P 0x77 0 4M']);
    const image = folder.file('over-backing.qcow2');
    const data = folder.file('over-backing.data');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', '-o', `data_file=${data}`, image, '4M']);
    await qemuIo(image, ['write -P 0x11 100k 10k']);
    const model = await rawOf(image);
    cowbellWrites(() => Qcow2Image.open(image), model, 64 * KiB, true, 5);
    const check = await qemuCheck(image);
    expect(check.output).not.toMatch(/ERROR|Leaked/);
    expect(firstDifference(await rawOf(image), model), 'first byte qemu-img reads differently').toBe(-1);
  });

  it('LUKS-encrypted: Cowbell encrypts what it writes into the data file for its offset, and qemu-img decrypts it', async () => {
    const image = folder.file('luks.qcow2');
    const data = folder.file('luks.data');
    await createLuksImage(image, 'secret words', { dataFile: data });
    await qemuIoEncrypted(image, 'secret words', ['write -P 0x5e 0 64k']);
    const model = await rawOfEncrypted(image, 'secret words');
    cowbellWrites(() => Qcow2Image.open(image, { passphrase: 'secret words' }), model, 64 * KiB, false, 9);
    const check = await checkEncrypted(image, 'secret words');
    expect(check.output).not.toMatch(/ERROR|Leaked/);
    expect(check.code).toBe(0);
    expect(firstDifference(await rawOfEncrypted(image, 'secret words'), model), 'first byte qemu-img decrypts differently').toBe(-1);
    // No plaintext in the data file: the guest's first cluster is all 0x5e there only in the clear.
    expect(fs.readFileSync(data).subarray(0, 512).every((byte) => byte === 0x5e)).toBe(false);
  }, 60_000);
});

describe('check on an image with a data file', () => {
  it('repairs a leak in the qcow2 file as qemu-img would, counting no data cluster against it, and leaves the guest as it was', async () => {
    const { image, data } = await makeImage(configs[0]!);
    await fillWithQemu(image, 64 * KiB);
    const guest = await rawOf(image);
    setRefcount(image, appendCluster(image), 1);
    expect((await qemuCheck(image)).report?.leaks).toBe(1);
    const dataBefore = fileHash(data);
    const result = checkImagePath(image, { repair: 'leaks' });
    expect(result['leaks-fixed']).toBe(1);
    expect(result.corruptions ?? 0).toBe(0);
    const after = await qemuCheck(image);
    expect(after.output).not.toMatch(/ERROR|Leaked/);
    expect(after.code).toBe(0);
    expect(fileHash(data)).toBe(dataBefore);
    expect(firstDifference(await rawOf(image), guest)).toBe(-1);
    // The repaired image opens for writing again, data file and all.
    const reopened = Qcow2Image.open(image);
    try {
      expect(reopened.readOnly).toBe(false);
    } finally {
      reopened.close();
    }
  });
});

describe('what QEMU refuses on an image with a data file, Cowbell refuses', () => {
  it('an internal snapshot: UNSUPPORTED_FEATURE, nothing written (qemu-img snapshot -c fails too)', async () => {
    const { image, data } = await makeImage(configs[0]!);
    await fillWithQemu(image, 64 * KiB);
    const qemu = await qemuImg(['snapshot', '-c', 'qemu', image], { okCodes: [1] });
    expect(qemu.stderr).toMatch(/not supported/i);
    const before = [fileHash(image), fileHash(data)];
    const opened = Qcow2Image.open(image);
    try {
      expect(thrownQcow2Error(() => createSnapshot(opened, { name: 'cowbell' })).code).toBe('UNSUPPORTED_FEATURE');
    } finally {
      opened.close();
    }
    expect([fileHash(image), fileHash(data)]).toEqual(before);
  });

  it('a backing file for an image whose data file is raw (data_file_raw): refused in safe and -u rebase, as qemu-img rebase fails; none stays possible', async () => {
    const { image, data } = await makeImage(configs[1]!);
    await fillWithQemu(image, 64 * KiB);
    const backing = folder.file('raw-data-backing.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', backing, '4M']);
    await qemuIo(backing, ['write -P 0x77 0 4M']);
    const qemu = await qemuImg(['rebase', '-u', '-b', backing, '-F', 'qcow2', image], { okCodes: [1] });
    expect(qemu.stderr).toMatch(/Could not change the backing file/);
    const before = [fileHash(image), fileHash(data)];
    for (const unsafe of [false, true]) {
      expect(thrownQcow2Error(() => runSteps(rebaseSteps({ image, backingFile: backing, backingFormat: 'qcow2', unsafe }))).code).toBe('INVALID_ARGUMENT');
    }
    expect([fileHash(image), fileHash(data)]).toEqual(before);
    runSteps(rebaseSteps({ image, backingFile: null }));
    expect((await qemuCheck(image)).code).toBe(0);
  });

  it('a compress or compact in place: UNSUPPORTED_FEATURE, while convert copies the data into a new self-contained image', async () => {
    const { image, data } = await makeImage(configs[1]!);
    await fillWithQemu(image, 64 * KiB);
    const before = [fileHash(image), fileHash(data)];
    expect(thrownQcow2Error(() => rewriteImage({ source: image, compression: 'compress' })).code).toBe('UNSUPPORTED_FEATURE');
    expect(thrownQcow2Error(() => rewriteImage({ source: image, compression: 'keep' })).code).toBe('UNSUPPORTED_FEATURE');
    expect([fileHash(image), fileHash(data)]).toEqual(before);
    const copy = folder.file('self-contained.qcow2');
    convertImage({ source: image, target: copy, targetFormat: 'qcow2', compress: true });
    expect((await qemuCompare(image, copy, { formatB: 'qcow2' })).code).toBe(0);
  });
});

describe('the data file is found, and locked, as QEMU finds and locks it', () => {
  it('a missing data file: DATA_FILE_NOT_FOUND naming the path, while info still describes the image', async () => {
    const { image, data } = await makeImage(configs[0]!);
    await fillWithQemu(image, 64 * KiB);
    fs.renameSync(data, `${data}.away`);
    try {
      const error = thrownQcow2Error(() => Qcow2Image.open(image, { readOnly: true }));
      expect(error.code).toBe('DATA_FILE_NOT_FOUND');
      expect(error.message).toContain(data);
      expect(thrownQcow2Error(() => checkImagePath(image)).code).toBe('DATA_FILE_NOT_FOUND');
      // qemu-img cannot read it either, but describes it.
      expect((await qemuImg(['convert', '-O', 'raw', image, folder.file('never.raw')], { okCodes: [1] })).stderr).toContain('Could not open');
      const info = readImageInfo(image);
      expect(info['format-specific'].data['data-file']).toBe(data);
      expect(info['format-specific'].data['data-file-raw']).toBe(false);
    } finally {
      fs.renameSync(`${data}.away`, data);
    }
  });

  it('a data file the image does not name: DATA_FILE_NOT_FOUND, as qemu-io fails ("\'data-file\' is required"), while info describes the image', async () => {
    const { image } = await makeImage(configs[0]!);
    // QEMU writes the name extension first, right after the 112-byte header: rename its type.
    const first = readU64(image, 112);
    expect(Number(first >> 32n)).toBe(0x44415441);
    writeU64(image, 112, (0x1234_5678n << 32n) | (first & 0xffff_ffffn));
    expect(thrownQcow2Error(() => Qcow2Image.open(image, { readOnly: true })).code).toBe('DATA_FILE_NOT_FOUND');
    await expect(qemuIo(image, ['read 0 512'])).rejects.toThrow(/data-file.*required/);
    expect(readImageInfo(image)['format-specific'].data['data-file-raw']).toBe(false);
  });

  it('a relative name is relative to the working directory, as QEMU 7.2 resolves it (not to the image folder)', async () => {
    const here = folder.file('relative');
    const elsewhere = folder.file('relative/elsewhere');
    fs.mkdirSync(elsewhere, { recursive: true });
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'data_file=guest.data', 'disk.qcow2', '1M'], { cwd: here });
    await qemuIo('disk.qcow2', ['write -P 0x42 0 64k'], { cwd: here });
    // The same name in another folder holds other bytes: whichever the program's folder has is read.
    fs.writeFileSync(path.join(elsewhere, 'guest.data'), Buffer.alloc(MiB, 0x99));
    const image = path.join(here, 'disk.qcow2');
    const cowbellSees = async (cwd: string): Promise<number> => {
      const output = path.join(folder.path, `relative-${path.basename(cwd)}.raw`);
      await runCowbell(['convert', '-O', 'raw', image, output], cwd);
      return fs.readFileSync(output)[0] ?? -1;
    };
    const qemuSees = async (cwd: string): Promise<number> => {
      const output = path.join(folder.path, `relative-qemu-${path.basename(cwd)}.raw`);
      await qemuImg(['convert', '-O', 'raw', image, output], { cwd });
      return fs.readFileSync(output)[0] ?? -1;
    };
    expect(await qemuSees(here)).toBe(0x42);
    expect(await cowbellSees(here)).toBe(0x42);
    expect(await qemuSees(elsewhere)).toBe(0x99);
    expect(await cowbellSees(elsewhere)).toBe(0x99);
  });

  it('Cowbell writing holds the data file under the same locks, and a program holding only the data file keeps Cowbell from writing', async () => {
    const { image, data } = await makeImage(configs[0]!);
    const opened = Qcow2Image.open(image);
    try {
      opened.write(new Uint8Array(4096).fill(7), 0);
      opened.flush();
      // The writer's bytes (uses 100, 101, 103; shares neither write nor resize: 201, 203), as on the image.
      expect(lockedBytes(data)).toEqual(expect.arrayContaining([100, 101, 103, 201, 203]));
      // So neither the image nor the data file alone can be opened for writing by QEMU meanwhile.
      for (const [file, format] of [[image, 'qcow2'], [data, 'raw']] as const) {
        const direct = await qemuIoWrite(file, format);
        expect(direct.code).not.toBe(0);
        expect(direct.output).toMatch(/Failed to get .*lock/);
      }
    } finally {
      opened.close();
    }
    // qemu-io writing the data file as a raw disk: the image itself is free, its data file is not.
    const holder = await holdWithQemuIo(data, [], 'raw');
    try {
      expect(thrownQcow2Error(() => Qcow2Image.open(image)).code).toBe('IN_USE');
      // The command line's reads without -U refuse too, as qemu-img does.
      expect(thrownQcow2Error(() => Qcow2Image.open(image, { readOnly: true, refuseInUse: true })).code).toBe('IN_USE');
      // Reading stays possible, and says the disk is in use.
      const reader = Qcow2Image.open(image, { readOnly: true });
      try {
        expect(reader.readOnlyReason).toMatch(/in use/);
        expect(reader.read(0, 4)).toEqual(new Uint8Array([7, 7, 7, 7]));
      } finally {
        reader.close();
      }
    } finally {
      await holder.release();
    }
  });
});

function runCowbell(argv: string[], cwd: string): Promise<void> {
  const bin = path.resolve('bin/cowbell');
  return new Promise((resolve, reject) => {
    execFile(bin, argv, { cwd }, (error, _stdout, stderr) => (error === null ? resolve() : reject(new Error(`cowbell ${argv.join(' ')}: ${stderr}`))));
  });
}

function qemuIoWrite(file: string, format: 'qcow2' | 'raw'): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile('qemu-io', ['-f', format, '-c', 'write 0 512', file], (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : Number((error as { code?: unknown }).code ?? 1), output: stdout + stderr });
    });
  });
}
