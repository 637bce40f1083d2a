/**
 * `cowbell encrypt`, `decrypt`, `passphrase`, and the passphrase handling of every command that
 * reads an encrypted disk's data, judged by qemu-img 7.2: what Cowbell encrypts qemu reads with
 * the secret (every snapshot), checks clean and lists alike, and the file holds none of the guest's
 * plaintext; info prints the LUKS details as qemu-img does. Passphrases come from files or a
 * prompt (a stand-in terminal here), never argv; without either a usage error says what to do.
 * Most runs go through runCli in this process (what bin/cowbell runs); the ones about the
 * terminal, exit codes and Ctrl-C run bin/cowbell itself.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { checkEncrypted, createLegacyAesImage, createLuksImage, qemuIoEncrypted, rawOfEncrypted, snapshotEncrypted, snapshotRows } from '../helpers/encrypted-images.ts';
import { runWithPrompts } from '../helpers/cli.ts';
import { firstDifference, qemuImg, qemuImgTimingPbkdf2, qemuInfo, qemuIo, rawOf, tempDir, type TempDir } from '../helpers/qemu.ts';
import { letterBytes } from '../helpers/rewrite-disks.ts';
import { expectCheckClean } from '../helpers/snapshot-scenario.ts';

const launcher = fileURLToPath(new URL('../../bin/cowbell', import.meta.url));
const entry = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
vi.setConfig({ testTimeout: 60_000 });

const PASS = 'moo-cow-pass';
const NEW_PASS = 'second-bell';
/** Cowbell's key slots for these tests: QEMU's minimum time, so nothing waits on PBKDF2. */
const QUICK = ['-o', 'encrypt.iter-time=10'];
/** Guest data no cipher text can hold by chance: its absence from the file means it is encrypted. */
const MARKER = 'COWBELL-PLAINTEXT-MARKER';

let folder: TempDir;
let passFile = '';
let newPassFile = '';
let wrongFile = '';

const cowbell = runWithPrompts;

