/**
 * check and check --repair against qemu-img check 7.2 on the same files: images qemu-img made
 * check clean with qemu-img's numbers; injected faults get qemu-img's classification; repairs
 * leave images both tools call clean, with the guest data unchanged.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../../src/cli/run.ts';
import { jobTable } from '../../../src/main/worker/job-table.ts';
import { jobSchemas } from '../../../src/shared/ipc/contract.ts';
import { silentJob } from '../../../src/shared/qcow2/job-context.ts';
import type { BlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { checkExitCode, checkImage, checkImagePath, type RepairMode } from '../../../src/shared/qcow2/check/check.ts';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import type { CheckResult } from '../../../src/shared/qcow2/model.ts';
import { crashPoints, crashState, describeCrashPoint, FaultFile } from '../../helpers/fault-file.ts';
import * as poke from '../../helpers/qcow2-poke.ts';
import { counts, layoutNumbers } from '../../helpers/check-report.ts';
import { firstDifference, inBatches, qemuCheck, qemuImg, qemuImgTimingPbkdf2, qemuInfo, qemuIo, rawOf, tempDir, type QemuCheckReport } from '../../helpers/qemu.ts';

const folder = tempDir();
afterAll(() => folder.cleanup());

const KiB = 1024;
const MiB = 1024 * KiB;

/** Half random, half text: compressed clusters of different sizes, some spanning host clusters. */
function mixedBytes(length: number, seed: number): Buffer {
  const bytes = Buffer.alloc(length);
  let state = seed;
  for (let index = 0; index < length; index++) {
    if (Math.floor(index / (48 * KiB)) % 2 === 0) {
      state = (state * 1103515245 + 12345) >>> 0;
      bytes[index] = state >>> 24;
    } else bytes[index] = 'check me '.charCodeAt(index % 9);
  }
  return bytes;
}

async function createLuks(path: string): Promise<void> {
  await qemuImgTimingPbkdf2(['create', '-q', '-f', 'qcow2', '--object', 'secret,id=sec0,data=pw', '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', path, '32M']);
}

interface CleanCase {
  name: string;
  build(path: string): Promise<void>;
  /** qemu-img check needs these to open the image (an encrypted one). */
  qemuOpen?: string[];
}

const cleanCases: CleanCase[] = [
  {
    name: 'a v3 image with data in several L2 tables',
    async build(path) {
      await qemuImg(['create', '-q', '-f', 'qcow2', path, '2G']);
      await qemuIo(path, ['write -P 1 0 1M', 'write -P 2 1G 64k', 'write -P 3 512M 128k', 'write -P 4 8M 64k', 'write -P 5 2M 64k', 'write -z 1536M 64k']);
    },
  },
  {
    name: 'an image with snapshots sharing and not sharing clusters',
    async build(path) {
      await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', path, '64M']);
      await qemuIo(path, ['write -P 1 0 3M', 'write -P 2 9M 12k', 'write -P 3 20M 12k']);
      await qemuImg(['snapshot', '-c', 'one', path]);
      await qemuIo(path, ['write -P 4 1M 1M', 'discard 2M 64k']);
      await qemuImg(['snapshot', '-c', 'two', path]);
      await qemuIo(path, ['write -P 5 0 256k', 'write -z 30M 1M']);
    },
  },
  {
    name: 'a compressed image (qemu-img convert -c)',
    async build(path) {
      const raw = `${path}.raw`;
      fs.writeFileSync(raw, mixedBytes(6 * MiB, 7));
      await qemuImg(['convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', raw, path]);
    },
  },
  {
    name: 'an image with extended L2 entries and subcluster writes',
    async build(path) {
      await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on,cluster_size=64k', path, '64M']);
      await qemuIo(path, ['write -P 1 0 4k', 'write -P 2 70k 8k', 'write -P 3 1M 64k', 'write -z 4M 4k', 'write -P 4 6M 2k']);
    },
  },
  {
    name: 'an image with 1-bit refcounts',
    async build(path) {
      await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'refcount_bits=1,cluster_size=4k', path, '32M']);
      await qemuIo(path, ['write -P 1 0 1M', 'write -P 2 16M 40k']);
    },
  },
  {
    name: 'an image with 64-bit refcounts and a snapshot',
    async build(path) {
      await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'refcount_bits=64', path, '64M']);
      await qemuIo(path, ['write -P 1 0 1M']);
      await qemuImg(['snapshot', '-c', 'base', path]);
      await qemuIo(path, ['write -P 2 512k 1M']);
    },
  },
  {
    name: 'a compat 0.10 image with 512-byte clusters',
    async build(path) {
      await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'compat=0.10,cluster_size=512', path, '16M']);
      await qemuIo(path, ['write -P 1 0 300k', 'write -P 2 5M 7k']);
      await qemuImg(['snapshot', '-c', 'old', path]);
      await qemuIo(path, ['write -P 3 100k 3k']);
    },
  },
  {
    name: 'an image with persistent bitmaps',
    async build(path) {
      await qemuImg(['create', '-q', '-f', 'qcow2', path, '64M']);
      await qemuIo(path, ['write -P 1 0 2M']);
      await qemuImg(['bitmap', '--add', path, 'full']);
      await qemuImg(['bitmap', '--add', '-g', '512', path, 'fine']);
      await qemuIo(path, ['write -P 2 8M 1M']);
    },
  },
  {
    name: 'a LUKS-encrypted image (the encryption header clusters)',
    async build(path) {
      await createLuks(path);
    },
    qemuOpen: ['--object', 'secret,id=sec0,data=pw', '--image-opts'],
  },
];

