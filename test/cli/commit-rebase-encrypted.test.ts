/**
 * `cowbell commit` and `cowbell rebase` on chains with encrypted files: the passphrase from
 * --passphrase-file or typed at the prompt (asked only once the engine says it needs one, LOCKED),
 * one passphrase for every encrypted file; without a file and a terminal, a usage error; a wrong
 * passphrase is refused. Every refusal leaves each file byte for byte as it was.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { rewriteImage } from '../../src/shared/qcow2/rewrite/rewrite.ts';
import { secret } from '../helpers/encrypted-images.ts';
import { fileHash } from '../helpers/image-locks.ts';
import { runWithPrompts } from '../helpers/cli.ts';
import { firstDifference, qemuImg, runTool, tempDir, type TempDir } from '../helpers/qemu.ts';

vi.setConfig({ testTimeout: 60_000 });

const PASS = 'cli-chain-pass';
const QUICK_KEY = { iterations: 1000, digestIterations: 1000 } as const;

let folder: TempDir;
let passFile: string;
let wrongFile: string;
beforeAll(() => {
  folder = tempDir();
  passFile = folder.file('pass.txt');
  fs.writeFileSync(passFile, `${PASS}\n`, { mode: 0o600 });
  wrongFile = folder.file('wrong.txt');
  fs.writeFileSync(wrongFile, 'not-it\n', { mode: 0o600 });
});
afterAll(() => folder.cleanup());

const cowbell = runWithPrompts;

let chains = 0;
/** base.qcow2 ← top.qcow2 in a folder of their own, both LUKS under PASS (each its own key), each with data. */
async function encryptedChain(): Promise<{ base: string; top: string }> {
  const where = folder.file(`chain-${++chains}`);
  fs.mkdirSync(where);
  const base = path.join(where, 'base.qcow2');
  const top = path.join(where, 'top.qcow2');
  const plainBase = path.join(where, 'plain-base.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', plainBase, '4M']);
  await runTool('qemu-io', ['-c', 'write -P 0x11 0 1M', '-c', 'write -P 0x12 3M 64k', plainBase]);
  rewriteImage({ source: plainBase, target: base, compression: 'keep', encryption: { kind: 'luks', passphrase: PASS, ...QUICK_KEY } });
  fs.rmSync(plainBase);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', 'base.qcow2', '-F', 'qcow2', top, '4M']);
  rewriteImage({ source: top, compression: 'keep', encryption: { kind: 'luks', passphrase: PASS, ...QUICK_KEY } });
  await runTool('qemu-io', [...secret('sec0', PASS), '--image-opts', '-c', 'write -P 0x21 512k 1M', '-c', 'write -z 3M 4k', chainOpts(top, true)]);
  return { base, top };
}

/** `--image-opts` for `image` with the secret for it and (when `overEncrypted`) for its encrypted backing file. */
function chainOpts(image: string, overEncrypted: boolean): string {
  return `driver=qcow2,file.filename=${image},encrypt.key-secret=sec0${overEncrypted ? ',backing.encrypt.key-secret=sec0' : ''}`;
}

async function qemuRead(image: string, overEncrypted: boolean): Promise<Uint8Array> {
  const output = folder.file('read.raw');
  await runTool('qemu-img', ['convert', ...secret('sec0', PASS), '--image-opts', chainOpts(image, overEncrypted), '-O', 'raw', output]);
  const bytes = new Uint8Array(fs.readFileSync(output));
  fs.rmSync(output);
  return bytes;
}

async function expectClean(image: string, overEncrypted: boolean): Promise<void> {
  const check = await runTool('qemu-img', ['check', ...secret('sec0', PASS), '--image-opts', chainOpts(image, overEncrypted)], { okCodes: [0, 1, 2, 3] });
  expect(check.code, check.stdout + check.stderr).toBe(0);
}

describe('cowbell commit and rebase on an encrypted chain', () => {
  it('commit --passphrase-file: the overlay into its encrypted backing file, "Image committed.", both files clean', async () => {
    const { base, top } = await encryptedChain();
    const before = await qemuRead(top, true);
    const result = await cowbell(['commit', '--passphrase-file', passFile, top]);
    expect(result, result.err).toEqual({ code: 0, out: 'Image committed.\n', err: '', prompts: [] });
    expect(firstDifference(await qemuRead(base, false), before), 'the backing file reads as the overlay did').toBe(-1);
    expect(firstDifference(await qemuRead(top, true), before), 'the emptied overlay reads the same').toBe(-1);
    await expectClean(base, false);
    await expectClean(top, true);
  });

  it('commit without --passphrase-file asks on the terminal once the engine needs it; with no terminal, a usage error naming the option', async () => {
    const { base, top } = await encryptedChain();
    const hashes = [fileHash(base), fileHash(top)];
    const noTerminal = await cowbell(['commit', '-d', top]);
    expect(noTerminal.code).toBe(2);
    expect(noTerminal.err).toMatch(/is encrypted: give its passphrase with --passphrase-file FILE/);
    expect([fileHash(base), fileHash(top)]).toEqual(hashes);
    const before = await qemuRead(top, true);
    const typed = await cowbell(['commit', '-d', top], [PASS]);
    expect({ code: typed.code, err: typed.err, prompts: typed.prompts }).toEqual({ code: 0, err: '', prompts: ['Passphrase for top.qcow2: '] });
    expect(firstDifference(await qemuRead(base, false), before)).toBe(-1);
    expect(fileHash(top), '-d leaves the overlay as it was').toBe(hashes[1]);
  });

  it('a wrong passphrase file: refused, every file as it was', async () => {
    const { base, top } = await encryptedChain();
    const hashes = [fileHash(base), fileHash(top)];
    const commit = await cowbell(['commit', '--passphrase-file', wrongFile, top]);
    const rebase = await cowbell(['rebase', '--passphrase-file', wrongFile, '-b', '', top]);
    for (const result of [commit, rebase]) {
      expect(result.code).toBe(1);
      expect(result.err).toMatch(/^cowbell: .*passphrase/i);
    }
    expect([fileHash(base), fileHash(top)]).toEqual(hashes);
  });

  it('rebase --passphrase-file -b "": the encrypted backing file copied into the encrypted overlay, which reads as before', async () => {
    const { base, top } = await encryptedChain();
    const before = await qemuRead(top, true);
    const baseHash = fileHash(base);
    const result = await cowbell(['rebase', '--passphrase-file', passFile, '-b', '', top]);
    expect(result, result.err).toEqual({ code: 0, out: '', err: '', prompts: [] });
    expect(firstDifference(await qemuRead(top, false), before)).toBe(-1);
    expect(fileHash(base)).toBe(baseHash);
    await expectClean(top, false);
  });
});
