/**
 * The helper reader: what it reads into its buffer, on its thread or (before the thread runs) on
 * the caller's, is exactly the file's bytes, zeros past the end; a read that fails reaches the
 * caller's wait() typed.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { HelperReader } from '../../../src/shared/qcow2/io/helper-reader.ts';
import { tempDir, type TempDir } from '../../helpers/qemu.ts';

const KiB = 1024;
let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

/** Long enough for the helper thread to have started on any machine these tests run on. */
function waitForHelper(): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500);
}

describe('HelperReader', () => {
  it.each([
    ['before its thread runs', false],
    ['on its thread', true],
  ])('reads ranges %s as the file holds them, and zeros past its end', (_, started) => {
    const file = folder.file(`data-${String(started)}`);
    const content = randomBytes(300 * KiB);
    fs.writeFileSync(file, content);
    const fd = fs.openSync(file, 'r');
    try {
      const reader = HelperReader.start(fd, file, 1024 * KiB);
      expect(reader, 'a helper thread starts here').not.toBeNull();
      if (reader === null) return;
      if (started) waitForHelper();
      const reads = [
        { at: 0, position: 64 * KiB, length: 64 * KiB },
        { at: 64 * KiB, position: 0, length: 128 * KiB },
        { at: 512 * KiB, position: 280 * KiB, length: 64 * KiB },
        { at: 900 * KiB, position: 1000 * KiB, length: 4 * KiB },
      ];
      reader.buffer.fill(0xee);
      for (const read of reads) reader.queue(read.at, read.position, read.length);
      reader.wait();
      for (const read of reads) {
        const expected = Buffer.alloc(read.length);
        content.copy(expected, 0, Math.min(read.position, content.length), Math.min(read.position + read.length, content.length));
        expect(Buffer.from(reader.buffer.subarray(read.at, read.at + read.length)).equals(expected), `${read.length} bytes at ${read.position}`).toBe(true);
      }
      reader.close();
    } finally {
      fs.closeSync(fd);
    }
  });

  it('reports a read that fails on its thread (a closed descriptor) as a typed error, and refuses a read past its buffer', () => {
    const file = folder.file('closed');
    fs.writeFileSync(file, randomBytes(64 * KiB));
    const fd = fs.openSync(file, 'r');
    const reader = HelperReader.start(fd, file, 128 * KiB);
    expect(reader).not.toBeNull();
    if (reader === null) return;
    expect(() => reader.queue(64 * KiB, 0, 128 * KiB)).toThrow(Qcow2Error);
    waitForHelper();
    fs.closeSync(fd);
    reader.queue(0, 0, 64 * KiB);
    let caught: unknown = null;
    try {
      reader.wait();
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(Qcow2Error);
    expect((caught as Qcow2Error).message).toMatch(/EBADF|bad file descriptor/i);
    reader.close();
  });
});