function digest(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** A passphrase file as a careful user keeps one: readable by its owner only (others' earn a warning). */
function writeSecret(file: string, content: string | Uint8Array): void {
  fs.writeFileSync(file, content, { mode: 0o600 });
}

function expectOneLine(run: { code: number | null; err: string }, code: number, message: RegExp): void {
  expect(run.code, run.err).toBe(code);
  expect(run.err).toMatch(message);
  expect(run.err.trimEnd().split('\n')).toHaveLength(1);
}

/** A plain disk with text the guest wrote (MARKER lines) in every state, a compressed cluster, and two snapshots; all by qemu. */
async function plainDisk(name: string): Promise<string> {
  const image = folder.file(name);
  await qemuImg(['create', '-q', '-f', 'qcow2', image, '8M']);
  const text = folder.file(`${name}.text`);
  fs.writeFileSync(text, Buffer.from(`${MARKER} the guest's secret diary, line after line.\n`.repeat(2048).slice(0, 96 * 1024)));
  await qemuIo(image, [`write -s ${text} 0 96k`, 'write -c -P 0x61 1M 64k']);
  await qemuImg(['snapshot', '-c', 'installed', image]);
  await qemuIo(image, [`write -s ${text} 2M 96k`, 'write -P 0x62 40k 8k']);
  await qemuImg(['snapshot', '-c', 'updated', image]);
  await qemuIo(image, ['write -P 0x63 5M 64k']);
  return image;
}

const STATES = [undefined, 'installed', 'updated'] as const;

async function plainStates(image: string): Promise<Uint8Array[]> {
  return Promise.all(STATES.map((snapshot) => rawOf(image, snapshot === undefined ? {} : { snapshot })));
}

/** A LUKS disk made by `cowbell encrypt` (qemu-img's own LUKS create costs seconds of PBKDF2 timing). */
async function luksDisk(name: string): Promise<string> {
  const image = await plainDisk(name);
  const run = await cowbell(['encrypt', ...QUICK, '--passphrase-file', passFile, image]);
  expect(run.code, run.err).toBe(0);
  return image;
}

beforeAll(() => {
  folder = tempDir();
  passFile = folder.file('pass');
  newPassFile = folder.file('new-pass');
  wrongFile = folder.file('wrong-pass');
  // As `echo` writes them: one trailing newline, which is not part of the passphrase.
  writeSecret(passFile, `${PASS}\n`);
  writeSecret(newPassFile, `${NEW_PASS}\n`);
  writeSecret(wrongFile, 'not-the-pass');
});
afterAll(() => folder.cleanup());

describe('cowbell encrypt and decrypt, judged by qemu-img', () => {
  it('encrypts in place keeping every snapshot: qemu reads every state with the secret as before, check clean, the same snapshot list, no plaintext left; decrypt gives them back', async () => {
    const image = await plainDisk('disk.qcow2');
    const before = await plainStates(image);
    const listing = snapshotRows((await qemuImg(['snapshot', '-l', image])).stdout);
    expect(fs.readFileSync(image).includes(MARKER), 'the plain disk holds the marker').toBe(true);

    const run = await cowbell(['encrypt', ...QUICK, '--passphrase-file', passFile, image]);
    expect(run).toMatchObject({ code: 0, err: '' });
    const [summaryLine, compressedLine, ...rest] = run.out.split('\n');
    expect(summaryLine).toBe(`${image}: encrypted (LUKS, aes-256-xts-plain64, sha256), 2 snapshots kept, every state verified`);
    // The one compressed cluster qemu-io wrote (64 KiB of one byte, a few hundred bytes as zlib leaves it) is read by every state.
    expect(compressedLine).toMatch(/^\d{2,3} B of compressed data \(in the current disk and 2 snapshots\) is now stored uncompressed, up to 64 KiB: QEMU cannot keep compressed data encrypted$/);
    expect(rest).toEqual(['']);
    const info = await qemuInfo(image);
    expect(info).toMatchObject({ encrypted: true, 'format-specific': { data: { encrypt: { format: 'luks', 'cipher-alg': 'aes-256', 'cipher-mode': 'xts', 'ivgen-alg': 'plain64', 'hash-alg': 'sha256' } } } });
    for (const [index, snapshot] of STATES.entries()) {
      expect(firstDifference(await rawOfEncrypted(image, PASS, snapshot), before[index] ?? new Uint8Array(0)), `state ${snapshot ?? 'current'}`).toBe(-1);
    }
    const check = await checkEncrypted(image, PASS);
    expect(check.output).toMatch(/No errors were found on the image/);
    expect(check.code).toBe(0);
    expect(snapshotRows(await snapshotEncrypted(image, PASS, '-l'))).toEqual(listing);
    const bytes = fs.readFileSync(image);
    expect(bytes.includes(MARKER), 'the encrypted file holds the marker').toBe(false);
    expect(bytes.includes(Buffer.from('the guest\'s secret diary')), 'the encrypted file holds guest text').toBe(false);
    expect(fs.readdirSync(folder.path).filter((name) => name.includes('.cowbell-'))).toEqual([]);

    const decrypted = folder.file('disk.decrypted.qcow2');
    const back = await cowbell(['decrypt', '--passphrase-file', passFile, image, decrypted]);
    expect(back).toMatchObject({ code: 0, err: '', out: `${decrypted} (the original is unchanged): decrypted (stored unencrypted), 2 snapshots kept, every state verified\n` });
    expect((await qemuInfo(decrypted)) as unknown).not.toHaveProperty('encrypted');
    const after = await plainStates(decrypted);
    for (const [index, state] of before.entries()) expect(firstDifference(after[index] ?? new Uint8Array(0), state), `decrypted state ${STATES[index] ?? 'current'}`).toBe(-1);
    await expectCheckClean(expect, decrypted, 'decrypted');
  });

  it('takes the cipher, hash and iteration time asked for with -o, into OUTPUT', async () => {
    const image = await plainDisk('cipher.qcow2');
    const before = await plainStates(image);
    const output = folder.file('cipher.aes128.qcow2');
    const run = await cowbell(['encrypt', '-o', 'encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256', '-o', 'encrypt.hash-alg=sha1,encrypt.iter-time=10', '--new-passphrase-file', newPassFile, image, output]);
    expect(run.code, run.err).toBe(0);
    expect(run.out).toMatch(/encrypted \(LUKS, aes-128-cbc-essiv:sha256, sha1\), 2 snapshots kept/);
    expect((await qemuInfo(output))['format-specific']).toMatchObject({ data: { encrypt: { 'cipher-alg': 'aes-128', 'cipher-mode': 'cbc', 'ivgen-alg': 'essiv', 'ivgen-hash-alg': 'sha256', 'hash-alg': 'sha1' } } });
    expect(firstDifference(await rawOfEncrypted(output, NEW_PASS, 'updated'), before[2] ?? new Uint8Array(0))).toBe(-1);
    expect(firstDifference(await rawOfEncrypted(output, NEW_PASS), before[0] ?? new Uint8Array(0))).toBe(-1);
    for (const [options, message] of [
      ['encrypt.cipher-alg=aes-192,encrypt.cipher-mode=cbc', /aes-192 with cbc is not offered/],
      ['encrypt.format=aes', /never writes the old qcow2 AES/],
      ['encrypt.ivgen-hash-alg=sha256', /goes with encrypt.ivgen-alg=essiv/],
      ['encrypt.cipher-alg=twofish', /must be one of aes-128, aes-192, aes-256/],
      ['cluster_size=4k', /unknown or unsupported option 'cluster_size'/],
    ] as const) {
      expectOneLine(await cowbell(['encrypt', '-o', options, '--passphrase-file', passFile, image, folder.file('never.qcow2')]), 2, message);
    }
  });

  it('an overlay over plain backing files: encrypted, with a note naming each file of the chain its data stays in the clear in (none for a disk without one)', async () => {
    const base = folder.file('clear-base.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', base, '4M']);
    await qemuIo(base, ['write -P 0x41 0 1M']);
    const middle = folder.file('clear-middle.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', middle]);
    const overlay = folder.file('clear-overlay.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', middle, '-F', 'qcow2', overlay]);
    const run = await cowbell(['encrypt', ...QUICK, '--new-passphrase-file', newPassFile, overlay]);
    expect(run.code, run.err).toBe(0);
    expect(run.out).toMatch(/encrypted \(LUKS/);
    expect(run.err).toBe(`cowbell: note: ${overlay} reads through ${middle}, ${base}, which hold their data in the clear: what the disk reads there is not protected by the passphrase (encrypt them too, or \`cowbell convert -O qcow2\` the disk into one file and encrypt that)\n`);
    // Over an encrypted base (even with the old AES, as the app's dialog counts it): no note.
    const aesBase = folder.file('aes-base.qcow2');
    await createLegacyAesImage(aesBase, PASS);
    const overAes = folder.file('over-aes.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-u', '-b', aesBase, '-F', 'qcow2', overAes, '4M']);
    const overAesRun = await cowbell(['encrypt', ...QUICK, '--new-passphrase-file', newPassFile, overAes]);
    expect(overAesRun.code, overAesRun.err).toBe(0);
    expect(overAesRun.err).toBe('');
    // A disk without a backing file: no note.
    const alone = await plainDisk('alone.qcow2');
    const quiet = await cowbell(['encrypt', ...QUICK, '--new-passphrase-file', newPassFile, alone]);
    expect(quiet.code, quiet.err).toBe(0);
    expect(quiet.err).toBe('');
  });

  it('moves a legacy AES disk made by qemu-img to LUKS; a wrong passphrase for it fails the plausibility check with a pointer to --force', async () => {
    const image = folder.file('aes.qcow2');
    await createLegacyAesImage(image, PASS);
    await qemuIoEncrypted(image, PASS, ['write -P 0x11 0 64k', 'write -P 0x12 1M 64k']);
    await snapshotEncrypted(image, PASS, '-c', 'old');
    await qemuIoEncrypted(image, PASS, ['write -P 0x13 0 4k']);
    const before = digest(image);
    const wrong = await cowbell(['encrypt', ...QUICK, '--passphrase-file', wrongFile, '--new-passphrase-file', newPassFile, image]);
    expectOneLine(wrong, 1, /^cowbell: The passphrase is probably wrong: .*old qcow2 AES.*; if it is right, pass --force to go on\n$/);
    expect(digest(image)).toBe(before);
    const run = await cowbell(['encrypt', ...QUICK, '--passphrase-file', passFile, '--new-passphrase-file', newPassFile, image]);
    expect(run.code, run.err).toBe(0);
    expect(run.out).toMatch(/moved from the old qcow2 AES encryption to LUKS, aes-256-xts-plain64, sha256, 1 snapshot kept/);
    expect(firstDifference(await rawOfEncrypted(image, NEW_PASS, 'old'), expectedFill([[0x11, 0, 65536], [0x12, 1 << 20, 65536]]))).toBe(-1);
    await qemuIoEncrypted(image, NEW_PASS, ['read -P 0x13 0 4k', 'read -P 0x11 4k 60k', 'read -P 0x12 1M 64k']);
  });
});

