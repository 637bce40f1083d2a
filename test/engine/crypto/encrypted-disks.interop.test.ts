/**
 * Encrypted disks through the image layer, convert and the rewrite, judged by qemu-img/qemu-io 7.2
 * (the crypto suite proves the ciphers; this proves the disks): Cowbell reads qemu-img's LUKS
 * images of several cipher combinations, also after `qemu-img amend` changed their key slots, and
 * legacy AES images with their snapshots, and moves those to LUKS; what Cowbell writes into an
 * encrypted disk (guest writes, copy-on-write, snapshot create/apply/delete) qemu reads back with
 * check clean; a wrong passphrase changes nothing; compressed clusters QEMU stored in the clear
 * are reported and encrypted by a rewrite.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkExitCode, checkImagePath } from '../../../src/shared/qcow2/check/check.ts';
import { convertImage } from '../../../src/shared/qcow2/convert/convert.ts';
import { changeKeySlots } from '../../../src/shared/qcow2/crypto/key-slot-change.ts';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { readImageInfo } from '../../../src/shared/qcow2/image/info.ts';
import { previewRewrite, rewriteImage } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { applySnapshot, createSnapshot, deleteSnapshot } from '../../../src/shared/qcow2/snapshots/snapshots.ts';
import {
  PATTERN_WRITES,
  checkEncrypted,
  createLegacyAesImage,
  createLuksImage,
  expectedGuest,
  imageOpts,
  patternCommands,
  qemuIoEncrypted,
  rawOfEncrypted,
  secret,
  snapshotEncrypted,
  snapshotRows,
  type LuksImageOptions,
} from '../../helpers/encrypted-images.ts';
import { firstDifference, qemuImgTimingPbkdf2, qemuInfo, tempDir, type TempDir } from '../../helpers/qemu.ts';

const PASS = 'moo-cow-pass';
const NEW_PASS = 'second-bell';
const WRONG = 'not-the-pass';
const SIZE = 4 << 20;
/** Fast key slots for the images Cowbell encrypts here (QEMU's minimum); qemu opens them in no time. */
const QUICK_KEY = { iterations: 1000, digestIterations: 1000 } as const;

/** After PATTERN_WRITES, snapshot s1, then this write (a copy-on-write in qemu). */
const AFTER_SNAPSHOT = { pattern: 0x55, offset: 65536, length: 8192 };
const S1 = expectedGuest(SIZE, PATTERN_WRITES);
const CURRENT = expectedGuest(SIZE, [...PATTERN_WRITES, AFTER_SNAPSHOT]);

/** qemu-img LUKS creates cost 2–3 s of CPU each here: three cipher combinations, the crypto suite covers the rest at the cipher level. */
const CIPHERS: { name: string; options: LuksImageOptions }[] = [
  { name: "QEMU's default aes-256-xts-plain64, sha256", options: {} },
  { name: 'aes-128-cbc-essiv:sha256, sha1', options: { cipherAlg: 'aes-128', cipherMode: 'cbc', ivgenAlg: 'essiv', hashAlg: 'sha1' } },
  { name: 'aes-192-xts-plain, sha512', options: { cipherAlg: 'aes-192', cipherMode: 'xts', ivgenAlg: 'plain', hashAlg: 'sha512' } },
];

let folder: TempDir;
const luksImages = new Map<string, string>();
let aesImage = '';

/** A disk with PATTERN_WRITES, snapshot s1, then AFTER_SNAPSHOT: all by qemu. */
async function fillWithSnapshot(image: string): Promise<void> {
  await qemuIoEncrypted(image, PASS, patternCommands(PATTERN_WRITES));
  await snapshotEncrypted(image, PASS, '-c', 's1');
  await qemuIoEncrypted(image, PASS, patternCommands([AFTER_SNAPSHOT]));
}

