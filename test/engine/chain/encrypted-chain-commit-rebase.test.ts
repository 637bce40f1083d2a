/**
 * Commit and safe rebase over chains with encrypted files, given the one passphrase that opens every
 * encrypted file of the chain: each leaves every file reading through qemu-img (with a secret per
 * encrypted file) as qemu-img's own commit or rebase leaves a copy of the chain, and clean by
 * qemu-img check. Data goes into an encrypted file under that file's own key (the LUKS files here
 * have different master keys: copies of a qemu-img-made template and of Cowbell-made ones), and never
 * compressed. Without the passphrase an encrypted file is refused (LOCKED), with a wrong one or one
 * a file below does not open (BAD_PASSPHRASE, naming that file), before anything is written.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitSteps, type CommitRequest } from '../../../src/shared/qcow2/chain/commit.ts';
import { rebaseSteps, type RebaseRequest } from '../../../src/shared/qcow2/chain/rebase.ts';
import { readImageInfo } from '../../../src/shared/qcow2/image/info.ts';
import { rewriteImage } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { runSteps } from '../../../src/shared/qcow2/steps.ts';
import { createLegacyAesImage, secret } from '../../helpers/encrypted-images.ts';
import { fileHash } from '../../helpers/image-locks.ts';
import { firstDifference, qemuImg, qemuImgTimingPbkdf2, runTool, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { thrownQcow2Error } from '../../helpers/outcomes.ts';

const PASS = 'chain-pass';
const OTHER_PASS = 'another-pass';
const SECRETS = [...secret('sec0', PASS), ...secret('sec1', OTHER_PASS)];
const QUICK_KEY = { iterations: 1000, digestIterations: 1000 } as const;
const SIZE = 8 * 1024 * 1024;

/** A file of a test chain: in the clear (raw or qcow2), or LUKS from one of the templates. */
type Kind = 'raw' | 'plain' | 'luks-qemu' | 'luks-a' | 'luks-b' | 'luks-other';