function expectedFill(fills: [number, number, number][]): Uint8Array {
  const guest = new Uint8Array(4 << 20);
  for (const [value, offset, length] of fills) guest.fill(value, offset, offset + length);
  return guest;
}

describe('an encrypted backing file: one passphrase reads the chain (crypt soak audit F1)', () => {
  it('encrypt of an overlay refuses a new passphrase its encrypted backing file does not open; with that one it reads the whole chain', async () => {
    const base = folder.file('chain-base.qcow2');
    await createLuksImage(base, PASS);
    await qemuIoEncrypted(base, PASS, ['write -P 0x41 0 64k']);
    const overlay = folder.file('chain-overlay.qcow2');
    // A plain overlay over an encrypted file is said to keep the VM's writes in the clear (crypt soak audit F2).
    const created = await cowbell(['create', '-b', base, '-F', 'qcow2', overlay]);
    expect(created.code, created.err).toBe(0);
    expect(created.err).toBe(`cowbell: note: ${overlay} is not encrypted, though ${base} is: what the VM writes to it is stored in the clear (as qemu-img create -b makes it); \`cowbell encrypt ${overlay}\` with the same passphrase encrypts it\n`);
    const quiet = await cowbell(['create', '-q', '-b', base, '-F', 'qcow2', folder.file('chain-quiet.qcow2')]);
    expect([quiet.code, quiet.err]).toEqual([0, '']);
    const overPlain = await cowbell(['create', '-b', overlay, '-F', 'qcow2', folder.file('chain-third.qcow2')]);
    expect(overPlain.err).toMatch(new RegExp(`is not encrypted, though ${base} is:`));
    const plainBase = folder.file('chain-plain-base.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', plainBase, '4M']);
    expect((await cowbell(['create', '-b', plainBase, '-F', 'qcow2', folder.file('chain-plain-top.qcow2')])).err).toBe('');
    const before = digest(overlay);
    const refused = await cowbell(['encrypt', ...QUICK, '--new-passphrase-file', newPassFile, overlay]);
    expectOneLine(refused, 1, new RegExp(`The backing file ${base} is encrypted with another passphrase`));
    expect(digest(overlay)).toBe(before);
    expect(fs.readdirSync(folder.path).filter((name) => name.includes('chain-overlay.qcow2.'))).toEqual([]);
    const encrypted = await cowbell(['encrypt', ...QUICK, '--new-passphrase-file', passFile, overlay]);
    expect(encrypted.code, encrypted.err).toBe(0);
    const raw = folder.file('chain.raw');
    const read = await cowbell(['convert', '-O', 'raw', '--passphrase-file', passFile, overlay, raw]);
    expect(read.code, read.err).toBe(0);
    expect(fs.readFileSync(raw).subarray(0, 64 * 1024)).toEqual(new Uint8Array(64 * 1024).fill(0x41));
    // Changing the overlay's passphrase to one the backing file does not take would lock the chain the same way.
    const keyed = digest(overlay);
    const change = await cowbell(['passphrase', ...QUICK, '--passphrase-file', passFile, '--new-passphrase-file', newPassFile, overlay]);
    expectOneLine(change, 1, new RegExp(`The backing file ${base} is encrypted with another passphrase`));
    expect(digest(overlay)).toBe(keyed);
    const add = await cowbell(['passphrase', '--add', ...QUICK, '--passphrase-file', passFile, '--new-passphrase-file', newPassFile, overlay]);
    expect(add.code, add.err).toBe(0);
  });

  it('a chain qemu-img made with a passphrase per file: the error names the backing file the passphrase does not open', async () => {
    const base = folder.file('two-keys-base.qcow2');
    await createLuksImage(base, PASS);
    const top = folder.file('two-keys-top.qcow2');
    await qemuImgTimingPbkdf2(['create', '-q', '-f', 'qcow2', '-u', '-b', base, '-F', 'qcow2', '--object', `secret,id=s1,data=${NEW_PASS}`, '-o', 'encrypt.format=luks,encrypt.key-secret=s1,encrypt.iter-time=10', top, '4M']);
    const read = await cowbell(['convert', '-O', 'raw', '--passphrase-file', newPassFile, top, folder.file('two-keys.raw')]);
    expectOneLine(read, 1, new RegExp(`The passphrase does not open the backing file ${base} \\(The passphrase opens none of the image's key slots\\)`));
    expect(fs.existsSync(folder.file('two-keys.raw'))).toBe(false);
  });
});

