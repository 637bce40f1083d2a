import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { legacyAesDiskCipher, openImageCipher } from '../../../src/shared/qcow2/crypto/disk-cipher.ts';
import { legacyAesKey } from '../../../src/shared/qcow2/crypto/legacy-aes.ts';
import { parseHeader } from '../../../src/shared/qcow2/format/header.ts';
import { NodeBlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { firstDifference, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { PATTERN_WRITES, checkEncrypted, createLegacyAesImage, dataClusters, decryptGuest, expectedGuest, patternCommands, qemuIoEncrypted } from '../../helpers/encrypted-images.ts';

/** Longer than 16 bytes: the legacy key is its first 16. */
const PASS = 'legacy-moo-0123456789';
const EXPECTED = expectedGuest(4 << 20, PATTERN_WRITES);

let folder: TempDir;
let image: string;
beforeAll(async () => {
  folder = tempDir();
  image = folder.file('aes.qcow2');
  await createLegacyAesImage(image, PASS);
  await qemuIoEncrypted(image, PASS, patternCommands(PATTERN_WRITES));
}, 60_000);
afterAll(() => folder.cleanup());

describe('legacy qcow2 AES (crypt_method 1) and qemu-img 7.2', { timeout: 60_000 }, () => {
  it('Cowbell decrypts what qemu-io wrote, sector numbers from GUEST offsets, through the cipher it opens for the image', () => {
    const file = NodeBlockFile.open(image, { readOnly: true });
    try {
      const firstCluster = new Uint8Array(65536);
      file.read(firstCluster, 0);
      const header = parseHeader(firstCluster, file.size());
      expect(header.cryptMethod).toBe(1);
      const opened = openImageCipher(file, header, PASS);
      expect(opened.cipher.kind).toBe('aes');
      expect(opened.luks).toBeNull();
      expect(firstDifference(decryptGuest(image, opened.cipher), EXPECTED)).toBe(-1);
    } finally {
      file.close();
    }
    // Every data cluster sits elsewhere in the file than in the guest: host offsets would be the wrong sector numbers.
    expect(dataClusters(image).clusters.every(({ guestOffset, hostOffset }) => guestOffset !== hostOffset)).toBe(true);
  });

  it('uses only the first 16 bytes of the passphrase, and a wrong one opens without complaint and reads garbage (the format has no key check)', () => {
    expect(legacyAesKey(PASS)).toEqual(new TextEncoder().encode(PASS.slice(0, 16)));
    expect(legacyAesKey('short')).toEqual(Uint8Array.of(...new TextEncoder().encode('short'), ...new Uint8Array(11)));
    expect(firstDifference(decryptGuest(image, legacyAesDiskCipher('legacy-moo-0123456789-and-more')), EXPECTED)).toBe(-1);
    const wrong = decryptGuest(image, legacyAesDiskCipher('legacy-moo-01234'.replace('0', 'O')));
    expect(wrong.subarray(0, 512)).not.toEqual(EXPECTED.subarray(0, 512));
  });

  it('qemu reads back data Cowbell encrypted into a cluster, and qemu-img check stays clean', async () => {
    const copy = folder.file('aes-written.qcow2');
    fs.copyFileSync(image, copy);
    const cluster = dataClusters(copy).clusters.find((candidate) => candidate.guestOffset === 3 << 20);
    if (cluster === undefined) throw new Error('no data cluster at 3 MiB');
    const data = new Uint8Array(65536).fill(0x5a);
    legacyAesDiskCipher(PASS).encrypt(data, cluster.hostOffset, cluster.guestOffset);
    const file = fs.openSync(copy, 'r+');
    fs.writeSync(file, data, 0, data.length, cluster.hostOffset);
    fs.closeSync(file);
    await qemuIoEncrypted(copy, PASS, ['read -P 0x5a 3M 64k', 'read -P 0x44 3211264 128k', 'read -P 0x11 0 64k']);
    const check = await checkEncrypted(copy, PASS);
    expect(check.output).toMatch(/No errors were found/);
    expect(check.code).toBe(0);
  });
});