beforeAll(async () => {
  folder = tempDir();
  for (const [index, cipher] of CIPHERS.entries()) {
    const image = folder.file(`luks-${index}.qcow2`);
    await createLuksImage(image, PASS, cipher.options);
    await fillWithSnapshot(image);
    luksImages.set(cipher.name, image);
  }
  aesImage = folder.file('aes.qcow2');
  await createLegacyAesImage(aesImage, PASS);
  await fillWithSnapshot(aesImage);
}, 90_000);
afterAll(() => folder.cleanup());

function copyOf(source: string, name: string): string {
  const copy = folder.file(name);
  fs.copyFileSync(source, copy);
  return copy;
}

function defaultLuks(): string {
  return luksImages.get(CIPHERS[0]?.name ?? '') ?? '';
}

function fileDigest(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

function codeOf(action: () => unknown): string | undefined {
  try {
    action();
  } catch (error) {
    return error instanceof Qcow2Error ? error.code : `untyped: ${String(error)}`;
  }
  return undefined;
}

/** Every state as Cowbell reads it through Qcow2Image with the passphrase. */
function cowbellStates(image: string, passphrase: string, options: { trustLegacyPassphrase?: boolean } = {}): Map<string, Uint8Array> {
  const opened = Qcow2Image.open(image, { readOnly: true, passphrase, ...options });
  try {
    const states = new Map<string, Uint8Array>([['current', opened.read(0, opened.virtualSize)]]);
    for (const snapshot of opened.snapshots) {
      const reader = opened.snapshotReader(snapshot);
      const data = new Uint8Array(reader.virtualSize);
      reader.readInto(data, 0);
      states.set(snapshot.name, data);
    }
    return states;
  } finally {
    opened.close();
  }
}

/** Every state as qemu-img decrypts it. */
async function qemuStates(image: string, passphrase: string): Promise<Map<string, Uint8Array>> {
  const states = new Map<string, Uint8Array>([['current', await rawOfEncrypted(image, passphrase)]]);
  for (const snapshot of (await qemuInfo(image)).snapshots ?? []) states.set(snapshot.name, await rawOfEncrypted(image, passphrase, snapshot.name));
  return states;
}

function expectStates(actual: Map<string, Uint8Array>, expected: Map<string, Uint8Array>, label: string): void {
  expect([...actual.keys()], `${label}: the states`).toEqual([...expected.keys()]);
  for (const [name, data] of expected) expect(firstDifference(actual.get(name) ?? new Uint8Array(0), data), `${label}: ${name}`).toBe(-1);
}

async function expectCheckClean(image: string, passphrase: string): Promise<void> {
  const check = await checkEncrypted(image, passphrase);
  expect(check.output).toMatch(/No errors were found on the image/);
  expect(check.code).toBe(0);
}

const EXPECTED_STATES = new Map([
  ['current', CURRENT],
  ['s1', S1],
]);

describe("Cowbell reads qemu-img's LUKS disks", { timeout: 60_000 }, () => {
  for (const cipher of CIPHERS) {
    it(`${cipher.name}: every state through Qcow2Image and convert, and info's encrypt block as qemu-img's`, async () => {
      const image = luksImages.get(cipher.name) ?? '';
      expectStates(cowbellStates(image, PASS), EXPECTED_STATES, 'Qcow2Image');
      const raw = folder.file(`${cipher.name.length}.raw`);
      convertImage({ source: image, target: raw, targetFormat: 'raw', passphrase: PASS, overwrite: true });
      expect(firstDifference(new Uint8Array(fs.readFileSync(raw)), CURRENT), 'convert').toBe(-1);
      convertImage({ source: image, target: raw, targetFormat: 'raw', sourceSnapshot: 's1', passphrase: PASS, overwrite: true });
      expect(firstDifference(new Uint8Array(fs.readFileSync(raw)), S1), 'convert -l s1').toBe(-1);
      const qemu = (await qemuInfo(image)) as unknown as { 'format-specific': { data: { encrypt: unknown } } };
      expect(readImageInfo(image)['format-specific'].data.encrypt).toEqual(qemu['format-specific'].data.encrypt);
    });
  }

  it('after qemu-img amend added a passphrase and erased the first: the new one opens every state, the old one is BAD_PASSPHRASE', async () => {
    const image = copyOf(defaultLuks(), 'amended.qcow2');
    await qemuImgTimingPbkdf2(['amend', ...secret('sec0', PASS), ...secret('sec1', NEW_PASS), '--image-opts', imageOpts(image, 'sec0'), '-o', 'encrypt.new-secret=sec1,encrypt.state=active,encrypt.iter-time=10']);
    await qemuImgTimingPbkdf2(['amend', ...secret('sec1', NEW_PASS), '--image-opts', imageOpts(image, 'sec1'), '-o', 'encrypt.state=inactive,encrypt.keyslot=0']);
    expectStates(cowbellStates(image, NEW_PASS), EXPECTED_STATES, 'with the new passphrase');
    expect(codeOf(() => Qcow2Image.open(image, { readOnly: true, passphrase: PASS }).close())).toBe('BAD_PASSPHRASE');
    const slots = readImageInfo(image)['format-specific'].data.encrypt?.slots ?? [];
    expect(slots.map((slot) => slot.active)).toEqual([false, true, false, false, false, false, false, false]);
  });
});

describe('legacy qcow2 AES disks made by qemu-img', { timeout: 60_000 }, () => {
  it('read alike by Cowbell and qemu, every state', async () => {
    expectStates(cowbellStates(aesImage, PASS), EXPECTED_STATES, 'Cowbell');
    expectStates(await qemuStates(aesImage, PASS), EXPECTED_STATES, 'qemu-img');
  });

  it('move to LUKS keeping their snapshots: qemu reads every state with the new passphrase, check clean, the same snapshot list', async () => {
    const target = folder.file('aes-to-luks.qcow2');
    const result = rewriteImage({ source: aesImage, target, compression: 'keep', passphrase: PASS, encryption: { kind: 'luks', passphrase: NEW_PASS, ...QUICK_KEY } });
    expect(result).toMatchObject({ encryption: 'luks', snapshots: 1, verified: true });
    expect(readImageInfo(target)['format-specific'].data.encrypt?.format).toBe('luks');
    expectStates(await qemuStates(target, NEW_PASS), EXPECTED_STATES, 'qemu-img after the move');
    await expectCheckClean(target, NEW_PASS);
    expect(snapshotRows(await snapshotEncrypted(target, NEW_PASS, '-l'))).toEqual(snapshotRows(await snapshotEncrypted(aesImage, PASS, '-l')));
  });
});

describe('the preview of a rewrite of an encrypted disk', () => {
  it('refuses what the rewrite refuses (compressing, keeping legacy AES) before asking for the passphrase; without it, estimates from the metadata alone', () => {
    expect(codeOf(() => previewRewrite({ source: defaultLuks(), compression: 'compress' }))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => previewRewrite({ source: aesImage, compression: 'keep' }))).toBe('UNSUPPORTED_FEATURE');
    const locked = previewRewrite({ source: defaultLuks(), compression: 'keep' });
    expect(locked.sampledClusters).toBe(0);
    expect(locked.expectedBytes).toBe(locked.maxBytes);
    const unlocked = previewRewrite({ source: defaultLuks(), compression: 'keep', passphrase: PASS });
    expect(unlocked.snapshots).toBe(1);
    expect(unlocked.sampledClusters).toBeGreaterThan(0);
    expect(previewRewrite({ source: aesImage, compression: 'compress', passphrase: PASS, encryption: { kind: 'none' } }).snapshots).toBe(1);
  });

  it('estimates a legacy AES disk moved to LUKS or decrypted (what Encrypt… and Decrypt… ask, locked or not), and every bound counts the LUKS area', () => {
    for (const passphrase of [undefined, PASS]) {
      expect(previewRewrite({ source: aesImage, compression: 'uncompress', passphrase, encryption: { kind: 'luks' } }).snapshots).toBe(1);
      expect(previewRewrite({ source: aesImage, compression: 'keep', passphrase, encryption: { kind: 'none' } }).snapshots).toBe(1);
    }
    // The bound holds for what is written: compact keeps the disk's LUKS area, encrypt makes one (aes-256-xts: 2 MiB of key material).
    const luks = defaultLuks();
    const compacted = folder.file('bound-compact.qcow2');
    const compactBound = previewRewrite({ source: luks, compression: 'keep', passphrase: PASS }).maxBytes;
    rewriteImage({ source: luks, target: compacted, compression: 'keep', passphrase: PASS });
    expect(fs.statSync(compacted).size).toBeLessThanOrEqual(compactBound);
    const encrypted = folder.file('bound-encrypt.qcow2');
    const encryptBound = previewRewrite({ source: aesImage, compression: 'uncompress', passphrase: PASS, encryption: { kind: 'luks' } }).maxBytes;
    rewriteImage({ source: aesImage, target: encrypted, compression: 'keep', passphrase: PASS, encryption: { kind: 'luks', passphrase: NEW_PASS, ...QUICK_KEY } });
    expect(fs.statSync(encrypted).size).toBeLessThanOrEqual(encryptBound);
    const smallKey = previewRewrite({ source: aesImage, compression: 'uncompress', passphrase: PASS, encryption: { kind: 'luks', cipher: { aesKeyBits: 128, mode: 'cbc', ivGenerator: 'essiv' } } }).maxBytes;
    expect(encryptBound - smallKey, 'a 16-byte key needs a quarter of the key material of a 64-byte one').toBeGreaterThan(1 << 20);
  });
});

