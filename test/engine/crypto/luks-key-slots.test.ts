import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openImageCipher } from '../../../src/shared/qcow2/crypto/disk-cipher.ts';
import { applyLuksAreaWrites } from '../../../src/shared/qcow2/crypto/luks-area.ts';
import { addLuksKeySlot, eraseLuksKeySlot, luksSlotsOpenedBy, unlockLuks } from '../../../src/shared/qcow2/crypto/luks-keys.ts';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { serializeCryptoHeaderExtension } from '../../../src/shared/qcow2/format/crypto-header-extension.ts';
import { EXT_CRYPTO_HEADER } from '../../../src/shared/qcow2/format/header.ts';
import { serializeLuksHeader } from '../../../src/shared/qcow2/format/luks-header.ts';
import { NodeBlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { firstDifference, qemuImgTimingPbkdf2, tempDir, type TempDir } from '../../helpers/qemu.ts';
import {
  PATTERN_WRITES,
  checkEncrypted,
  createLuksImage,
  decryptGuest,
  expectedGuest,
  imageOpts,
  patternCommands,
  qemuIoEncrypted,
  rawOfEncrypted,
  readLuksArea,
  secret,
} from '../../helpers/encrypted-images.ts';

const PASS = 'moo-cow-pass';
const NEW_PASS = 'second-bell';
const EXPECTED = expectedGuest(4 << 20, PATTERN_WRITES);

let folder: TempDir;
let original: string;
beforeAll(async () => {
  folder = tempDir();
  original = folder.file('original.qcow2');
  await createLuksImage(original, PASS);
  await qemuIoEncrypted(original, PASS, patternCommands(PATTERN_WRITES));
}, 60_000);
afterAll(() => folder.cleanup());

/** A copy of the qemu-made image with data, to change without touching the others' copies. */
function copyOf(name: string): string {
  const image = folder.file(name);
  fs.copyFileSync(original, image);
  return image;
}

function codeOf(action: () => unknown): string | undefined {
  try {
    action();
  } catch (error) {
    return error instanceof Qcow2Error ? error.code : `untyped: ${String(error)}`;
  }
  return undefined;
}

function expectGuest(actual: Uint8Array): void {
  expect(firstDifference(actual, EXPECTED)).toBe(-1);
}

describe('LUKS key slots and qemu-img 7.2', { timeout: 60_000 }, () => {
  it('parses the header and area qemu-img 7.2 writes by default, and serialises both back to the same bytes', () => {
    const { header, headerBytes, area } = readLuksArea(original);
    expect(area).toEqual({ offset: 0x40000, length: 2068480 });
    expect(Array.from(serializeCryptoHeaderExtension(area))).toEqual([0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0x1f, 0x90, 0]);
    expect(header.cipher).toEqual({ name: 'aes', mode: 'xts', ivGenerator: 'plain64', ivHash: null, keyBytes: 64 });
    expect(header.hash).toBe('sha256');
    expect(header.payloadOffsetSectors).toBe(4040);
    expect(header.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(header.keySlots.map((slot) => slot.keyMaterialOffsetSectors)).toEqual([8, 512, 1016, 1520, 2024, 2528, 3032, 3536]);
    expect(header.keySlots.map((slot) => slot.active)).toEqual([true, false, false, false, false, false, false, false]);
    expect(header.keySlots.every((slot) => slot.stripes === 4000)).toBe(true);
    expect(header.keySlots[1]).toMatchObject({ iterations: 0, salt: new Uint8Array(32) });
    expect(header.masterKeyDigestIterations).toBeGreaterThanOrEqual(1000);
    expect(Buffer.from(serializeLuksHeader(header)).equals(Buffer.from(headerBytes))).toBe(true);
  });

  it('opens the image cipher from the file and its qcow2 header: LUKS by host offset, the slot that opened, the area', () => {
    const image = copyOf('open.qcow2');
    const { qcow2 } = readLuksArea(image);
    const file = NodeBlockFile.open(image, { readOnly: true });
    try {
      const opened = openImageCipher(file, qcow2, PASS);
      expect(opened.cipher.kind).toBe('luks');
      expect(opened.luks?.slot).toBe(0);
      expect(opened.luks?.area).toEqual({ offset: 0x40000, length: 2068480 });
      expectGuest(decryptGuest(image, opened.cipher));
      expect(codeOf(() => opened.cipher.decrypt(new Uint8Array(512), 100, 0))).toBe('INVALID_ARGUMENT');
      expect(codeOf(() => opened.cipher.decrypt(new Uint8Array(100), 512, 0))).toBe('INVALID_ARGUMENT');
      expect(codeOf(() => openImageCipher(file, qcow2, 'wrong'))).toBe('BAD_PASSPHRASE');
      expect(codeOf(() => openImageCipher(file, { ...qcow2, cryptMethod: 0 }, PASS))).toBe('INVALID_ARGUMENT');
      const withoutExtension = { ...qcow2, extensions: qcow2.extensions.filter((extension) => extension.type !== EXT_CRYPTO_HEADER) };
      expect(codeOf(() => openImageCipher(file, withoutExtension, PASS))).toBe('CORRUPT');
      opened.cipher.close();
    } finally {
      file.close();
    }
  });

  it('a slot qemu-img amend adds opens with its passphrase into the same master key; once amend erases slot 0 the old passphrase is BAD_PASSPHRASE', async () => {
    const image = copyOf('amend.qcow2');
    const before = readLuksArea(image);
    expect(codeOf(() => unlockLuks(before.header, before.readArea, 'not-the-pass'))).toBe('BAD_PASSPHRASE');
    const first = unlockLuks(before.header, before.readArea, PASS);

    await qemuImgTimingPbkdf2(['amend', ...secret('sec0', PASS), ...secret('sec1', NEW_PASS), '--image-opts', imageOpts(image, 'sec0'),
      '-o', 'encrypt.new-secret=sec1,encrypt.state=active,encrypt.iter-time=10']);
    const added = readLuksArea(image);
    expect(added.header.keySlots.map((slot) => slot.active)).toEqual([true, true, false, false, false, false, false, false]);
    const second = unlockLuks(added.header, added.readArea, NEW_PASS);
    expect(second.slot).toBe(1);
    expect(second.masterKey).toEqual(first.masterKey);
    expect(luksSlotsOpenedBy(added.header, added.readArea, PASS)).toEqual([0]);

    await qemuImgTimingPbkdf2(['amend', ...secret('sec1', NEW_PASS), '--image-opts', imageOpts(image, 'sec1'), '-o', 'encrypt.state=inactive,encrypt.keyslot=0']);
    const erased = readLuksArea(image);
    expect(erased.header.keySlots[0]).toMatchObject({ active: false, iterations: 0, salt: new Uint8Array(32) });
    expect(codeOf(() => unlockLuks(erased.header, erased.readArea, PASS))).toBe('BAD_PASSPHRASE');
    const file = NodeBlockFile.open(image, { readOnly: true });
    try {
      expectGuest(decryptGuest(image, openImageCipher(file, erased.qcow2, NEW_PASS).cipher));
    } finally {
      file.close();
    }
  });

  it('qemu opens a key slot Cowbell adds, and refuses the passphrase of the slot Cowbell erased; qemu-img check stays clean', async () => {
    const image = copyOf('cowbell-slots.qcow2');
    const disk = readLuksArea(image);
    const { masterKey } = unlockLuks(disk.header, disk.readArea, PASS);
    const added = addLuksKeySlot(disk.header, masterKey, NEW_PASS, { iterations: 5000 });
    masterKey.fill(0);
    expect(added.slot).toBe(1);
    const file = NodeBlockFile.open(image);
    try {
      applyLuksAreaWrites(file, disk.area, added.writes);
      expect(codeOf(() => eraseLuksKeySlot(added.header, 2))).toBe('INVALID_ARGUMENT');
      applyLuksAreaWrites(file, disk.area, eraseLuksKeySlot(added.header, 0, 3).writes);
    } finally {
      file.close();
    }
    expectGuest(await rawOfEncrypted(image, NEW_PASS));
    await expect(qemuIoEncrypted(image, PASS, ['read 0 512'])).rejects.toThrow(/Invalid password/);
    const after = readLuksArea(image);
    expect(after.header.keySlots.map((slot) => slot.active)).toEqual([false, true, false, false, false, false, false, false]);
    expect(codeOf(() => eraseLuksKeySlot(after.header, 1))).toBe('INVALID_ARGUMENT');
    const check = await checkEncrypted(image, NEW_PASS);
    expect(check.output).toMatch(/No errors were found/);
    expect(check.code).toBe(0);
  });
});