describe('cowbell info and check on an encrypted disk', () => {
  it('info lists the LUKS details as qemu-img info does, in JSON (the same keys and values) and as text (the same lines)', async () => {
    const image = await luksDisk('info.qcow2');
    const ours = JSON.parse((await cowbell(['info', '--json', image])).out) as { 'format-specific': { data: { encrypt: unknown } }; 'unencrypted-bytes': number };
    const qemu = await qemuInfo(image);
    expect(ours['format-specific'].data.encrypt).toEqual((qemu as unknown as typeof ours)['format-specific'].data.encrypt);
    // The plain disk's compressed cluster was encrypted on the way.
    expect(ours['unencrypted-bytes']).toBe(0);
    const block = (text: string): string[] => {
      const lines = text.split('\n');
      const start = lines.indexOf('    encrypt:');
      const end = lines.findIndex((line, index) => index > start && !line.startsWith('        '));
      return lines.slice(start, end);
    };
    const human = (await cowbell(['info', image])).out;
    const qemuHuman = (await qemuImg(['info', image])).stdout;
    expect(block(human).length).toBeGreaterThan(30);
    expect(block(human)).toEqual(block(qemuHuman));
    expect(human).toMatch(/^disk size: .*\nencrypted: yes\ncluster_size: 65536\n/m);
  });

  it('compressed clusters QEMU wrote in the clear: a warning from info and check (exit 0), gone after compact', async () => {
    const image = await luksDisk('plaintext.qcow2');
    await qemuIoEncrypted(image, PASS, ['write -c -P 0x71 6M 64k', 'write -c -P 0x72 7M 64k']);
    expect((await cowbell(['info', image])).out).toMatch(/\nWarning: 128 KiB of this encrypted disk \(2 compressed clusters\) is stored unencrypted: QEMU writes compressed clusters of an encrypted disk as plaintext; `cowbell compact` encrypts them\n$/);
    expect(JSON.parse((await cowbell(['info', '--json', image])).out)).toMatchObject({ 'unencrypted-bytes': 131072, 'unencrypted-clusters': 2 });
    const check = await cowbell(['check', image]);
    expect(check.code).toBe(0);
    expect(check.out).toMatch(/^No errors were found on the image\./);
    expect(check.err).toMatch(/^Warning: 128 KiB of this encrypted disk is stored unencrypted/);
    expect(JSON.parse((await cowbell(['check', '--json', image])).out)).toMatchObject({ 'unencrypted-bytes': 131072 });
    const compacted = await cowbell(['compact', '--passphrase-file', passFile, image]);
    expect(compacted.code, compacted.err).toBe(0);
    // The two qemu-io wrote into the encrypted disk (the one plainDisk wrote, encrypt stored uncompressed already).
    expect(compacted.out).toMatch(/\n\d{3,4} B of compressed data \(in the current disk\) is now stored uncompressed, up to 128 KiB: QEMU cannot keep compressed data encrypted\n$/);
    expect((await cowbell(['check', image])).err).toBe('');
    expect((await cowbell(['info', image])).out).not.toMatch(/Warning/);
    await qemuIoEncrypted(image, PASS, ['read -P 0x71 6M 64k', 'read -P 0x72 7M 64k']);
  });

  it('on an old AES disk the warning names encrypt, which takes it, not compact, which refuses it (crypt soak audit F3)', async () => {
    const image = folder.file('aes-plaintext.qcow2');
    await createLegacyAesImage(image, PASS, '8M');
    await qemuIoEncrypted(image, PASS, ['write -c -P 0x45 2M 64k']);
    const remedy = /stored unencrypted: QEMU writes compressed clusters of an encrypted disk as plaintext; `cowbell encrypt` encrypts them, moving the disk to LUKS \(compact does not take the old AES encryption\)\n$/;
    expect((await cowbell(['info', image])).out).toMatch(remedy);
    expect((await cowbell(['check', image])).err).toMatch(remedy);
    expect((await cowbell(['compact', '--passphrase-file', passFile, image])).code).toBe(1);
    const encrypted = await cowbell(['encrypt', ...QUICK, '--passphrase-file', passFile, '--new-passphrase-file', passFile, image]);
    expect(encrypted.code, encrypted.err).toBe(0);
    expect(JSON.parse((await cowbell(['info', '--json', image])).out)).toMatchObject({ 'unencrypted-bytes': 0 });
    await qemuIoEncrypted(image, PASS, ['read -P 0x45 2M 64k']);
  });
});