describe('a wrong passphrase changes nothing', { timeout: 60_000 }, () => {
  it('LUKS: open, convert, encrypt in place and a passphrase change are BAD_PASSPHRASE, the file byte-identical and no output left', () => {
    const image = copyOf(defaultLuks(), 'wrong.qcow2');
    const before = fileDigest(image);
    expect(codeOf(() => Qcow2Image.open(image, { passphrase: WRONG }).close())).toBe('BAD_PASSPHRASE');
    const raw = folder.file('wrong.raw');
    expect(codeOf(() => convertImage({ source: image, target: raw, targetFormat: 'raw', passphrase: WRONG }))).toBe('BAD_PASSPHRASE');
    expect(fs.existsSync(raw)).toBe(false);
    expect(codeOf(() => rewriteImage({ source: image, compression: 'keep', passphrase: WRONG, encryption: { kind: 'luks', passphrase: NEW_PASS, ...QUICK_KEY } }))).toBe('BAD_PASSPHRASE');
    expect(codeOf(() => changeKeySlots(image, { passphrase: WRONG, action: 'change', newPassphrase: NEW_PASS, iterations: 1000 }))).toBe('BAD_PASSPHRASE');
    expect(fileDigest(image)).toBe(before);
    expect(fs.readdirSync(folder.path).filter((name) => name.includes('.cowbell-'))).toEqual([]);
  });

  // Was: the header's unknown autoclear bits were cleared (a write) before these refusals, which then said "nothing was changed".
  it('LUKS with unknown autoclear bits set: a passphrase change refused (a NUL in the new passphrase; all eight slots in use) leaves the file byte-identical', () => {
    const image = copyOf(defaultLuks(), 'autoclear.qcow2');
    const fd = fs.openSync(image, 'r+');
    const bits = Buffer.alloc(8);
    bits.writeBigUInt64BE(0x20n);
    fs.writeSync(fd, bits, 0, 8, 88);
    fs.closeSync(fd);
    const before = fileDigest(image);
    expect(codeOf(() => changeKeySlots(image, { passphrase: PASS, action: 'change', newPassphrase: 'ab\0cd', iterations: 1000 }))).toBe('INVALID_ARGUMENT');
    expect(fileDigest(image)).toBe(before);
    const full = copyOf(image, 'autoclear-full.qcow2');
    for (let slot = 1; slot < 8; slot++) changeKeySlots(full, { passphrase: PASS, action: 'add', newPassphrase: `pass-${slot}`, iterations: 1000 });
    // Adding seven slots cleared the bits, as QEMU's amend does; set them again.
    const fullFd = fs.openSync(full, 'r+');
    fs.writeSync(fullFd, bits, 0, 8, 88);
    fs.closeSync(fullFd);
    const fullBefore = fileDigest(full);
    expect(codeOf(() => changeKeySlots(full, { passphrase: PASS, action: 'add', newPassphrase: 'one-too-many', iterations: 1000 }))).toBe('INVALID_ARGUMENT');
    expect(fileDigest(full)).toBe(fullBefore);
  });

  it('legacy AES, which has no key check: the disk start decrypting to noise is BAD_PASSPHRASE, file byte-identical; trusted, it opens and reads garbage', () => {
    const image = copyOf(aesImage, 'aes-wrong.qcow2');
    const before = fileDigest(image);
    const error = (() => {
      try {
        Qcow2Image.open(image, { passphrase: WRONG }).close();
      } catch (caught) {
        return caught;
      }
      return null;
    })();
    expect(error).toBeInstanceOf(Qcow2Error);
    expect((error as Qcow2Error).code).toBe('BAD_PASSPHRASE');
    expect((error as Qcow2Error).message).toMatch(/passphrase is probably wrong/);
    expect(codeOf(() => rewriteImage({ source: image, compression: 'keep', passphrase: WRONG, encryption: { kind: 'luks', passphrase: NEW_PASS, ...QUICK_KEY } }))).toBe('BAD_PASSPHRASE');
    expect(codeOf(() => convertImage({ source: image, target: folder.file('aes-wrong.raw'), targetFormat: 'raw', passphrase: WRONG }))).toBe('BAD_PASSPHRASE');
    expect(fileDigest(image)).toBe(before);
    const garbage = cowbellStates(image, WRONG, { trustLegacyPassphrase: true }).get('current') ?? new Uint8Array(0);
    expect(garbage.subarray(0, 512)).not.toEqual(CURRENT.subarray(0, 512));
  });

  it('legacy AES whose start holds none of its data (zeroed by the guest): its data elsewhere is judged, a wrong passphrase refused before decrypt writes anything', async () => {
    const image = folder.file('aes-zeroed-start.qcow2');
    await createLegacyAesImage(image, PASS, '8M');
    await qemuIoEncrypted(image, PASS, ['write -P 0xab 0 4M']);
    await snapshotEncrypted(image, PASS, '-c', 'before-wipe');
    // Now the current state's first MiB reads zeros (zero clusters, nothing of the image's own there).
    await qemuIoEncrypted(image, PASS, ['write -z 0 1M']);
    const before = fileDigest(image);
    for (const attempt of [() => Qcow2Image.open(image, { passphrase: WRONG }).close(), () => rewriteImage({ source: image, compression: 'keep', passphrase: WRONG, encryption: { kind: 'none' } })]) {
      let error: unknown = null;
      try {
        attempt();
      } catch (caught) {
        error = caught;
      }
      expect(error, 'a wrong passphrase').toBeInstanceOf(Qcow2Error);
      expect((error as Qcow2Error).code).toBe('BAD_PASSPHRASE');
      expect((error as Qcow2Error).message).toMatch(/the data it holds decrypts to noise/);
    }
    expect(fileDigest(image), 'the file after the refusals').toBe(before);
    // The right one opens it, and every state reads as qemu wrote it.
    const states = cowbellStates(image, PASS);
    const wiped = new Uint8Array(8 << 20);
    wiped.fill(0xab, 1 << 20, 4 << 20);
    expect(firstDifference(states.get('current') ?? new Uint8Array(0), wiped)).toBe(-1);
    expect((states.get('before-wipe') ?? new Uint8Array(0)).subarray(0, 4 << 20).every((byte) => byte === 0xab)).toBe(true);

    // A disk holding no encrypted data at all: nothing a passphrase could garble, so any opens it.
    const empty = folder.file('aes-empty.qcow2');
    await createLegacyAesImage(empty, PASS, '8M');
    await qemuIoEncrypted(empty, PASS, ['write -z 0 1M']);
    Qcow2Image.open(empty, { passphrase: WRONG, readOnly: true }).close();
  });

  it('legacy AES with extended L2: only subclusters holding data are judged (the rest of a cluster reads zeros under any key), a wrong passphrase refused', async () => {
    const image = folder.file('aes-extended-l2.qcow2');
    await createLegacyAesImage(image, PASS, '16M', 'extended_l2=on');
    // One 2 KiB subcluster of the first cluster holds data; its other 31 read zeros.
    await qemuIoEncrypted(image, PASS, ['write -P 0x41 0 2k']);
    const before = fileDigest(image);
    expect(codeOf(() => Qcow2Image.open(image, { passphrase: WRONG }).close())).toBe('BAD_PASSPHRASE');
    expect(codeOf(() => rewriteImage({ source: image, compression: 'keep', passphrase: WRONG, encryption: { kind: 'none' } }))).toBe('BAD_PASSPHRASE');
    expect(codeOf(() => convertImage({ source: image, target: folder.file('aes-extended-l2.raw'), targetFormat: 'raw', passphrase: WRONG }))).toBe('BAD_PASSPHRASE');
    expect(fileDigest(image), 'the file after the refusals').toBe(before);
    const expected = new Uint8Array(16 << 20);
    expected.fill(0x41, 0, 2048);
    expect(firstDifference(cowbellStates(image, PASS).get('current') ?? new Uint8Array(0), expected)).toBe(-1);
  });
});