let folder: TempDir;
const templates = new Map<Kind, string>();
beforeAll(async () => {
  folder = tempDir();
  // qemu-img spends ~5 s timing PBKDF2 per LUKS create: one made by it, the others by Cowbell (each its own master key).
  const qemuMade = folder.file('t-luks-qemu.qcow2');
  await qemuImgTimingPbkdf2(['create', '-q', '-f', 'qcow2', ...secret('sec0', PASS), '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', qemuMade, String(SIZE)]);
  templates.set('luks-qemu', qemuMade);
  for (const [kind, clusterBytes, passphrase] of [['luks-a', 4096, PASS], ['luks-b', 512, PASS], ['luks-other', 65536, OTHER_PASS]] as const) {
    const plain = folder.file(`t-plain-${kind}.qcow2`);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${clusterBytes}`, plain, String(SIZE)]);
    const template = folder.file(`t-${kind}.qcow2`);
    rewriteImage({ source: plain, target: template, compression: 'keep', encryption: { kind: 'luks', passphrase, ...QUICK_KEY } });
    templates.set(kind, template);
  }
}, 120_000);
afterAll(() => folder.cleanup());

const isLuks = (kind: Kind): boolean => kind.startsWith('luks');

/** A chain in its own folder: files f0 (the bottom) … fN (the top), each naming the one below by a relative name. */
interface Chain {
  where: string;
  kinds: Kind[];
  /** Each file's backing file (an index), as the chain stands now; null: none. */
  backing: (number | null)[];
}

function filePath(chain: Chain, index: number): string {
  return path.join(chain.where, chain.kinds[index] === 'raw' ? `f${index}.raw` : `f${index}.qcow2`);
}

/** `--image-opts` for file `index` with its backing chain's secrets (sec1 for the file under the other passphrase). */
function imageOpts(chain: Chain, index: number): string {
  const parts = [`driver=${chain.kinds[index] === 'raw' ? 'raw' : 'qcow2'}`, `file.filename=${filePath(chain, index)}`];
  for (let at: number | null = index, depth = 0; at !== null; at = chain.backing[at] ?? null, depth++) {
    const kind = chain.kinds[at] as Kind;
    if (isLuks(kind)) parts.push(`${'backing.'.repeat(depth)}encrypt.key-secret=${kind === 'luks-other' ? 'sec1' : 'sec0'}`);
  }
  return parts.join(',');
}

let chains = 0;
/** Builds a chain bottom first: each file's kind and the qemu-io commands that write it (through its chain). */
async function buildChain(files: { kind: Kind; writes: string[] }[]): Promise<Chain> {
  const where = folder.file(`chain-${++chains}`);
  fs.mkdirSync(where);
  const chain: Chain = { where, kinds: files.map((file) => file.kind), backing: files.map((_, index) => (index === 0 ? null : index - 1)) };
  for (const [index, file] of files.entries()) {
    const image = filePath(chain, index);
    const backing = index === 0 ? [] : ['-b', path.basename(filePath(chain, index - 1)), '-F', chain.kinds[index - 1] === 'raw' ? 'raw' : 'qcow2'];
    if (file.kind === 'raw') await qemuImg(['create', '-q', '-f', 'raw', image, String(SIZE)]);
    else if (file.kind === 'plain') await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=16384', ...backing, image, String(SIZE)]);
    else {
      fs.copyFileSync(templates.get(file.kind) ?? '', image);
      const alone = `driver=qcow2,file.filename=${image},encrypt.key-secret=${file.kind === 'luks-other' ? 'sec1' : 'sec0'}`;
      if (index > 0) await runTool('qemu-img', ['rebase', '-q', ...SECRETS, '--image-opts', '-u', ...backing, alone], { cwd: where });
    }
    if (file.writes.length === 0) continue;
    const result = await runTool('qemu-io', [...SECRETS, '--image-opts', ...file.writes.flatMap((command) => ['-c', command]), imageOpts(chain, index)]);
    expect(result.stdout + result.stderr, `qemu-io on f${index}`).not.toMatch(/error|failed/i);
  }
  return chain;
}

/** The same chain in another folder (the backing names are relative): qemu-img's copy. */
function copyChain(chain: Chain): Chain {
  const where = `${chain.where}-qemu`;
  fs.cpSync(chain.where, where, { recursive: true });
  return { ...chain, where, backing: [...chain.backing] };
}

/** File `index`'s guest bytes through its chain, as qemu-img decrypts them. */
async function qemuRead(chain: Chain, index: number): Promise<Uint8Array> {
  const output = path.join(folder.path, `read-${path.basename(chain.where)}.raw`);
  await runTool('qemu-img', ['convert', ...SECRETS, '--image-opts', imageOpts(chain, index), '-O', 'raw', output]);
  const bytes = new Uint8Array(fs.readFileSync(output));
  fs.rmSync(output);
  return bytes;
}

async function expectCleanByQemu(chain: Chain): Promise<void> {
  for (const [index, kind] of chain.kinds.entries()) {
    if (kind === 'raw') continue;
    const check = await runTool('qemu-img', ['check', ...SECRETS, '--image-opts', imageOpts(chain, index)], { okCodes: [0, 1, 2, 3] });
    expect(check.code, `qemu-img check of f${index}: ${check.stdout}${check.stderr}`).toBe(0);
  }
}

/** Every file of `ours` reads as the same file of `theirs` (qemu-img's), through its chain. */
async function expectSameReads(ours: Chain, theirs: Chain): Promise<void> {
  for (const index of ours.kinds.keys()) {
    const [mine, qemus] = [await qemuRead(ours, index), await qemuRead(theirs, index)];
    expect(mine.length, `f${index}: length`).toBe(qemus.length);
    expect(firstDifference(mine, qemus), `f${index}: first byte reading differently from qemu-img's`).toBe(-1);
  }
}

const hashes = (chain: Chain): string[] => chain.kinds.map((_, index) => fileHash(filePath(chain, index)));

/**
 * qemu-img commit's -b for the file named `base` (in the chain's folder): the name as the header
 * above stores it, which qemu-img matches first — unless the file was opened with a secret (as
 * --image-opts opens an encrypted file), whose node qemu-img then names by its options, in JSON.
 */
function qemuBaseName(chain: Chain, base: string): string {
  const index = chain.kinds.findIndex((_, each) => path.basename(filePath(chain, each)) === base);
  const kind = chain.kinds[index] as Kind;
  if (!isLuks(kind)) return base;
  return `json:${JSON.stringify({ 'encrypt.key-secret': kind === 'luks-other' ? 'sec1' : 'sec0', driver: 'qcow2', file: { driver: 'file', filename: filePath(chain, index) } }).replaceAll('":', '": ').replaceAll(',"', ', "')}`;
}

/** Cowbell's commit on `chain` and qemu-img's on a copy; then the two read the same and Cowbell's files are clean. */
async function commitBoth(chain: Chain, request: Omit<CommitRequest, 'image'> & { base?: string }): Promise<void> {
  const theirs = copyChain(chain);
  const top = chain.kinds.length - 1;
  const qemuArgs = ['commit', '-q', ...SECRETS, '--image-opts', ...(request.keepOverlay === true ? ['-d'] : []), ...(request.base !== undefined ? ['-b', qemuBaseName(theirs, request.base)] : [])];
  await runTool('qemu-img', [...qemuArgs, imageOpts(theirs, top)], { cwd: theirs.where });
  runSteps(commitSteps({ ...request, image: filePath(chain, top), ...(request.base !== undefined ? { base: path.join(chain.where, request.base) } : {}), passphrase: PASS }));
  await expectSameReads(chain, theirs);
  await expectCleanByQemu(chain);
}

describe('commit over encrypted chains, one passphrase', () => {
  it('an encrypted overlay into a plain backing file, the overlay emptied', async () => {
    const chain = await buildChain([
      { kind: 'plain', writes: ['write -P 0x11 0 1M', 'write -P 0x12 3M 300k'] },
      { kind: 'luks-qemu', writes: ['write -P 0x21 512k 1M', 'write -z 3200k 64k', 'write -P 0x22 7000k 5000'] },
    ]);
    await commitBoth(chain, {});
  });

  it('a plain overlay (one of its clusters compressed) into an encrypted backing file: encrypted under the base key, never compressed', async () => {
    const chain = await buildChain([
      { kind: 'luks-a', writes: ['write -P 0x31 0 2M', 'write -P 0x32 5M 100k'] },
      { kind: 'plain', writes: ['write -P 0x41 1000k 1100k', 'write -c -P 0x42 4M 16k', 'write -P 0x43 8388000 192'] },
    ]);
    await commitBoth(chain, {});
    expect(readImageInfo(filePath(chain, 0), { refuseInUse: false })['unencrypted-bytes'] ?? 0, 'guest bytes stored in the clear in the encrypted base').toBe(0);
  });

  it('an encrypted overlay into an encrypted backing file with another master key, -d', async () => {
    const chain = await buildChain([
      { kind: 'luks-qemu', writes: ['write -P 0x51 0 1M'] },
      { kind: 'luks-a', writes: ['write -P 0x61 700k 700k', 'write -z 2M 1M', 'write -P 0x62 6M 2k'] },
    ]);
    await commitBoth(chain, { keepOverlay: true });
  });

  it('-b the bottom file through an encrypted middle file (every file encrypted, each its own key)', async () => {
    const chain = await buildChain([
      { kind: 'luks-qemu', writes: ['write -P 0x71 0 3M'] },
      { kind: 'luks-b', writes: ['write -P 0x72 1M 1M', 'write -z 5M 512'] },
      { kind: 'luks-a', writes: ['write -P 0x73 1536k 2k', 'write -P 0x74 4M 64k'] },
    ]);
    await commitBoth(chain, { base: 'f0.qcow2' });
  });

  it('-b a plain bottom file through an encrypted middle file under a plain overlay', async () => {
    const chain = await buildChain([
      { kind: 'plain', writes: ['write -P 0x81 0 2M'] },
      { kind: 'luks-a', writes: ['write -P 0x82 1M 2M'] },
      { kind: 'plain', writes: ['write -P 0x83 2500k 100k'] },
    ]);
    await commitBoth(chain, { base: 'f0.qcow2' });
  });

  it('into a plain middle file that completes part of a cluster from the encrypted file below it', async () => {
    const chain = await buildChain([
      { kind: 'luks-qemu', writes: ['write -P 0x91 0 1M'] },
      { kind: 'plain', writes: [] },
      { kind: 'luks-b', writes: ['write -P 0x92 1000 3000', 'write -P 0x93 40000 100'] },
    ]);
    await commitBoth(chain, {});
  });
});

/** Cowbell's safe rebase of the top onto `backing` (a file name in the chain's folder, or null), and qemu-img's on a copy. */
async function rebaseBoth(chain: Chain, backing: number | null, newChain: (number | null)[], options: { qemuCannot?: boolean } = {}): Promise<void> {
  const theirs = copyChain(chain);
  const top = chain.kinds.length - 1;
  const before = await qemuRead(chain, top);
  const name = backing === null ? null : path.basename(filePath(chain, backing));
  const format = backing === null ? undefined : chain.kinds[backing] === 'raw' ? 'raw' : 'qcow2';
  const request: RebaseRequest = { image: filePath(chain, top), backingFile: name, ...(format !== undefined ? { backingFormat: format } : {}), passphrase: PASS };
  runSteps(rebaseSteps(request));
  chain.backing = newChain;
  if (options.qemuCannot !== true) {
    // qemu-img rebase --image-opts wants an absolute name; and it opens a new backing file without a secret, so not an encrypted one.
    const target = backing === null ? '' : filePath(theirs, backing);
    await runTool('qemu-img', ['rebase', '-q', ...SECRETS, '--image-opts', '-b', target, ...(format !== undefined ? ['-F', format] : []), imageOpts(theirs, top)], { cwd: theirs.where });
    theirs.backing = newChain;
    await expectSameReads(chain, theirs);
  }
  const after = await qemuRead(chain, top);
  expect(firstDifference(after, before), 'the top after the rebase: first byte reading differently').toBe(-1);
  expect(JSON.parse((await runTool('qemu-img', ['info', '-U', '--output=json', filePath(chain, top)])).stdout)['backing-filename']).toBe(name ?? undefined);
  await expectCleanByQemu(chain);
}

describe('safe rebase over encrypted chains, one passphrase', () => {
  it('an encrypted overlay over an encrypted file onto no backing file: the old chain copied in under the overlay key', async () => {
    const chain = await buildChain([
      { kind: 'luks-qemu', writes: ['write -P 0x11 0 2M', 'write -P 0x12 6M 70k'] },
      { kind: 'luks-a', writes: ['write -P 0x13 1M 100k', 'write -z 6M 4k'] },
    ]);
    await rebaseBoth(chain, null, [null, null]);
  });

  it('an encrypted overlay over an encrypted middle file onto the plain bottom file', async () => {
    const chain = await buildChain([
      { kind: 'plain', writes: ['write -P 0x21 0 1M'] },
      { kind: 'luks-b', writes: ['write -P 0x22 512k 1M', 'write -z 100k 10k'] },
      { kind: 'luks-a', writes: ['write -P 0x23 700k 4k'] },
    ]);
    await rebaseBoth(chain, 0, [null, 0, 0]);
  });

  it('a plain overlay over an encrypted middle file onto the encrypted bottom file (qemu-img opens no new encrypted backing file: the top must read as before)', async () => {
    const chain = await buildChain([
      { kind: 'luks-qemu', writes: ['write -P 0x31 0 1M'] },
      { kind: 'luks-b', writes: ['write -P 0x32 256k 1M'] },
      { kind: 'plain', writes: ['write -P 0x33 300k 4k'] },
    ]);
    await rebaseBoth(chain, 0, [null, 0, 0], { qemuCannot: true });
  });

  it('a plain overlay over a plain file onto an encrypted file outside its chain', async () => {
    const chain = await buildChain([
      { kind: 'luks-a', writes: ['write -P 0x41 0 3M'] },
      { kind: 'plain', writes: ['write -P 0x42 2M 2M'] },
      { kind: 'plain', writes: ['write -P 0x43 100k 100k'] },
    ]);
    // Unsafe first: the top over f1 only (f0 stays beside), then the safe rebase onto f0 reads both chains.
    chain.backing = [null, null, 1];
    await runTool('qemu-img', ['rebase', '-q', '-u', '-b', '', path.join(chain.where, 'f1.qcow2')]);
    await rebaseBoth(chain, 0, [null, null, 0], { qemuCannot: true });
  });

  it('a raw bottom file under an encrypted overlay: onto it from an encrypted middle file', async () => {
    const chain = await buildChain([
      { kind: 'raw', writes: ['write -P 0x51 0 1M'] },
      { kind: 'luks-a', writes: ['write -P 0x52 1M 1M'] },
      { kind: 'luks-qemu', writes: ['write -P 0x53 1536k 1k'] },
    ]);
    await rebaseBoth(chain, 0, [null, 0, 0]);
  });
});

describe('a missing or wrong passphrase leaves every file as it was', () => {
  it('without a passphrase: LOCKED, naming the encrypted file, for commit and safe rebase', async () => {
    const chain = await buildChain([
      { kind: 'luks-a', writes: ['write -P 0x61 0 1M'] },
      { kind: 'plain', writes: ['write -P 0x62 0 64k', 'write -P 0x63 70000 100'] },
    ]);
    const before = hashes(chain);
    const commitError = thrownQcow2Error(() => runSteps(commitSteps({ image: filePath(chain, 1) })));
    expect([commitError.code, commitError.message]).toEqual(['LOCKED', expect.stringContaining(filePath(chain, 0))]);
    const rebaseError = thrownQcow2Error(() => runSteps(rebaseSteps({ image: filePath(chain, 1), backingFile: null })));
    expect([rebaseError.code, rebaseError.message]).toEqual(['LOCKED', expect.stringContaining(filePath(chain, 0))]);
    expect(hashes(chain)).toEqual(before);
  });

  it('what cannot be done at all is said before the passphrase is missed: an encrypted disk without a backing file', async () => {
    const chain = await buildChain([{ kind: 'luks-a', writes: ['write -P 0x64 0 64k'] }]);
    const before = hashes(chain);
    expect(thrownQcow2Error(() => runSteps(commitSteps({ image: filePath(chain, 0) }))).code).toBe('INVALID_ARGUMENT');
    expect(hashes(chain)).toEqual(before);
  });

  it('a backing file in the old qcow2 AES encryption is not written (UNSUPPORTED_FEATURE), nothing changed', async () => {
    const where = folder.file('legacy');
    fs.mkdirSync(where);
    const base = path.join(where, 'aes.qcow2');
    const top = path.join(where, 'top.qcow2');
    await createLegacyAesImage(base, PASS, '4M');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'aes.qcow2', '-F', 'qcow2', top, '4M']);
    await runTool('qemu-io', [...secret('sec0', PASS), '--image-opts', '-c', 'write -P 0x65 0 64k', `driver=qcow2,file.filename=${top},backing.encrypt.key-secret=sec0`]);
    const before = [fileHash(base), fileHash(top)];
    const error = thrownQcow2Error(() => runSteps(commitSteps({ image: top, passphrase: PASS, trustLegacyPassphrase: true })));
    expect([error.code, error.message]).toEqual(['UNSUPPORTED_FEATURE', expect.stringContaining('old qcow2 AES')]);
    expect([fileHash(base), fileHash(top)]).toEqual(before);
  });

  it('a wrong passphrase: BAD_PASSPHRASE, nothing written', async () => {
    const chain = await buildChain([
      { kind: 'luks-qemu', writes: ['write -P 0x71 0 1M'] },
      { kind: 'luks-a', writes: ['write -P 0x72 4k 64k'] },
    ]);
    const before = hashes(chain);
    for (const work of [() => runSteps(commitSteps({ image: filePath(chain, 1), passphrase: 'wrong' })), () => runSteps(rebaseSteps({ image: filePath(chain, 1), backingFile: null, passphrase: 'wrong' }))]) {
      expect(thrownQcow2Error(work).code).toBe('BAD_PASSPHRASE');
    }
    expect(hashes(chain)).toEqual(before);
  });

  it('a file of the chain the passphrase does not open (its own passphrase): BAD_PASSPHRASE naming it, before anything is written', async () => {
    const chain = await buildChain([
      { kind: 'luks-other', writes: ['write -P 0x81 0 1M'] },
      { kind: 'plain', writes: [] },
      { kind: 'luks-a', writes: ['write -P 0x82 4k 64k'] },
    ]);
    const other = folder.file('new-other.qcow2');
    fs.copyFileSync(templates.get('luks-other') ?? '', other);
    const lone = folder.file('lone.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', lone, String(SIZE)]);
    await runTool('qemu-io', ['-c', 'write -P 0x83 0 64k', lone]);
    const before = [...hashes(chain), fileHash(other), fileHash(lone)];
    const top = filePath(chain, 2);
    const attempts: [string, () => unknown, string][] = [
      ['commit into the plain middle file (its backing file completes clusters)', () => runSteps(commitSteps({ image: top, passphrase: PASS })), filePath(chain, 0)],
      ['commit -b the bottom file', () => runSteps(commitSteps({ image: top, base: filePath(chain, 0), passphrase: PASS })), filePath(chain, 0)],
      ['safe rebase onto nothing', () => runSteps(rebaseSteps({ image: top, backingFile: null, passphrase: PASS })), filePath(chain, 0)],
      ['safe rebase of a plain disk onto a file under the other passphrase', () => runSteps(rebaseSteps({ image: lone, backingFile: other, backingFormat: 'qcow2', passphrase: PASS })), other],
    ];
    for (const [what, work, named] of attempts) {
      const error = thrownQcow2Error(work);
      expect([error.code, error.message], what).toEqual(['BAD_PASSPHRASE', expect.stringContaining(named)]);
    }
    expect([...hashes(chain), fileHash(other), fileHash(lone)]).toEqual(before);
  });
});
