/**
 * The rewrite on a full or failing disk: ENOSPC and EIO (and a short write where a write grows the
 * file) at every write, truncate and flush of the new image, at its rename and at the folder sync.
 * Until the rename nothing the user has may change: the original (and an existing target) stay
 * byte for byte, no temporary file is left, nothing more is written after the failure, and the
 * error is typed and names the target. Run on the fault file system (every call, the source read
 * through it when in place) and on real files (the folder listed afterwards, the locks given back).
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { nodeFileSystem, type AtomicFileSystem } from '../../../src/shared/qcow2/io/atomic-file.ts';
import type { BlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { rewriteImage, type RewriteRequest } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { FaultFileSystem, type FileEvent } from '../../helpers/fault-file.ts';
import { FailingFile, nodeStyleError, type FailureCode, type FailurePlan } from '../../helpers/failing-file.ts';
import { fileHash } from '../../helpers/image-locks.ts';
import { firstDifference, qemuImg, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { compressibleBytes } from '../../helpers/seeded-random.ts';
import { EXPECTED_CODE, EXPECTED_WORDS, failurePlans } from '../io/io-errors-runner.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

function caught(work: () => unknown): unknown {
  try {
    work();
  } catch (error) {
    return error;
  }
  return null;
}

/** A FaultFileSystem whose new files (the rewrite's temporary one) fail as planned. */
class FailingFileSystem extends FaultFileSystem {
  failing: FailingFile | null = null;
  private readonly plan: FailurePlan | null;

  constructor(initial: Record<string, Uint8Array>, plan: FailurePlan | null) {
    super(initial);
    this.plan = plan;
  }

  override create(filePath: string): BlockFile {
    const file = super.create(filePath);
    if (this.plan === null) return file;
    this.failing = new FailingFile(file, this.plan);
    return this.failing;
  }
}

interface Variant {
  name: string;
  /** The files the fault file system starts with. */
  files: () => Record<string, Uint8Array>;
  request: (fileSystem: FaultFileSystem) => RewriteRequest;
  target: string;
}

const variants: Variant[] = [];

beforeAll(async () => {
  // Two snapshots over compressible data: compress in place, the source read through the fault file system.
  const inPlace = folder.file('in-place.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', inPlace, '2M']);
  await qemuIo(inPlace, ['write -P 0x41 0 600k']);
  await qemuImg(['snapshot', '-c', 's1', inPlace]);
  await qemuIo(inPlace, ['write -P 0x42 100k 300k', 'write -z 500k 40k']);
  await qemuImg(['snapshot', '-c', 's2', inPlace]);
  await qemuIo(inPlace, ['write -P 0x43 1M 200k']);
  const inPlaceBytes = new Uint8Array(fs.readFileSync(inPlace));
  variants.push({
    name: 'compress in place',
    files: () => ({ '/vm/disk.qcow2': inPlaceBytes }),
    request: (fileSystem) => ({ source: '/vm/disk.qcow2', compression: 'compress', batchClusters: 16, fileSystem, openFile: (filePath) => fileSystem.open(filePath), freeBytes: () => null }),
    target: '/vm/disk.qcow2',
  });

  // Several MiB of compressed clusters and a snapshot, uncompressed into a new path over an
  // existing file: more than the writer stages at once, so the new file takes several writes.
  const raw = folder.file('text.raw');
  fs.writeFileSync(raw, compressibleBytes(6 * MiB, 9));
  const compressed = folder.file('compressed.qcow2');
  await qemuImg(['convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=65536', raw, compressed]);
  await qemuImg(['snapshot', '-c', 'text', compressed]);
  await qemuIo(compressed, ['write -P 0x44 2M 1M']);
  variants.push({
    name: 'compact --uncompress into a new path over an existing file',
    files: () => ({ '/out/old.qcow2': new Uint8Array(300 * KiB).fill(0x5c) }),
    request: (fileSystem) => ({ source: compressed, target: '/out/old.qcow2', compression: 'uncompress', overwrite: true, fileSystem, freeBytes: () => null }),
    target: '/out/old.qcow2',
  });
  variants.push({
    name: 'compress on two threads into a new path where there is nothing',
    files: () => ({}),
    request: (fileSystem) => ({ source: compressed, target: '/out/new.qcow2', compression: 'compress', compressionType: 0, compressionThreads: 2, batchClusters: 8, fileSystem, freeBytes: () => null }),
    target: '/out/new.qcow2',
  });
});