/** The guest's view, kept beside the image: current and each snapshot. */
class GuestModel {
  current: Uint8Array;
  readonly snapshots = new Map<string, Uint8Array>();

  constructor(current: Uint8Array, snapshots: [string, Uint8Array][]) {
    this.current = current.slice();
    for (const [name, data] of snapshots) this.snapshots.set(name, data.slice());
  }

  /** Bytes that differ from sector to sector (`fill`: one byte value, for qemu-io's read -P). */
  write(image: Qcow2Image, offset: number, length: number, seed: number, fill?: number): void {
    const data = new Uint8Array(length);
    for (let index = 0; index < length; index++) data[index] = fill ?? (index * 31 + seed) & 0xff;
    image.write(data, offset);
    this.current.set(data, offset);
  }

  states(): Map<string, Uint8Array> {
    return new Map([['current', this.current], ...this.snapshots]);
  }
}

describe('Cowbell writing into an encrypted disk, qemu reading it', { timeout: 60_000 }, () => {
  for (const kind of ['LUKS', 'legacy AES'] as const) {
    it(`${kind}: part-sector and whole-cluster writes, copy-on-write after a snapshot, snapshot create, apply and delete; qemu reads every state, check clean`, async () => {
      const image = copyOf(kind === 'LUKS' ? defaultLuks() : aesImage, `written-${kind.length}.qcow2`);
      const model = new GuestModel(CURRENT, [['s1', S1]]);
      let opened = Qcow2Image.open(image, { passphrase: PASS });
      try {
        model.write(opened, 1000, 3000, 1); // inside a cluster with refcount 1: whole sectors re-encrypted around it
        model.write(opened, 2 << 20, 65536, 2); // a new cluster
        createSnapshot(opened, { name: 'cowbell', now: new Date(1_700_000_000_000) });
        model.snapshots.set('cowbell', model.current.slice());
        model.write(opened, 60000, 70000, 3); // copy-on-write of clusters both snapshots share
        model.write(opened, (3 << 20) + 512, 100, 4); // copy-on-write of a part sector
        model.write(opened, (1 << 20) + 2048, 4096, 0, 0x5a); // beside qemu's 0x33 in a shared cluster
      } finally {
        opened.close();
      }
      expectStates(await qemuStates(image, PASS), model.states(), 'after writes and a snapshot');
      await qemuIoEncrypted(image, PASS, ['read -P 0x5a 1050624 4096', 'read -P 0x33 1049088 1536', 'read -P 0x44 3145728 512', 'read -P 0x44 3146340 1024']);
      opened = Qcow2Image.open(image, { passphrase: PASS });
      try {
        applySnapshot(opened, 's1');
        model.current = S1.slice();
        deleteSnapshot(opened, 'cowbell');
        model.snapshots.delete('cowbell');
        model.write(opened, 4096, 512, 5);
      } finally {
        opened.close();
      }
      expectStates(await qemuStates(image, PASS), model.states(), 'after apply, delete and a write');
      expectStates(cowbellStates(image, PASS), model.states(), 'Cowbell');
      await expectCheckClean(image, PASS);
    });
  }
});