describe('cowbell passphrase', () => {
  it('changes, adds and removes passphrases: qemu opens the disk with the new ones and refuses the erased', async () => {
    const image = await luksDisk('slots.qcow2');
    const change = await cowbell(['passphrase', ...QUICK, '--passphrase-file', passFile, '--new-passphrase-file', newPassFile, image]);
    expect(change).toMatchObject({ code: 0, err: '', out: `${image}: passphrase changed (the new one in key slot 1, key slot 0 erased); key slot 1 in use\n` });
    await qemuIoEncrypted(image, NEW_PASS, ['read -P 0x63 5M 64k']);
    await expect(qemuIoEncrypted(image, PASS, ['read 0 512'])).rejects.toThrow(/Invalid password/);
    const add = await cowbell(['passphrase', '--add', ...QUICK, '--passphrase-file', newPassFile, '--new-passphrase-file', passFile, image]);
    expect(add.out).toBe(`${image}: passphrase added in key slot 0; key slots 0, 1 in use\n`);
    await qemuIoEncrypted(image, PASS, ['read -P 0x63 5M 64k']);
    const slots = (await qemuInfo(image))['format-specific'] as unknown as { data: { encrypt: { slots: { active: boolean }[] } } };
    expect(slots.data.encrypt.slots.map((slot) => slot.active)).toEqual([true, true, false, false, false, false, false, false]);
    const remove = await cowbell(['passphrase', '--remove', '--slot', '1', '--passphrase-file', passFile, image]);
    expect(remove.out).toBe(`${image}: key slot 1 erased; key slot 0 in use\n`);
    await expect(qemuIoEncrypted(image, NEW_PASS, ['read 0 512'])).rejects.toThrow(/Invalid password/);
    const before = digest(image);
    expectOneLine(await cowbell(['passphrase', '--remove', '--passphrase-file', passFile, image]), 1, /would erase the last key slot/);
    expectOneLine(await cowbell(['passphrase', '--slot', '1', '--passphrase-file', passFile, image]), 2, /--slot goes with --remove/);
    expectOneLine(await cowbell(['passphrase', '--add', '--remove', image]), 2, /--add and --remove/);
    expectOneLine(await cowbell(['passphrase', '-o', 'encrypt.cipher-alg=aes-128', '--passphrase-file', passFile, image]), 2, /supported: encrypt.iter-time/);
    expect(digest(image)).toBe(before);
    const plain = folder.file('plain-slots.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', plain, '1M']);
    expectOneLine(await cowbell(['passphrase', '--passphrase-file', passFile, plain]), 1, /is not encrypted/);
    // A file that is no qcow2 image at all is said to be that, not "not encrypted".
    const raw = folder.file('not-an-image.raw');
    fs.writeFileSync(raw, new Uint8Array(1 << 20));
    expectOneLine(await cowbell(['passphrase', '--passphrase-file', passFile, raw]), 1, /Not a qcow2 image/);
    expectOneLine(await cowbell(['decrypt', '--passphrase-file', passFile, raw]), 1, /Not a qcow2 image/);
  });
});

