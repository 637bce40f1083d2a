/**
 * The engine never changes bytes it was handed: guest data written into an encrypted disk is
 * encrypted in a copy, and a passphrase is hashed from a copy that is zeroed afterwards — also
 * when the caller's bytes are a Node Buffer, whose slice() is a view, not a copy.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { changeKeySlots } from '../../../src/shared/qcow2/crypto/key-slot-change.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { readImageInfo } from '../../../src/shared/qcow2/image/info.ts';
import { rewriteImage } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { qemuImg, tempDir, type TempDir } from '../../helpers/qemu.ts';

let folder: TempDir;
let encrypted = '';
beforeAll(async () => {
  folder = tempDir();
  const plain = folder.file('plain.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', plain, '1M']);
  encrypted = folder.file('encrypted.qcow2');
  rewriteImage({ source: plain, target: encrypted, compression: 'keep', encryption: { kind: 'luks', passphrase: 'old-pass', iterations: 1000, digestIterations: 1000 } });
});
afterAll(() => folder.cleanup());

describe("the caller's bytes stay the caller's", () => {
  it('a Buffer written into an encrypted disk is not encrypted in place', () => {
    const image = Qcow2Image.open(encrypted, { passphrase: Buffer.from('old-pass') });
    try {
      const data = Buffer.alloc(65536, 0xab);
      image.write(data, 0);
      image.write(data.subarray(512, 1536), 70_000);
      expect(data.every((byte) => byte === 0xab)).toBe(true);
      expect(image.read(0, 65536).every((byte) => byte === 0xab)).toBe(true);
    } finally {
      image.close();
    }
  });

  it('a passphrase change given Buffers erases the old slot, and leaves the Buffers as they were', () => {
    const image = folder.file('buffers.qcow2');
    fs.copyFileSync(encrypted, image);
    const old = Buffer.from('old-pass');
    const fresh = Buffer.from('new-pass');
    expect(changeKeySlots(image, { passphrase: old, action: 'change', newPassphrase: fresh, iterations: 1000 })).toEqual({ activeSlots: [1], added: 1, removed: [0] });
    expect(old.toString()).toBe('old-pass');
    expect(fresh.toString()).toBe('new-pass');
    expect(readImageInfo(image)['format-specific'].data.encrypt?.slots?.map((slot) => slot.active)).toEqual([false, true, false, false, false, false, false, false]);
    expect(() => Qcow2Image.open(image, { readOnly: true, passphrase: old }).close()).toThrow(/opens none of the image's key slots/);
  });
});