describe('check on images qemu-img made', { timeout: 60_000 }, () => {
  const built = new Map<string, string>();
  beforeAll(async () => {
    await inBatches(
      cleanCases.map((testCase, index) => async () => {
        const path = folder.file(`clean-${index}.qcow2`);
        await testCase.build(path);
        built.set(testCase.name, path);
      }),
      3,
    );
  }, 60_000);

  for (const testCase of cleanCases) {
    it(`${testCase.name} checks clean with qemu-img's numbers`, async () => {
      const path = built.get(testCase.name) ?? '';
      let report: QemuCheckReport;
      if (testCase.qemuOpen) {
        const spec = `driver=qcow2,file.filename=${path},encrypt.key-secret=sec0`;
        report = JSON.parse((await qemuImg(['check', '--output=json', ...testCase.qemuOpen, spec])).stdout) as QemuCheckReport;
      } else {
        const qemu = await qemuCheck(path);
        expect(qemu.code).toBe(0);
        report = qemu.report as QemuCheckReport;
      }
      const ours = checkImagePath(path);
      expect(counts(ours)).toEqual({ corruptions: 0, leaks: 0, errors: 0 });
      expect(ours.messages).toEqual([]);
      expect(layoutNumbers(ours)).toEqual(layoutNumbers(report));
      expect(checkExitCode(ours)).toBe(0);
    });
  }

  it('a repair of a clean image changes nothing', async () => {
    const path = built.get(cleanCases[1]?.name ?? '') ?? '';
    const copy = folder.file('clean-copy.qcow2');
    fs.copyFileSync(path, copy);
    const result = checkImagePath(copy, { repair: 'all' });
    expect(checkExitCode(result)).toBe(0);
    expect(result['corruptions-fixed']).toBeUndefined();
    expect(result['leaks-fixed']).toBeUndefined();
    expect(Buffer.compare(fs.readFileSync(copy), fs.readFileSync(path))).toBe(0);
  });
});

interface FaultCase {
  name: string;
  base: 'plain' | 'snapshot';
  inject(path: string): void;
  repair: RepairMode;
  /** `qemu-img check -r` leaves it clean too. */
  qemuRepairs: boolean;
  cowbellRepairs: boolean;
  /** `qemu-img convert -O raw` reads the same before and after the repair. */
  dataKept: boolean;
}