/** The temporary file's writes, truncates and flushes in a run's log, as a FaultFile logs them (what failurePlans takes). */
function temporaryFileCalls(fileSystem: FaultFileSystem): FileEvent[] {
  const calls: FileEvent[] = [];
  for (const event of fileSystem.log) {
    if (event.kind === 'write') calls.push({ kind: 'write', position: event.position, bytes: event.bytes });
    else if (event.kind === 'truncate') calls.push({ kind: 'truncate', size: event.size });
    else if (event.kind === 'flush') calls.push({ kind: 'flush' });
  }
  return calls;
}

function expectUnchanged(fileSystem: FaultFileSystem, initial: Record<string, Uint8Array>, label: string): void {
  const files = fileSystem.files();
  expect([...files.keys()].sort(), `${label}: the files left`).toEqual(Object.keys(initial).sort());
  for (const [filePath, bytes] of Object.entries(initial)) {
    expect(firstDifference(files.get(filePath) ?? new Uint8Array(0), bytes), `${label}: first changed byte of ${filePath}`).toBe(-1);
  }
}

describe('a rewrite on a full or failing disk leaves everything as it was', { timeout: 120_000 }, () => {
  it('at every write, truncate and flush of the new image: a typed error naming the target, nothing written after it, the original byte for byte, no temporary file', () => {
    expect(variants).toHaveLength(3);
    for (const variant of variants) {
      const reference = new FailingFileSystem(variant.files(), null);
      const result = rewriteImage(variant.request(reference));
      expect(result.verified).toBe(true);
      const calls = temporaryFileCalls(reference);
      // The plans include short writes where a write grows the file.
      const plans = failurePlans(calls);
      expect(calls.filter((call) => call.kind === 'write').length, variant.name).toBeGreaterThanOrEqual(3);
      let runs = 0;
      for (const plan of plans) {
        runs++;
        const label = `${variant.name}: ${plan.code}${plan.partialBytes === undefined ? '' : ` after ${plan.partialBytes} bytes`} at call ${plan.event + 1}/${calls.length} (${calls[plan.event]?.kind ?? '?'})`;
        const attempt = new FailingFileSystem(variant.files(), plan);
        const error = caught(() => rewriteImage(variant.request(attempt)));
        expect(attempt.failing?.thrown, `${label}: the planned failure happened`).not.toBeNull();
        expect(error, label).toBeInstanceOf(Qcow2Error);
        expect((error as Qcow2Error).code, label).toBe(EXPECTED_CODE[plan.code]);
        expect((error as Qcow2Error).message, label).toMatch(EXPECTED_WORDS[plan.code]);
        expect((error as Qcow2Error).message, label).toContain(variant.target);
        expect((error as Qcow2Error).message, label).not.toMatch(/cowbell-[0-9a-f]{12}\.tmp/);
        expect(attempt.failing?.callsAfterFailure, `${label}: calls after the failure`).toBe(0);
        expectUnchanged(attempt, variant.files(), label);
      }
      console.log(`io-errors: rewrite, ${variant.name}: ${runs} failing runs over ${calls.length} calls`);
    }
  });

  it('a failed rename leaves the original and no temporary file; a failed folder sync after it leaves the complete new image', () => {
    for (const variant of variants) {
      for (const code of ['ENOSPC', 'EIO'] as FailureCode[]) {
        const renaming = new FaultFileSystem(variant.files());
        renaming.rename = () => {
          throw nodeStyleError(code, 'rename');
        };
        renaming.renameNoReplace = renaming.rename;
        const refused = caught(() => rewriteImage(variant.request(renaming)));
        expect(refused, `${variant.name}: ${code} at the rename`).toMatchObject({ code: EXPECTED_CODE[code] });
        expectUnchanged(renaming, variant.files(), `${variant.name}: ${code} at the rename`);
      }

      const reference = new FaultFileSystem(variant.files());
      rewriteImage(variant.request(reference));
      const expected = reference.files().get(variant.target);
      const syncing = new FaultFileSystem(variant.files());
      syncing.syncFolder = () => {
        throw nodeStyleError('EIO', 'fsync');
      };
      const late = caught(() => rewriteImage(variant.request(syncing)));
      expect(late, `${variant.name}: EIO at the folder sync`).toMatchObject({ code: 'IO_ERROR' });
      const files = syncing.files();
      expect([...files.keys()].sort()).toEqual([...new Set([...Object.keys(variant.files()), variant.target])].sort());
      expect(firstDifference(files.get(variant.target) ?? new Uint8Array(0), expected ?? new Uint8Array(1))).toBe(-1);
    }
  });
});