describe('passphrases: from a file or a terminal, never argv; a wrong one changes nothing', () => {
  it('a passphrase file loses one trailing newline and no more; a wrong passphrase is exit 1 with one line, the file byte-identical', async () => {
    const image = await luksDisk('files.qcow2');
    const before = digest(image);
    const crlf = folder.file('pass-crlf');
    writeSecret(crlf, `${PASS}\r\n`);
    const twoNewlines = folder.file('pass-two-newlines');
    writeSecret(twoNewlines, `${PASS}\n\n`);
    const raw = folder.file('files.raw');
    expect((await cowbell(['convert', '--passphrase-file', crlf, image, raw])).code).toBe(0);
    expect(firstDifference(new Uint8Array(fs.readFileSync(raw)), await rawOfEncrypted(image, PASS))).toBe(-1);
    for (const argv of [
      ['convert', '--passphrase-file', twoNewlines, image, folder.file('never.raw')],
      ['compact', '--passphrase-file', wrongFile, image],
      ['encrypt', ...QUICK, '--passphrase-file', wrongFile, '--new-passphrase-file', newPassFile, image],
      ['decrypt', '--passphrase-file', wrongFile, image],
      ['passphrase', '--passphrase-file', wrongFile, '--new-passphrase-file', newPassFile, image],
    ]) {
      expectOneLine(await cowbell(argv), 1, /^cowbell: The passphrase opens none of the image's key slots\n$/);
    }
    expect(fs.existsSync(folder.file('never.raw'))).toBe(false);
    expect(digest(image)).toBe(before);
    expect(fs.readdirSync(folder.path).filter((name) => name.includes('.cowbell-'))).toEqual([]);
    expectOneLine(await cowbell(['compact', '--passphrase-file', folder.file('no-such-file'), image]), 1, /no-such-file: no such file/);
    // Read in pieces and bounded: /dev/zero is refused (it was read for ever), a folder is said to be one, a pipe works.
    expectOneLine(await cowbell(['compact', '--passphrase-file', '/dev/zero', image]), 1, /\/dev\/zero holds more than 64 KiB: that is not a passphrase file/);
    expectOneLine(await cowbell(['compact', '--passphrase-file', folder.path, image]), 1, /is a folder, not a passphrase file/);
    expect(digest(image)).toBe(before);
    // Through a shell's pipe (Node's own stdio pipes are sockets, which /dev/stdin cannot open).
    const piped = spawnSync('bash', ['-c', 'printf "%s\\n" "$1" | "$2" convert --passphrase-file /dev/stdin "$3" "$4"', 'pipe', PASS, launcher, image, folder.file('piped.raw')], { encoding: 'utf8' });
    expect(piped.status, piped.stderr).toBe(0);
    expect(piped.stderr).not.toMatch(/warning/);
  });

  it('a passphrase file others may read still works, with a warning naming who can read it; an owner-only file earns none', async () => {
    const image = await luksDisk('exposed-pass.qcow2');
    const exposed = folder.file('pass-exposed');
    fs.writeFileSync(exposed, `${PASS}\n`);
    const warning = (who: string): string => `cowbell: warning: ${exposed} can be read by ${who}: \`chmod 600\` it`;
    fs.chmodSync(exposed, 0o644);
    const everyone = await cowbell(['convert', '--passphrase-file', exposed, image, folder.file('exposed-1.raw')]);
    expect(everyone.code, everyone.err).toBe(0);
    expect(everyone.err).toContain(warning('every user of this machine'));
    fs.chmodSync(exposed, 0o640);
    const group = await cowbell(['passphrase', '--add', ...QUICK, '--passphrase-file', passFile, '--new-passphrase-file', exposed, image]);
    expect(group.code, group.err).toBe(0);
    expect(group.err).toContain(warning('other users (its group, or those an access list names)'));
    fs.chmodSync(exposed, 0o600);
    const owner = await cowbell(['convert', '--passphrase-file', exposed, image, folder.file('exposed-2.raw')]);
    expect(owner.code, owner.err).toBe(0);
    expect(owner.err).not.toContain('warning');
    expect(fs.readFileSync(folder.file('exposed-1.raw'))).toEqual(fs.readFileSync(folder.file('exposed-2.raw')));
  });

  it('prompts on the terminal only when the data is needed, the new passphrase twice; two that differ change nothing', async () => {
    const image = await luksDisk('prompt.qcow2');
    const before = digest(image);
    // Metadata only: no prompt.
    expect((await cowbell(['snapshot', 'list', image], [])).code).toBe(0);
    expect((await cowbell(['check', image], [])).prompts).toEqual([]);
    // Refused before any prompt: an encrypted disk is never compressed.
    const compress = await cowbell(['compress', image], []);
    expectOneLine(compress, 1, /An encrypted disk cannot be compressed/);
    expect(compress.prompts).toEqual([]);
    const mismatch = await cowbell(['passphrase', ...QUICK, image], [PASS, NEW_PASS, 'something-else']);
    expectOneLine(mismatch, 2, /the two new passphrases differ; nothing was changed/);
    expect(mismatch.prompts).toEqual(['Passphrase for prompt.qcow2: ', 'New passphrase for prompt.qcow2: ', 'Type the new passphrase again: ']);
    expect(digest(image)).toBe(before);
    const raw = folder.file('prompt.raw');
    const converted = await cowbell(['convert', image, raw], [PASS]);
    expect(converted.code, converted.err).toBe(0);
    expect(converted.prompts).toEqual(['Passphrase for prompt.qcow2: ']);
    expect(converted.err).toMatch(/note: .* is encrypted but .*prompt\.raw is not \(as with qemu-img convert\); a raw disk cannot be/);
    const changed = await cowbell(['passphrase', ...QUICK, image], [PASS, NEW_PASS, NEW_PASS]);
    expect(changed.code, changed.err).toBe(0);
    await qemuIoEncrypted(image, NEW_PASS, ['read -P 0x63 5M 64k']);
  });

  it('a disk qemu keyed with `--object secret,file=` of a file ending in a newline (qemu keeps it): the same file opens it, the whole file tried when the trimmed one opens nothing', async () => {
    const keyFile = folder.file('qemu-secret-file');
    writeSecret(keyFile, `${PASS}\n`);
    const image = folder.file('newline-key.qcow2');
    await qemuImgTimingPbkdf2(['create', '-q', '-f', 'qcow2', '--object', `secret,id=sec0,file=${keyFile}`, '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', image, '4M']);
    await qemuIoEncrypted(image, `${PASS}\n`, ['write -P 0x5a 0 1M']);
    const raw = folder.file('newline-key.raw');
    const converted = await cowbell(['convert', '--passphrase-file', keyFile, image, raw]);
    expect(converted.code, converted.err).toBe(0);
    expect(firstDifference(new Uint8Array(fs.readFileSync(raw)), await rawOfEncrypted(image, `${PASS}\n`))).toBe(-1);
    const compacted = await cowbell(['compact', '--passphrase-file', keyFile, image]);
    expect(compacted.code, compacted.err).toBe(0);
    const added = await cowbell(['passphrase', '--add', ...QUICK, '--passphrase-file', keyFile, '--new-passphrase-file', newPassFile, image]);
    expect(added.code, added.err).toBe(0);
    await qemuIoEncrypted(image, NEW_PASS, ['read -P 0x5a 0 1M']);
    await qemuIoEncrypted(image, `${PASS}\n`, ['read -P 0x5a 0 1M']);
    const reEncrypted = await cowbell(['encrypt', ...QUICK, '--passphrase-file', keyFile, '--new-passphrase-file', passFile, image]);
    expect(reEncrypted.code, reEncrypted.err).toBe(0);
    await qemuIoEncrypted(image, PASS, ['read -P 0x5a 0 1M']);
  });

  it('a new passphrase QEMU could never give (not UTF-8, or with a NUL byte) is refused, the disk unchanged: QEMU refuses such a secret', async () => {
    const image = await luksDisk('not-utf8.qcow2');
    const plain = await plainDisk('not-utf8-plain.qcow2');
    const before = [digest(image), digest(plain)];
    const notUtf8 = folder.file('pass-not-utf8');
    writeSecret(notUtf8, Buffer.concat([Buffer.from('pässwörd'), Buffer.from([0xff, 0xfe])]));
    const withNul = folder.file('pass-with-nul');
    writeSecret(withNul, Buffer.from('moo\0cow'));
    for (const bad of [notUtf8, withNul]) {
      for (const argv of [
        ['passphrase', ...QUICK, '--passphrase-file', passFile, '--new-passphrase-file', bad, image],
        ['passphrase', '--add', ...QUICK, '--passphrase-file', passFile, '--new-passphrase-file', bad, image],
        ['encrypt', ...QUICK, '--passphrase-file', passFile, '--new-passphrase-file', bad, image],
        ['encrypt', ...QUICK, '--new-passphrase-file', bad, plain],
      ]) {
        expectOneLine(await cowbell(argv), 1, /QEMU reads a passphrase as UTF-8 text without NUL characters/);
      }
    }
    expect([digest(image), digest(plain)]).toEqual(before);
    expect(fs.readdirSync(folder.path).filter((name) => name.includes('.cowbell-'))).toEqual([]);
    // UTF-8 beyond ASCII is a passphrase QEMU takes.
    const umlauts = folder.file('pass-umlauts');
    writeSecret(umlauts, 'pässwörd');
    expect((await cowbell(['passphrase', '--add', ...QUICK, '--passphrase-file', passFile, '--new-passphrase-file', umlauts, image])).code).toBe(0);
    await qemuIoEncrypted(image, 'pässwörd', ['read -P 0x63 5M 64k']);
  });

  it('a plain overlay over an encrypted backing file: the prompt and the usage error say the backing file is what is encrypted', async () => {
    const base = await luksDisk('encrypted-base.qcow2');
    const overlay = folder.file('plain-overlay.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay]);
    const noTerminal = await cowbell(['convert', overlay, folder.file('never-overlay.raw')]);
    expectOneLine(noTerminal, 2, /plain-overlay\.qcow2's backing file is encrypted: give its passphrase with --passphrase-file/);
    const raw = folder.file('overlay.raw');
    const prompted = await cowbell(['convert', overlay, raw], [PASS]);
    expect(prompted.code, prompted.err).toBe(0);
    expect(prompted.prompts).toEqual(['Passphrase for the backing file of plain-overlay.qcow2: ']);
    expect(firstDifference(new Uint8Array(fs.readFileSync(raw)), await rawOfEncrypted(base, PASS))).toBe(-1);
  });

  it('bin/cowbell without a terminal and without a passphrase file: a usage error (exit 2) naming the option, nothing changed', async () => {
    const image = await luksDisk('no-terminal.qcow2');
    const before = digest(image);
    const compact = spawnSync(launcher, ['compact', image], { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], input: `${PASS}\n` });
    expectOneLine({ code: compact.status, err: compact.stderr }, 2, /^cowbell: .*no-terminal\.qcow2 is encrypted: give its passphrase with --passphrase-file FILE \(there is no terminal to ask on/);
    const plain = folder.file('no-terminal-plain.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', plain, '1M']);
    const encrypt = spawnSync(launcher, ['encrypt', plain], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expectOneLine({ code: encrypt.status, err: encrypt.stderr }, 2, /give the new passphrase for .* with --new-passphrase-file FILE/);
    expect(digest(image)).toBe(before);
    // And never from argv: there is no option that takes one.
    expectOneLine(await cowbell(['compact', '--passphrase', PASS, image]), 2, /compact: unknown option --passphrase \(cowbell compact --help lists its options/);
  });
});

/**
 * The process whose arguments include every one of `words` — cowbell's own, not script's or the
 * shell's, whose single command-line string names them too (read from /proc: pgrep may not be installed).
 */
function processRunning(words: string[]): number | null {
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (words.every((word) => args.includes(word))) return Number(entry);
    } catch {
      // Gone meanwhile.
    }
  }
  return null;
}

/** script(1) from util-linux runs a command on a pseudo-terminal: the real prompt, raw mode and all. */
const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;

describe('the prompt on a real terminal', () => {
  it.skipIf(!hasScript)('bin/cowbell on a pseudo-terminal asks for the passphrase without echoing what is typed (Backspace takes a character back)', async () => {
    const image = await luksDisk('terminal.qcow2');
    const raw = folder.file('terminal.raw');
    const child = spawn('script', ['-qec', `${launcher} convert ${image} ${raw}`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let seen = '';
    child.stdout.on('data', (chunk: Buffer) => {
      const before = seen;
      seen += chunk.toString();
      // Typed only once the prompt is up (the terminal is in raw mode by then): a typo, Backspace, the rest, Enter.
      if (!before.includes('Passphrase for') && seen.includes('Passphrase for terminal.qcow2: ')) child.stdin.write(`${PASS.slice(0, -2)}X\u007f${PASS.slice(-2)}\r`);
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code, seen).toBe(0);
    expect(seen).toMatch(/^Passphrase for terminal\.qcow2: \r?\n/);
    expect(seen).not.toContain(PASS.slice(0, 6));
    expect(firstDifference(new Uint8Array(fs.readFileSync(raw)), await rawOfEncrypted(image, PASS))).toBe(-1);
  });

  it.skipIf(!hasScript)('a SIGTERM at the prompt ends it with exit 143 and the terminal echoing again (it was left raw: nothing typed showed until `reset`)', async () => {
    const image = await luksDisk('terminal-kill.qcow2');
    const raw = folder.file('terminal-kill.raw');
    // After cowbell, the same shell on the same terminal prints its status and the terminal's modes.
    const child = spawn('script', ['-qec', `${launcher} convert ${image} ${raw}; echo "status $?"; stty -a`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let seen = '';
    let killed = false;
    child.stdout.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      if (killed || !seen.includes('Passphrase for terminal-kill.qcow2: ')) return;
      killed = true;
      const cowbellPid = processRunning(['convert', image]);
      if (cowbellPid !== null) process.kill(cowbellPid, 'SIGTERM');
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(killed, seen).toBe(true);
    expect(code, seen).toBe(0);
    expect(seen).toMatch(/Stopped at the passphrase prompt; nothing was changed/);
    expect(seen).toMatch(/status 143/);
    expect(seen).toMatch(/(^|[\s;])echo([\s;]|$)/m);
    expect(seen).toMatch(/(^|[\s;])icanon([\s;]|$)/m);
    expect(fs.existsSync(raw)).toBe(false);
  });
});

describe('cowbell encrypt, interrupted', () => {
  // SIGTERM (kill, timeout, a service stopping) and SIGHUP (the terminal closing) as Ctrl-C: left to
  // Node's default they ended the process at once, the temporary file left beside the disk.
  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const)('%s during the copy: exit %i (128 + the signal, as a shell reports), one line, the original byte for byte and no temporary file', async (signal, exitCode) => {
    const work = tempDir();
    try {
      const image = work.file('big.qcow2');
      await qemuImg(['create', '-q', '-f', 'qcow2', image, '64M']);
      const data = work.file('letters');
      fs.writeFileSync(data, letterBytes(48 << 20));
      await qemuIo(image, [`write -s ${data} 0 48M`]);
      fs.rmSync(data);
      await qemuImg(['snapshot', '-c', 'one', image]);
      const before = digest(image);
      const child = spawn(process.execPath, [entry, 'encrypt', '-p', ...QUICK, '--passphrase-file', passFile, image], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      let interrupted = false;
      child.stderr.on('data', (chunk: Buffer) => {
        err += chunk.toString();
        const latest = [...err.matchAll(/\((\d+\.\d+)\/100%\)/g)].map((match) => Number(match[1])).at(-1) ?? 0;
        // Once the copy is under way (past the key and the tables' 2%).
        if (!interrupted && latest > 2) {
          interrupted = true;
          child.kill(signal);
        }
      });
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      expect(interrupted, err).toBe(true);
      expect(code, err).toBe(exitCode);
      expect(err).toMatch(/cowbell: Cancelled; the disk was left as it was\n$/);
      expect(digest(image)).toBe(before);
      expect(fs.readdirSync(work.path)).toEqual(['big.qcow2']);
    } finally {
      work.cleanup();
    }
  });
});