const pastEnd = (path: string): bigint => {
  const { clusterBytes, fileSize } = poke.layout(path);
  return BigInt((Math.ceil(fileSize / clusterBytes) + 10) * clusterBytes);
};

const faultCases: FaultCase[] = [
  {
    name: 'a leaked cluster (an unused cluster with refcount 1)',
    base: 'plain',
    inject: (path) => poke.setRefcount(path, poke.appendCluster(path), 1),
    repair: 'leaks',
    qemuRepairs: true,
    cowbellRepairs: true,
    dataKept: true,
  },
  {
    name: 'a refcount raised by hand on a cluster in use',
    base: 'plain',
    inject: (path) => poke.setRefcount(path, poke.hostClusterOf(path, 0), 2),
    repair: 'leaks',
    qemuRepairs: true,
    cowbellRepairs: true,
    dataKept: true,
  },
  {
    name: 'a refcount too low (0 on a cluster in use)',
    base: 'plain',
    inject: (path) => poke.setRefcount(path, poke.hostClusterOf(path, 4 * MiB), 0),
    repair: 'all',
    qemuRepairs: true,
    cowbellRepairs: true,
    dataKept: true,
  },
  {
    name: 'a refcount too low on a cluster a snapshot shares',
    base: 'snapshot',
    inject: (path) => poke.setRefcount(path, poke.hostClusterOf(path, 0), 1),
    repair: 'all',
    qemuRepairs: true,
    cowbellRepairs: true,
    dataKept: true,
  },
  {
    name: 'a COPIED flag missing on an unshared cluster',
    base: 'plain',
    inject: (path) => {
      const position = poke.l2EntryPosition(path, 4 * MiB);
      poke.writeU64(path, position, poke.readU64(path, position) & ~poke.COPIED);
    },
    repair: 'leaks',
    qemuRepairs: true,
    cowbellRepairs: true,
    dataKept: true,
  },
  {
    name: 'a COPIED flag on a cluster a snapshot shares',
    base: 'snapshot',
    inject: (path) => {
      const position = poke.l2EntryPosition(path, 64 * KiB);
      poke.writeU64(path, position, poke.readU64(path, position) | poke.COPIED);
    },
    repair: 'all',
    qemuRepairs: true,
    cowbellRepairs: true,
    dataKept: true,
  },
  {
    name: 'an L2 entry pointing past the end of the file',
    base: 'plain',
    inject: (path) => poke.writeU64(path, poke.l2EntryPosition(path, 0), poke.COPIED | pastEnd(path)),
    repair: 'all',
    qemuRepairs: false,
    cowbellRepairs: true,
    dataKept: true,
  },
  {
    name: 'an L1 entry naming an L2 table past the end of the file',
    base: 'plain',
    inject: (path) => poke.writeU64(path, poke.layout(path).l1Offset, poke.COPIED | pastEnd(path)),
    repair: 'all',
    qemuRepairs: false,
    cowbellRepairs: true,
    dataKept: true,
  },
  {
    name: 'an L2 table overlapping the refcount table',
    base: 'plain',
    inject: (path) => {
      const { l1Offset, refcountTableOffset } = poke.layout(path);
      poke.writeU64(path, l1Offset + 8, poke.COPIED | BigInt(refcountTableOffset));
    },
    repair: 'all',
    qemuRepairs: true,
    cowbellRepairs: true,
    dataKept: true,
  },
  {
    name: 'a data cluster overlapping the L1 table (Cowbell moves it; QEMU raises its refcount)',
    base: 'plain',
    inject: (path) => poke.writeU64(path, poke.l2EntryPosition(path, 4 * KiB), poke.COPIED | BigInt(poke.layout(path).l1Offset)),
    repair: 'all',
    qemuRepairs: true,
    cowbellRepairs: true,
    dataKept: true,
  },
  {
    name: 'a data cluster overlapping its own L2 table',
    base: 'plain',
    inject: (path) => {
      const position = poke.l2EntryPosition(path, 4 * KiB);
      const l2Table = position - (position % poke.layout(path).clusterBytes);
      poke.writeU64(path, position, poke.COPIED | BigInt(l2Table));
    },
    repair: 'all',
    qemuRepairs: true,
    cowbellRepairs: true,
    dataKept: true,
  },
  {
    name: 'an L2 table overlapping the L1 table (qemu-img check -r all fails on it)',
    base: 'plain',
    inject: (path) => {
      const { l1Offset } = poke.layout(path);
      poke.writeU64(path, l1Offset + 8, poke.COPIED | BigInt(l1Offset));
    },
    repair: 'all',
    qemuRepairs: false,
    cowbellRepairs: true,
    dataKept: true,
  },
  {
    name: 'an unaligned data offset',
    base: 'plain',
    inject: (path) => {
      const position = poke.l2EntryPosition(path, 0);
      poke.writeU64(path, position, poke.readU64(path, position) + 512n);
    },
    repair: 'all',
    qemuRepairs: false,
    cowbellRepairs: false,
    dataKept: false,
  },
  {
    name: 'a refcount block outside the file',
    base: 'plain',
    inject: (path) => poke.writeU64(path, poke.layout(path).refcountTableOffset, pastEnd(path) + 90n * 4096n),
    repair: 'all',
    qemuRepairs: true,
    cowbellRepairs: true,
    dataKept: true,
  },
];

