/**
 * A copy of the current state keeps writers out while it reads (found by the concurrency audit:
 * copy-out took only a reader's lock, so a VM or qemu-io starting to write mid-copy tore the copy —
 * old bytes at the start, new at the end — and it said "Copied 1 file").
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { openGuestReader } from '../../../src/shared/qcow2/image/image-format.ts';
import { lockTiming } from '../../../src/shared/qcow2/io/image-lock.ts';
import type { JobContext } from '../../../src/shared/qcow2/job-context.ts';
import { rewriteImage } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { qemuIoWrite } from '../../helpers/midway.ts';
import { qemuImg, tempDir, type TempDir } from '../../helpers/qemu.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

describe('the current state opened guarded', () => {
  it('keeps QEMU from starting to write it until closed; unguarded (browsing) it does not', async () => {
    const image = folder.file('disk.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '4M']);
    const guarded = openGuestReader(image, undefined, { guard: true });
    try {
      expect(qemuIoWrite(image)).toMatch(/Failed to get "write" lock/);
    } finally {
      guarded.close();
    }
    const browsing = openGuestReader(image);
    try {
      expect(qemuIoWrite(image)).not.toMatch(/lock/);
    } finally {
      browsing.close();
    }
  });

  it('takes turns with an in-place rewrite (another Cowbell): a copy waits for the rename, and a rewrite meets a copy reading with "busy", not a VM (regression audit)', async () => {
    const image = folder.file('turns.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '4M']);
    const wait = lockTiming.busyWaitMs;
    lockTiming.busyWaitMs = 300;
    try {
      let copyError: unknown = null;
      const job: JobContext = {
        progress() {
          if (copyError !== null) return;
          try {
            openGuestReader(image, undefined, { guard: true }).close();
            copyError = 'opened';
          } catch (error) {
            copyError = error;
          }
        },
        throwIfCancelled() {},
      };
      rewriteImage({ source: image, compression: 'keep' }, job);
      expect(copyError).toBeInstanceOf(Qcow2Error);
      expect((copyError as Qcow2Error).message).toMatch(/busy in another Cowbell/);

      const reading = openGuestReader(image, undefined, { guard: true });
      try {
        let refusal: unknown = null;
        try {
          rewriteImage({ source: image, compression: 'keep' });
        } catch (error) {
          refusal = error;
        }
        expect((refusal as Qcow2Error).code).toBe('IN_USE');
        expect((refusal as Qcow2Error).message).toMatch(/busy in another Cowbell/);
      } finally {
        reading.close();
      }
    } finally {
      lockTiming.busyWaitMs = wait;
    }
  });
});
