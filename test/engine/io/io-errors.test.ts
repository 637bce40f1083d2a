/**
 * Disk full and I/O errors: ENOSPC and EIO at every write, truncate and flush of every operation
 * in the crash table (io-errors-runner.ts), of create, and of a path-level operation on a real file.
 * `npm test` samples qemu-img check over the resulting files; IO_ERRORS_FULL=1 checks them all.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeBlockFile, type BlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { createImage } from '../../../src/shared/qcow2/image/create.ts';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { withImage } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { createSnapshot } from '../../../src/shared/qcow2/snapshots/snapshots.ts';
import { FaultFile, FaultFileSystem } from '../../helpers/fault-file.ts';
import { FailingFile, type FailureCode, type FailurePlan } from '../../helpers/failing-file.ts';
import { fileHash } from '../../helpers/image-locks.ts';
import { qemuCheck, qemuImg, qemuInfo, qemuIo, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { imageOperations } from '../crash/harness.ts';
import { EXPECTED_CODE, EXPECTED_WORDS, ioErrorSettings, runIoErrorCase, summary } from './io-errors-runner.ts';

const operations = imageOperations.filter((operation) => ioErrorSettings.full || operation.fullOnly !== true);

describe('ENOSPC or EIO at any write or flush: a typed error, nothing written after it, a valid image with the before or after state', { timeout: 60_000 }, () => {
  for (const operation of operations) {
    it(operation.name, async () => {
      const report = await runIoErrorCase(operation);
      console.log(summary(report));
      expect(report.failures).toEqual([]);
      expect(report.runs).toBeGreaterThanOrEqual(2);
    }, 600_000);
  }
});

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

/** A FaultFileSystem whose new files fail as planned (create's only writes go to its temporary file). */
function failingFileSystem(plan: FailurePlan | null): { fileSystem: FaultFileSystem; failing: () => FailingFile | null } {
  const fileSystem = new FaultFileSystem();
  let failing: FailingFile | null = null;
  const create = fileSystem.create.bind(fileSystem);
  fileSystem.create = (filePath: string): BlockFile => {
    const file = create(filePath);
    if (plan === null) return file;
    failing = new FailingFile(file, plan);
    return failing;
  };
  return { fileSystem, failing: () => failing };
}

describe('create on a full or failing disk', { timeout: 60_000 }, () => {
  const target = '/images/new.qcow2';
  const variants = [
    { name: 'plain v3, 64 KiB clusters', options: { size: 64 * 1024 * 1024 } },
    { name: 'preallocation=metadata, 512-byte clusters', options: { size: 256 * 1024, clusterSize: 512, preallocation: 'metadata' as const } },
  ];

  for (const variant of variants) {
    it(`${variant.name}: every failing call leaves no file at all, neither the image nor a temporary`, () => {
      const reference = failingFileSystem(null);
      createImage({ path: target, ...variant.options, fileSystem: reference.fileSystem });
      const calls = reference.fileSystem.log.filter((event) => event.kind === 'write' || event.kind === 'truncate' || event.kind === 'flush').length;
      expect(calls).toBeGreaterThan(2);
      let runs = 0;
      for (let event = 0; event < calls; event++) {
        for (const code of ['ENOSPC', 'EIO'] as FailureCode[]) {
          runs++;
          const attempt = failingFileSystem({ event, code });
          const error = caught(() => createImage({ path: target, ...variant.options, fileSystem: attempt.fileSystem }));
          expect(error, `${code} at call ${event}`).toBeInstanceOf(Qcow2Error);
          expect((error as Qcow2Error).code).toBe(EXPECTED_CODE[code]);
          expect((error as Qcow2Error).message).toMatch(EXPECTED_WORDS[code]);
          expect(attempt.failing()?.callsAfterFailure).toBe(0);
          expect([...attempt.fileSystem.files().keys()], `${code} at call ${event}`).toEqual([]);
        }
      }
      console.log(`io-errors: create (${variant.name}): ${runs} failing runs over ${calls} calls`);
    });
  }

  it('a failed rename leaves no file; a failed folder sync after the rename leaves the complete image', async () => {
    const renaming = new FaultFileSystem();
    renaming.renameNoReplace = () => {
      throw Object.assign(new Error('ENOSPC: no space left on device, link'), { code: 'ENOSPC' });
    };
    const refused = caught(() => createImage({ path: target, size: 1 << 20, fileSystem: renaming }));
    expect(refused).toMatchObject({ code: 'NO_SPACE' });
    expect([...renaming.files().keys()]).toEqual([]);

    const syncing = new FaultFileSystem();
    syncing.syncFolder = () => {
      throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
    };
    const late = caught(() => createImage({ path: target, size: 1 << 20, fileSystem: syncing }));
    expect(late).toMatchObject({ code: 'IO_ERROR' });
    const files = syncing.files();
    expect([...files.keys()]).toEqual([target]);
    const written = folder.file('synced.qcow2');
    fs.writeFileSync(written, files.get(target) ?? new Uint8Array(0));
    expect((await qemuCheck(written)).code).toBe(0);
  });
});