describe('faults get the classification qemu-img gives them, and repairs leave the image clean', { timeout: 60_000 }, () => {
  const bases = { plain: folder.file('base-plain.qcow2'), snapshot: folder.file('base-snapshot.qcow2') };
  beforeAll(async () => {
    // 4 KiB clusters: an L2 table maps 2 MiB, so the L1 table has 8 entries; data in two L2 tables.
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', bases.plain, '16M']);
    await qemuIo(bases.plain, ['write -P 1 0 256k', 'write -P 2 4M 64k']);
    fs.copyFileSync(bases.plain, bases.snapshot);
    await qemuImg(['snapshot', '-c', 'before', bases.snapshot]);
    await qemuIo(bases.snapshot, ['write -P 3 4M 64k']);
  }, 60_000);

  for (const [index, testCase] of faultCases.entries()) {
    it(`${testCase.name}`, async () => {
      const faulty = folder.file(`fault-${index}.qcow2`);
      fs.copyFileSync(bases[testCase.base], faulty);
      testCase.inject(faulty);

      const qemu = await qemuCheck(faulty);
      const ours = checkImagePath(faulty);
      expect(counts(ours)).toEqual(counts(qemu.report as QemuCheckReport));
      expect(checkExitCode(ours)).toBe(qemu.code);
      expect(checkExitCode(ours)).toBeGreaterThan(1);
      expect(ours.messages.length).toBeGreaterThan(0);

      const before = testCase.dataKept ? await rawOf(faulty) : null;
      const byQemu = folder.file(`fault-${index}-qemu.qcow2`);
      const byCowbell = folder.file(`fault-${index}-cowbell.qcow2`);
      fs.copyFileSync(faulty, byQemu);
      fs.copyFileSync(faulty, byCowbell);
      await qemuImg(['check', '-q', '-r', testCase.repair, byQemu], { okCodes: [0, 1, 2, 3] });
      const qemuAfterItsRepair = await qemuCheck(byQemu);
      expect(qemuAfterItsRepair.code === 0).toBe(testCase.qemuRepairs);

      const repaired = checkImagePath(byCowbell, { repair: testCase.repair });
      const qemuAfterOurs = await qemuCheck(byCowbell);
      const oursAfterOurs = checkImagePath(byCowbell);
      expect(counts(oursAfterOurs)).toEqual(counts(repaired));
      if (testCase.cowbellRepairs) {
        expect(checkExitCode(repaired)).toBe(0);
        expect((repaired['corruptions-fixed'] ?? 0) + (repaired['leaks-fixed'] ?? 0)).toBeGreaterThan(0);
        expect(qemuAfterOurs.code).toBe(0);
        expect(checkExitCode(oursAfterOurs)).toBe(0);
      } else {
        // What neither can repair is left as QEMU leaves it.
        expect(counts(repaired)).toEqual(counts(qemuAfterItsRepair.report as QemuCheckReport));
        expect(counts(qemuAfterOurs.report as QemuCheckReport)).toEqual(counts(repaired));
      }
      if (before !== null) expect(firstDifference(await rawOf(byCowbell), before)).toBe(-1);
    });
  }
});

