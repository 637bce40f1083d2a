/**
 * Commit and rebase do not read encrypted files yet (they take no passphrase): where one is in the
 * chain they read, they refuse before anything is written. Found by the encrypted-chain property:
 * they used to find the encrypted file only when they came to read it (LOCKED), after writing
 * what they had copied so far — a commit left its backing file half committed.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitSteps } from '../../../src/shared/qcow2/chain/commit.ts';
import { rebaseSteps } from '../../../src/shared/qcow2/chain/rebase.ts';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { runSteps } from '../../../src/shared/qcow2/steps.ts';
import { createLuksImage, imageOpts, qemuIoEncrypted, secret } from '../../helpers/encrypted-images.ts';
import { fileHash } from '../../helpers/image-locks.ts';
import { qemuImg, qemuIo, runTool, tempDir, type TempDir } from '../../helpers/qemu.ts';

const PASS = 'chain-pass';

let folder: TempDir;
/** An 8 MiB LUKS file with data past the first 4 MiB only, and a copy with data at its start too. */
let luksHigh: string;
let luksBoth: string;
beforeAll(async () => {
  folder = tempDir();
  luksHigh = folder.file('luks-high.qcow2');
  luksBoth = folder.file('luks-both.qcow2');
  await createLuksImage(luksHigh, PASS, { size: '8M' });
  await qemuIoEncrypted(luksHigh, PASS, ['write -P 0x77 5M 64k']);
  fs.copyFileSync(luksHigh, luksBoth);
  await qemuIoEncrypted(luksBoth, PASS, ['write -P 0x55 0 64k']);
}, 120_000);
afterAll(() => folder.cleanup());

function refusal(work: () => unknown): Qcow2Error {
  try {
    work();
  } catch (error) {
    if (error instanceof Qcow2Error) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

/** A plain mid over `luks` (copied into `name`-base.qcow2), and a plain top with `clusterBytes` clusters over it. */
async function plainOverEncrypted(name: string, luks: string, clusterBytes: number): Promise<{ base: string; mid: string; top: string }> {
  const base = folder.file(`${name}-base.qcow2`);
  const mid = folder.file(`${name}-mid.qcow2`);
  const top = folder.file(`${name}-top.qcow2`);
  fs.copyFileSync(luks, base);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-b', `${name}-base.qcow2`, '-F', 'qcow2', mid, '8M']);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${clusterBytes}`, '-b', `${name}-mid.qcow2`, '-F', 'qcow2', top, '8M']);
  return { base, mid, top };
}

const hashes = (files: string[]): string[] => files.map((file) => fileHash(file));

describe('commit and rebase over an encrypted file refuse before writing anything', () => {
  it('a commit into a plain file whose backing file is encrypted (the base completes part of a cluster from it)', async () => {
    const { base, mid, top } = await plainOverEncrypted('commit', luksBoth, 512);
    // qemu-io writes the top through the whole chain: the key for the base two levels down.
    await runTool('qemu-io', [...secret('sec0', PASS), '--image-opts', '-c', 'write -P 0x33 0 64k', '-c', 'write -P 0x99 70000 100', `driver=qcow2,file.filename=${top},backing.backing.encrypt.key-secret=sec0`]);
    const before = hashes([base, mid, top]);
    const error = refusal(() => runSteps(commitSteps({ image: top })));
    expect(hashes([base, mid, top]), `the files after: ${error.code} ${error.message}`).toEqual(before);
    expect(error.code).toBe('UNSUPPORTED_FEATURE');
    expect(error.message).toContain(base);
  });

  it('a safe rebase onto nothing through a plain file over an encrypted one', async () => {
    const { base, mid, top } = await plainOverEncrypted('flatten', luksHigh, 65536);
    await runTool('qemu-io', [...secret('sec0', PASS), '--image-opts', '-c', 'write -P 0x33 0 64k', `driver=qcow2,file.filename=${mid},backing.encrypt.key-secret=sec0`]);
    const before = hashes([base, mid, top]);
    const error = refusal(() => runSteps(rebaseSteps({ image: top, backingFile: null })));
    expect(hashes([base, mid, top]), `the files after: ${error.code} ${error.message}`).toEqual(before);
    expect(error.code).toBe('UNSUPPORTED_FEATURE');
    expect(error.message).toContain(base);
  });

  it('a safe rebase of a plain chain onto an encrypted file', async () => {
    const old = folder.file('old.qcow2');
    const top = folder.file('moving-top.qcow2');
    const target = folder.file('new-luks.qcow2');
    fs.copyFileSync(luksHigh, target);
    await qemuImg(['create', '-q', '-f', 'qcow2', old, '8M']);
    await qemuIo(old, ['write -P 0x44 0 64k']);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'old.qcow2', '-F', 'qcow2', top, '8M']);
    const before = hashes([old, top, target]);
    const error = refusal(() => runSteps(rebaseSteps({ image: top, backingFile: 'new-luks.qcow2', backingFormat: 'qcow2' })));
    expect(hashes([old, top, target]), `the files after: ${error.code} ${error.message}`).toEqual(before);
    expect(error.code).toBe('UNSUPPORTED_FEATURE');
    expect(error.message).toContain(target);
    // The header alone (-u) still changes, as documented: it reads no data.
    runSteps(rebaseSteps({ image: top, backingFile: 'new-luks.qcow2', backingFormat: 'qcow2', unsafe: true }));
    const info = await runTool('qemu-img', ['info', ...secret('sec0', PASS), '--image-opts', imageOpts(top, 'sec0').replace(',encrypt.key-secret=sec0', ''), '--output=json']);
    expect(JSON.parse(info.stdout)['backing-filename']).toBe('new-luks.qcow2');
  });
});
