/**
 * The one helper that makes whole new files (writeFileAtomically: create, convert, the rewrite
 * behind compress and compact, and later encrypt) cut at every step of its file-system log: the
 * target is the old file (or nothing) or the complete new one, never a mix; the old one until the
 * rename, and the new one once the call returned.
 * The same judge, given careless helpers, catches them — so a pass means something.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { FaultFileSystem } from '../../helpers/fault-file.ts';
import { tempDir, type TempDir } from '../../helpers/qemu.ts';
import { atomicOrderProblems, fileSummary, runFileCrashCase } from './file-runner.ts';
import { fileOperations, type FileOperation } from './harness.ts';
import { buildImage } from './setups.ts';
import { crashSettings } from './runner.ts';

const operations = fileOperations.filter((operation) => crashSettings.full || operation.fullOnly !== true);

describe('atomic replacement: a power cut leaves the old file or the complete new one', () => {
  for (const operation of operations) {
    it(operation.name, async () => {
      const report = await runFileCrashCase(operation);
      console.log(fileSummary(report));
      expect(report.failures).toEqual([]);
      // The promised order, spelled out: the new file's flush, then the rename, then the folder sync.
      const kinds = report.log.filter((event) => event.kind !== 'write' && event.kind !== 'truncate').map((event) => event.kind);
      expect(kinds.slice(kinds.lastIndexOf('flush'))).toEqual(['flush', 'close', 'rename', 'sync-folder']);
    }, 120_000);
  }
});

describe('the atomic-replacement judge catches careless helpers', () => {
  let folder: TempDir;
  let image: Uint8Array;
  beforeAll(async () => {
    folder = tempDir();
    const imagePath = folder.file('image.qcow2');
    await buildImage(imagePath, 'compat=1.1,cluster_size=512', 64 * 1024, [{ io: 'write -P 0x66 0 4k' }]);
    image = new Uint8Array(fs.readFileSync(imagePath));
  });
  afterAll(() => folder.cleanup());

  /** Writes `image` to the target in three pieces, in the order `steps` says. */
  function careless(name: string, steps: (fileSystem: FaultFileSystem, write: (filePath: string) => BlockFile) => void): FileOperation {
    const target = '/careless/disk.qcow2';
    return {
      name,
      target,
      setup: async () => new Uint8Array(1024).fill(7),
      run: (fileSystem) =>
        steps(fileSystem, (filePath) => {
          const file = fileSystem.create(filePath);
          const third = Math.ceil(image.length / 3);
          for (let start = 0; start < image.length; start += third) file.write(image.subarray(start, start + third), start);
          return file;
        }),
    };
  }

  it('renaming before the flush is caught (a cut can leave a half-written new file under the name)', async () => {
    const operation = careless('rename before flush', (fileSystem, write) => {
      write('/careless/.tmp');
      fileSystem.rename('/careless/.tmp', '/careless/disk.qcow2');
      fileSystem.syncFolder('/careless');
    });
    const report = await runFileCrashCase(operation);
    expect(report.failures.some((failure) => failure.startsWith('order: the new file is not flushed'))).toBe(true);
    expect(report.failures.some((failure) => /neither the old file nor the complete new one|is not the new file \(\d+ bytes\)/.test(failure))).toBe(true);
  });

  it('skipping the folder sync is caught (the rename may not survive a cut after the call returned)', async () => {
    const operation = careless('no folder sync', (fileSystem, write) => {
      const file = write('/careless/.tmp');
      file.flush();
      file.close();
      fileSystem.rename('/careless/.tmp', '/careless/disk.qcow2');
    });
    const report = await runFileCrashCase(operation);
    expect(report.failures.some((failure) => failure.startsWith('order: the folder /careless is not synced'))).toBe(true);
    expect(report.failures.some((failure) => failure.includes('the operation returned, but after a power cut'))).toBe(true);
  });

  it('putting the new file under the name before the rename is caught, even when it is complete and flushed', async () => {
    const operation = careless('new file under the name early', (fileSystem, write) => {
      fileSystem.remove('/careless/disk.qcow2');
      write('/careless/disk.qcow2').flush();
      const copy = write('/careless/.tmp');
      copy.flush();
      copy.close();
      fileSystem.rename('/careless/.tmp', '/careless/disk.qcow2');
      fileSystem.syncFolder('/careless');
    });
    const report = await runFileCrashCase(operation);
    expect(report.failures.some((failure) => /the cut comes before the rename \(event \d+\), but the target is not what was there before/.test(failure))).toBe(true);
  });

  it('the order check names each missing step', () => {
    const fileSystem = new FaultFileSystem();
    const file = fileSystem.create('/f/.tmp');
    file.write(new Uint8Array(4), 0);
    file.flush();
    fileSystem.rename('/f/.tmp', '/f/x');
    file.write(new Uint8Array(4), 4);
    expect(atomicOrderProblems(fileSystem.log, '/f/x')).toEqual([
      'the new file is written (event 4) after the rename (event 3)',
      'the new file is not flushed after its last write (event 4) and before the rename (event 3)',
      'the folder /f is not synced after the rename',
    ]);
  });
});