describe('a power cut during a repair leaves the image no worse than before', { timeout: 120_000 }, () => {
  const crashCases = faultCases.filter((testCase) => testCase.cowbellRepairs && testCase.dataKept);
  const base = folder.file('crash-base-plain.qcow2');
  const snapshotBase = folder.file('crash-base-snapshot.qcow2');
  beforeAll(async () => {
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', base, '16M']);
    await qemuIo(base, ['write -P 1 0 256k', 'write -P 2 4M 64k']);
    fs.copyFileSync(base, snapshotBase);
    await qemuImg(['snapshot', '-c', 'before', snapshotBase]);
    await qemuIo(snapshotBase, ['write -P 3 4M 64k']);
  }, 60_000);

  function checkOf(file: BlockFile, repair?: RepairMode): CheckResult {
    const image = Qcow2Image.openFile(file, { openBacking: false, allowDirtyForRepair: repair !== undefined });
    try {
      return checkImage(image, repair === undefined ? {} : { repair });
    } finally {
      image.close();
    }
  }

  /** The guest disk through the engine, or null where the engine refuses to read it (an L2 table past the end). */
  function guestData(file: BlockFile): Uint8Array | null {
    const image = Qcow2Image.openFile(file, { openBacking: false });
    try {
      return image.read(0, image.virtualSize);
    } catch (error) {
      if (error instanceof Qcow2Error && error.code === 'CORRUPT') return null;
      throw error;
    } finally {
      image.close();
    }
  }

  for (const testCase of crashCases) {
    it(`${testCase.name}`, () => {
      const path = folder.file(`crash-${testCase.name.length}.qcow2`);
      fs.copyFileSync(testCase.base === 'plain' ? base : snapshotBase, path);
      testCase.inject(path);
      const initial = new Uint8Array(fs.readFileSync(path));
      const before = checkOf(new FaultFile(path, initial, { readOnly: true }));
      const data = guestData(new FaultFile(path, initial, { readOnly: true }));
      const fault = new FaultFile(path, initial);
      checkOf(fault, testCase.repair);
      let states = 0;
      for (const point of crashPoints(fault.log, 3, 7)) {
        const state = crashState(path, initial, fault.log, point);
        const where = describeCrashPoint(fault.log, point);
        const found = checkOf(state);
        expect.soft(found.corruptions ?? 0, where).toBeLessThanOrEqual(before.corruptions ?? 0);
        if (data !== null) expect.soft(firstDifference(guestData(state) ?? new Uint8Array(0), data), where).toBe(-1);
        const again = new FaultFile(path, state.bytes());
        expect.soft(checkExitCode(checkOf(again, testCase.repair)), `${where}: repaired again`).toBe(0);
        states++;
      }
      expect(states).toBeGreaterThan(2);
    });
  }
});