describe('compressed clusters QEMU stores unencrypted in an encrypted disk', { timeout: 60_000 }, () => {
  it('LUKS: info and check count them over every state (a warning, not a corruption); compact encrypts them, the data the same', async () => {
    const image = copyOf(defaultLuks(), 'plaintext.qcow2');
    await qemuIoEncrypted(image, PASS, ['write -c -P 0x66 2M 64k']);
    await snapshotEncrypted(image, PASS, '-c', 's2');
    await qemuIoEncrypted(image, PASS, ['write -c -P 0x67 2162688 64k']);
    // The first compressed cluster is in two states but stored once.
    expect(readImageInfo(image)).toMatchObject({ 'unencrypted-bytes': 131072, 'unencrypted-clusters': 2 });
    const check = checkImagePath(image);
    expect(check['unencrypted-bytes']).toBe(131072);
    expect(checkExitCode(check)).toBe(0);
    const before = await qemuStates(image, PASS);
    const compacted = folder.file('plaintext.compacted.qcow2');
    const result = rewriteImage({ source: image, target: compacted, compression: 'keep', passphrase: PASS });
    expect(result).toMatchObject({ encryption: 'luks', compressedClusters: 0 });
    expect(readImageInfo(compacted)).toMatchObject({ 'unencrypted-bytes': 0, 'unencrypted-clusters': 0 });
    expect(checkImagePath(compacted)['unencrypted-bytes']).toBeUndefined();
    expectStates(await qemuStates(compacted, PASS), before, 'after compact');
    await expectCheckClean(compacted, PASS);
  });

  // Was: an offset past 2^53 reached the offset index, whose RangeError made info and check fail with an internal error.
  it('a compressed entry naming an offset far past the end of the file: info describes the disk, check reports the entry as corruption', async () => {
    const image = copyOf(defaultLuks(), 'far-compressed.qcow2');
    await qemuIoEncrypted(image, PASS, ['write -c -P 0x66 2M 64k']);
    const bytes = fs.readFileSync(image);
    const l2 = Number(bytes.readBigUInt64BE(Number(bytes.readBigUInt64BE(40))) & 0xff_ffff_ffff_fe00n);
    bytes.writeBigUInt64BE((1n << 62n) | ((1n << 54n) - 1n), l2);
    fs.writeFileSync(image, bytes);
    expect(readImageInfo(image)['unencrypted-clusters']).toBeUndefined();
    const check = checkImagePath(image);
    expect(checkExitCode(check)).toBe(2);
    expect(check.messages.join('\n')).toMatch(/exceeding the end of the file/);
  });

  it('legacy AES: flagged the same, and gone once encrypt moves the disk to LUKS', async () => {
    const image = copyOf(aesImage, 'aes-plaintext.qcow2');
    await qemuIoEncrypted(image, PASS, ['write -c -P 0x66 2M 64k']);
    expect(readImageInfo(image)['unencrypted-bytes']).toBe(65536);
    const before = await qemuStates(image, PASS);
    const moved = folder.file('aes-plaintext.luks.qcow2');
    rewriteImage({ source: image, target: moved, compression: 'keep', passphrase: PASS, encryption: { kind: 'luks', passphrase: PASS, ...QUICK_KEY } });
    expect(readImageInfo(moved)['unencrypted-bytes']).toBe(0);
    expectStates(await qemuStates(moved, PASS), before, 'after encrypt');
  });
});