describe('a path-level operation on a real file that fails half-way', { timeout: 60_000 }, () => {
  it('snapshot create through withImage: NO_SPACE, the file closed without another write, qemu-img finds no corruption, no snapshot and the same data', async () => {
    const image = folder.file('real.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', image, '256k']);
    await qemuIo(image, ['write -P 0x5a 0 40k']);
    await qemuImg(['snapshot', '-c', 'first', image]);
    await qemuIo(image, ['write -P 0x5b 1k 8k']);
    const dataBefore = await rawOf(image);

    // Count the calls of a successful run on a copy, then fail one in the middle on the real file.
    const copy = folder.file('copy.qcow2');
    fs.copyFileSync(image, copy);
    let calls = 0;
    withImage(copy, 'write', (opened) => void createSnapshot(opened, { name: 'second' }), {
      openFile: (filePath, readOnly) => {
        const file = NodeBlockFile.open(filePath, { readOnly });
        const counted: BlockFile = {
          path: file.path,
          readOnly: file.readOnly,
          read: (buffer, position) => file.read(buffer, position),
          write: (buffer, position) => {
            calls++;
            file.write(buffer, position);
          },
          flush: () => {
            calls++;
            file.flush();
          },
          truncate: (size) => {
            calls++;
            file.truncate(size);
          },
          size: () => file.size(),
          close: () => file.close(),
        };
        return counted;
      },
    });
    expect(calls).toBeGreaterThan(6);

    let failing: FailingFile | null = null;
    const hashBefore = fileHash(image);
    const error = caught(() =>
      withImage(image, 'write', (opened) => void createSnapshot(opened, { name: 'second' }), {
        openFile: (filePath, readOnly) => (failing = new FailingFile(NodeBlockFile.open(filePath, { readOnly }), { event: Math.floor(calls / 2), code: 'ENOSPC' })),
      }),
    );
    expect(error).toMatchObject({ code: 'NO_SPACE' });
    expect((error as Error).message).toContain(image);
    expect((failing as FailingFile | null)?.callsAfterFailure).toBe(0);
    expect(fileHash(image)).not.toBe(hashBefore);
    const check = await qemuCheck(image);
    expect(check.report?.corruptions ?? 0).toBe(0);
    expect([0, 3]).toContain(check.code);
    expect((await qemuInfo(image)).snapshots?.map((snapshot) => snapshot.name)).toEqual(['first']);
    expect(await rawOf(image)).toEqual(dataBefore);
  });
});

describe('regression: a retry after a failed write', { timeout: 60_000 }, () => {
  it('flushing again after the L1 write failed does not drop the refcount of the L2 table the file still points to', async () => {
    // A snapshot shares the only L2 table (refcount 2); a guest write copies it, points the L1
    // entry at the copy and schedules the old table's refcount drop for after the L1 write.
    const image = folder.file('retry.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', image, '64k']);
    await qemuIo(image, ['write -P 0x21 0 8k']);
    await qemuImg(['snapshot', '-c', 'shared', image]);
    const initial = new Uint8Array(fs.readFileSync(image));

    const reference = new FaultFile(image, initial);
    const planned = Qcow2Image.openFile(reference);
    const l1Offset = planned.l1.offset;
    planned.write(new Uint8Array(512).fill(0x22), 1024);
    planned.close();
    const l1Write = reference.log.findIndex((event) => event.kind === 'write' && event.position >= l1Offset && event.position < l1Offset + 512);
    expect(l1Write).toBeGreaterThan(0);

    const inner = new FaultFile(image, initial);
    const failing = new FailingFile(inner, { event: l1Write, code: 'EIO' });
    const opened = Qcow2Image.openFile(failing);
    opened.write(new Uint8Array(512).fill(0x22), 1024);
    expect(caught(() => opened.flush())).toMatchObject({ code: 'IO_ERROR' });
    // The caller tries again (or just closes, which flushes): the space may be back by now.
    expect(caught(() => opened.flush())).toMatchObject({ code: 'IO_ERROR', message: expect.stringContaining('an earlier write to this image failed') });
    expect(caught(() => opened.write(new Uint8Array(512), 0))).toMatchObject({ code: 'IO_ERROR' });
    opened.close();
    expect(failing.callsAfterFailure).toBe(0);

    const result = folder.file('retry-result.qcow2');
    fs.writeFileSync(result, inner.contents());
    const check = await qemuCheck(result);
    expect(check.report?.corruptions ?? 0, check.output).toBe(0);
    expect((await rawOf(result)).subarray(0, 8192)).toEqual(new Uint8Array(8192).fill(0x21));
  });
});