describe('dirty images', { timeout: 60_000 }, () => {
  const DIRTY = 1n;

  async function dirtyImage(name: string): Promise<string> {
    const path = folder.file(name);
    await qemuImg(['create', '-q', '-f', 'qcow2', path, '64M']);
    await qemuIo(path, ['write -P 7 0 1M']);
    poke.setIncompatibleBits(path, DIRTY);
    return path;
  }

  it('opens read-only until repaired; allowDirtyForRepair still refuses guest writes', async () => {
    const path = await dirtyImage('dirty-open.qcow2');
    const plain = Qcow2Image.open(path);
    expect(plain.readOnly).toBe(true);
    expect(plain.readOnlyReason).toMatch(/repair/);
    plain.close();
    const forRepair = Qcow2Image.open(path, { allowDirtyForRepair: true });
    expect(forRepair.repairAccess).toBe(true);
    expect(() => forRepair.write(new Uint8Array(512), 0)).toThrow(Qcow2Error);
    forRepair.close();
    expect((await qemuInfo(path))['dirty-flag']).toBe(true);
  });

  it('a repair clears the dirty bit and the image then opens writable', async () => {
    const path = await dirtyImage('dirty-repair.qcow2');
    poke.setRefcount(path, poke.appendCluster(path), 1);
    const result = checkImagePath(path, { repair: 'leaks' });
    expect(result['leaks-fixed']).toBe(1);
    expect(checkExitCode(result)).toBe(0);
    expect((await qemuInfo(path))['dirty-flag']).toBe(false);
    const image = Qcow2Image.open(path);
    expect(image.readOnly).toBe(false);
    image.write(new Uint8Array(4096).fill(9), 2 * MiB);
    image.close();
    expect((await qemuCheck(path)).code).toBe(0);
  });

  it('a dirty image whose refcounts lag behind (as with lazy refcounts) is repaired with --repair all', async () => {
    const path = await dirtyImage('dirty-stale.qcow2');
    const before = await rawOf(path);
    poke.setRefcount(path, poke.hostClusterOf(path, 512 * KiB), 0);
    expect(checkExitCode(checkImagePath(path))).toBe(2);
    const result = checkImagePath(path, { repair: 'all' });
    expect(checkExitCode(result)).toBe(0);
    expect((await qemuInfo(path))['dirty-flag']).toBe(false);
    expect((await qemuCheck(path)).code).toBe(0);
    expect(firstDifference(await rawOf(path), before)).toBe(-1);
  });
});

describe('hostile tables', { timeout: 60_000 }, () => {
  it('every L1 entry naming the same L2 table counts it once per entry, as QEMU does, and ends', async () => {
    const path = folder.file('duplicate-l2.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', path, '1G']);
    await qemuIo(path, ['write -P 1 0 8k']);
    const { l1Offset, l1Size } = poke.layout(path);
    const entry = poke.readU64(path, l1Offset);
    for (let index = 1; index < l1Size; index += 97) poke.writeU64(path, l1Offset + index * 8, entry);
    const qemu = await qemuCheck(path);
    const ours = checkImagePath(path);
    expect(counts(ours)).toEqual(counts(qemu.report as QemuCheckReport));
    expect(ours['allocated-clusters']).toBe(qemu.report?.['allocated-clusters']);
  });

  it('a cancelled check stops with CANCELLED and changes nothing', async () => {
    const path = folder.file('cancel.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', path, '64M']);
    await qemuIo(path, ['write -P 1 0 1M']);
    poke.setRefcount(path, poke.appendCluster(path), 1);
    const bytes = fs.readFileSync(path);
    const job = {
      progress() {},
      throwIfCancelled() {
        throw new Qcow2Error('CANCELLED', 'cancelled');
      },
    };
    expect(() => checkImagePath(path, { repair: 'leaks' }, job)).toThrow(expect.objectContaining({ code: 'CANCELLED' }));
    expect(Buffer.compare(fs.readFileSync(path), bytes)).toBe(0);
  });
});

