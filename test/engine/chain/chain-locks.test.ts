/**
 * While commit or rebase runs, every file of the chain it reads is kept from writers, as qemu-img's
 * own commit and rebase keep them (found by the concurrency audit: the files between a commit's top
 * and base, and a rebase's new backing file, took only a reader's lock, so qemu-io — or a VM —
 * could start writing one midway and change what was being copied or compared).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { commitSteps } from '../../../src/shared/qcow2/chain/commit.ts';
import { rebaseSteps } from '../../../src/shared/qcow2/chain/rebase.ts';
import type { JobContext } from '../../../src/shared/qcow2/job-context.ts';
import { runSteps } from '../../../src/shared/qcow2/steps.ts';
import { qemuIoWrite } from '../../helpers/midway.ts';
import { qemuCheck, qemuImg, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';

let folder: TempDir;
beforeEach(() => {
  folder = tempDir();
});
afterEach(() => folder.cleanup());

/** Tries a qemu-io write of each file once, midway through the stage named. */
function probingMidway(stage: string, files: string[], seen: Map<string, string>): JobContext {
  return {
    progress(now, done, total) {
      if (now !== stage || seen.size > 0 || done === 0 || done >= total) return;
      for (const file of files) seen.set(file, qemuIoWrite(file));
    },
    throwIfCancelled() {},
  };
}

async function chainOfThree(): Promise<{ base: string; mid: string; top: string }> {
  const base = folder.file('base.qcow2');
  const mid = folder.file('mid.qcow2');
  const top = folder.file('top.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', base, '64M']);
  await qemuIo(base, ['write -P 0x11 0 16M']);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', mid]);
  await qemuIo(mid, ['write -P 0x22 8M 16M']);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', top]);
  await qemuIo(top, ['write -P 0x33 0 4M', 'write -P 0x34 20M 4M', 'write -P 0x35 40M 4M']);
  return { base, mid, top };
}

describe('the chain while commit and rebase run', { timeout: 30_000 }, () => {
  it('commit -b base: the file between is kept from writers until the commit ends; afterwards it may be written', async () => {
    const { base, mid, top } = await chainOfThree();
    const seen = new Map<string, string>();
    runSteps(commitSteps({ image: top, base }, probingMidway('commit', [mid], seen)));
    expect(seen.get(mid)).toMatch(/Failed to get "write" lock/);
    for (const file of [base, mid, top]) expect((await qemuCheck(file)).code, file).toBe(0);
    expect(qemuIoWrite(mid)).not.toMatch(/lock/);
  });

  it('safe rebase onto another file: the old chain and the new backing file are kept from writers until it ends', async () => {
    const { base, mid, top } = await chainOfThree();
    const other = folder.file('other.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', other, '64M']);
    await qemuIo(other, ['write -P 0x44 0 32M']);
    const seen = new Map<string, string>();
    runSteps(rebaseSteps({ image: top, backingFile: 'other.qcow2', backingFormat: 'qcow2' }, probingMidway('rebase', [mid, base, other], seen)));
    for (const file of [mid, base, other]) expect(seen.get(file), file).toMatch(/Failed to get "write" lock/);
    for (const file of [top, other]) expect((await qemuCheck(file)).code, file).toBe(0);
    expect(qemuIoWrite(other)).not.toMatch(/lock/);
  });
});