describe('a rewrite of a real file that fails half-way', { timeout: 60_000 }, () => {
  /** The node file system with its new files failing as planned. */
  function failingNodeFileSystem(plan: FailurePlan): { fileSystem: AtomicFileSystem; failing: () => FailingFile | null } {
    let failing: FailingFile | null = null;
    const fileSystem: AtomicFileSystem = {
      ...nodeFileSystem,
      create: (filePath) => (failing = new FailingFile(nodeFileSystem.create(filePath), plan)),
    };
    return { fileSystem, failing: () => failing };
  }

  it('in place: the disk byte for byte, alone in its folder, and free for qemu to write at once', async () => {
    const work = tempDir();
    try {
      const disk = work.file('disk.qcow2');
      await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', disk, '8M']);
      await qemuIo(disk, ['write -P 0x61 0 5M']);
      await qemuImg(['snapshot', '-c', 'before', disk]);
      await qemuIo(disk, ['write -P 0x62 1M 1M']);
      // A successful run on a copy counts the new file's calls; the last one is the flush before the rename.
      const copy = work.file('copy.qcow2');
      fs.copyFileSync(disk, copy);
      let calls = 0;
      const counted = (file: BlockFile): BlockFile => ({
        path: file.path,
        readOnly: file.readOnly,
        read: (buffer, position) => file.read(buffer, position),
        write: (buffer, position) => void (calls++, file.write(buffer, position)),
        truncate: (size) => void (calls++, file.truncate(size)),
        flush: () => void (calls++, file.flush()),
        size: () => file.size(),
        close: () => file.close(),
      });
      rewriteImage({ source: copy, compression: 'uncompress', batchClusters: 64, fileSystem: { ...nodeFileSystem, create: (filePath) => counted(nodeFileSystem.create(filePath)) } });
      fs.rmSync(copy);
      expect(calls).toBeGreaterThanOrEqual(4);
      const plans: FailurePlan[] = [
        { event: 0, code: 'ENOSPC' },
        { event: 1, code: 'ENOSPC', partialBytes: 4096 },
        { event: calls - 2, code: 'EIO' },
        { event: calls - 1, code: 'EIO' },
      ];
      for (const plan of plans) {
        const hash = fileHash(disk);
        const attempt = failingNodeFileSystem(plan);
        const error = caught(() => rewriteImage({ source: disk, compression: 'uncompress', batchClusters: 64, fileSystem: attempt.fileSystem }));
        const label = `${plan.code} at call ${plan.event}`;
        expect(error, label).toMatchObject({ code: EXPECTED_CODE[plan.code] });
        expect(attempt.failing()?.callsAfterFailure, label).toBe(0);
        expect(fileHash(disk), label).toBe(hash);
        expect(fs.readdirSync(work.path), label).toEqual(['disk.qcow2']);
        // The source's guard locks went with the failed run: qemu-img can write the disk now.
        const written = await qemuImg(['snapshot', '-c', `after-${plan.event}`, disk], { okCodes: [0, 1] });
        expect(written.stdout + written.stderr, label).not.toMatch(/lock/);
        expect(written.code, label).toBe(0);
        await qemuImg(['snapshot', '-d', `after-${plan.event}`, disk]);
      }
    } finally {
      work.cleanup();
    }
  });
});