describe('cowbell check (CLI)', { timeout: 60_000 }, () => {
  async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const code = await runCli(argv, { out: (text) => (out += text), err: (text) => (err += text) });
    return { code, out, err };
  }

  let clean = '';
  let leaky = '';
  let corrupt = '';
  beforeAll(async () => {
    clean = folder.file('cli-clean.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', clean, '64M']);
    await qemuIo(clean, ['write -P 1 0 1M']);
    leaky = folder.file('cli-leaky.qcow2');
    fs.copyFileSync(clean, leaky);
    poke.setRefcount(leaky, poke.appendCluster(leaky), 1);
    corrupt = folder.file('cli-corrupt.qcow2');
    fs.copyFileSync(clean, corrupt);
    poke.setRefcount(corrupt, poke.hostClusterOf(corrupt, 0), 0);
  }, 60_000);

  it('exits 0 on a clean image and prints what qemu-img prints', async () => {
    const ours = await run('check', clean);
    const qemu = await qemuImg(['check', clean]);
    expect(ours.code).toBe(0);
    expect(ours.out).toBe(qemu.stdout);
    expect(ours.err).toBe('');
  });

  it('exits 3 when only leaks are found, 2 on corruption, each line of findings on stderr', async () => {
    const leaks = await run('check', leaky);
    expect(leaks.code).toBe(3);
    expect(leaks.out).toBe((await qemuImg(['check', leaky], { okCodes: [3] })).stdout);
    expect(leaks.err).toMatch(/^Leaked cluster \d+ refcount=1 reference=0$/m);
    const errors = await run('check', corrupt);
    expect(errors.code).toBe(2);
    expect(errors.out).toMatch(/errors were found on the image/);
    expect(errors.err).toMatch(/^ERROR cluster \d+ refcount=0 reference=1$/m);
  });

  it('--json gives qemu-img check --output=json keys; -r leaks repairs and exits 0', async () => {
    const json = await run('check', '--json', leaky);
    expect(json.code).toBe(3);
    const ours = JSON.parse(json.out) as Record<string, unknown>;
    const qemu = (await qemuCheck(leaky)).report as unknown as Record<string, unknown>;
    expect({ ...ours, filename: null }).toEqual({ ...qemu, filename: null });
    const repaired = await run('check', '-r', 'leaks', leaky);
    expect(repaired.code).toBe(0);
    expect(repaired.out).toMatch(/^The following inconsistencies were found and repaired:\n\n {4}1 leaked clusters\n {4}0 corruptions\n/);
    expect(repaired.out).toMatch(/No errors were found on the image\./);
    expect((await qemuCheck(leaky)).code).toBe(0);
  });

  it('refuses an unknown repair mode as a usage error: exit 1 as qemu-img check (2 would say "corruptions")', async () => {
    const result = await run('check', '-r', 'everything', clean);
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/-r takes leaks or all/);
  });
});

describe('check and repair as UI jobs', { timeout: 60_000 }, () => {
  it('image.check reads, image.repair fixes, with the arguments the contract allows', async () => {
    const path = folder.file('job.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', path, '64M']);
    await qemuIo(path, ['write -P 1 0 1M']);
    poke.setRefcount(path, poke.appendCluster(path), 1);
    expect(jobSchemas['image.check'].access).toBe('read');
    expect(jobSchemas['image.repair'].access).toBe('write');
    expect(jobSchemas['image.repair'].args.safeParse({ mode: 'everything' }).success).toBe(false);
    const checked = await jobTable['image.check'](path, {}, silentJob);
    expect(checked.leaks).toBe(1);
    const repaired = await jobTable['image.repair'](path, jobSchemas['image.repair'].args.parse({ mode: 'leaks' }), silentJob);
    expect(repaired['leaks-fixed']).toBe(1);
    expect(checkExitCode(repaired)).toBe(0);
    expect((await qemuCheck(path)).code).toBe(0);
  });
});

// Was: every command (check and check -r all too) refused with "the image is truncated", where
// qemu-img check reports the refcounts missing and rebuilds them.
describe('a refcount table offset past the end of the file', { timeout: 60_000 }, () => {
  it('check reports every cluster with a refcount too low; check -r all rebuilds the refcounts, the data kept', async () => {
    const path = folder.file('reftable-past-eof.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', path, '32M']);
    await qemuIo(path, ['write -P 0x11 0 256k']);
    const data = await rawOf(path);
    poke.writeU64(path, 48, 0x4000000n);
    const found = checkImagePath(path);
    expect(found.corruptions ?? 0).toBeGreaterThanOrEqual(7);
    expect(found.messages).toContain('ERROR cluster 0 refcount=0 reference=1');
    const repaired = checkImagePath(path, { repair: 'all' });
    expect(checkExitCode(repaired)).toBe(0);
    expect((await qemuCheck(path)).code).toBe(0);
    expect(firstDifference(await rawOf(path), data)).toBe(-1);
  });
});
