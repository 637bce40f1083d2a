/**
 * A snapshot QEMU saved with its VM state (savevm) and then loaded (loadvm, `qemu-img snapshot -a`
 * or Cowbell's apply) leaves the active tables pointing at that VM state, past the disk's end,
 * as QEMU copies the snapshot's whole L1. Growing the disk (or committing into it, which grows it)
 * showed that saved RAM to the guest as disk data in the new space (found by an audit); the new
 * space reads zeros now, and the snapshot keeps its VM state.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { commitSteps } from '../../../src/shared/qcow2/chain/commit.ts';
import { revertToSnapshot } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { resizeImagePath } from '../../../src/shared/qcow2/snapshots/resize.ts';
import { runSteps } from '../../../src/shared/qcow2/steps.ts';
import { qemuCheck, qemuImg, qemuInfo, qemuIo, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { loadVm, saveVm } from '../../helpers/qemu-system.ts';

vi.setConfig({ testTimeout: 120_000 });

const MiB = 1024 * 1024;

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

/** A 1 MiB disk of 512-byte clusters (its VM state lies right after its end) with a saved VM "booted", then loaded by `how`. */
async function loadedDisk(name: string, how: 'qemu-img' | 'cowbell'): Promise<string> {
  const image = folder.file(name);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', image, '1M']);
  await qemuIo(image, ['write -P 0x5a 0 64k']);
  await saveVm(image, 'booted');
  await qemuIo(image, ['write -P 0x6b 0 64k']);
  if (how === 'qemu-img') await qemuImg(['snapshot', '-a', 'booted', image]);
  else revertToSnapshot(image, 'booted');
  return image;
}

const nonZero = (bytes: Uint8Array): number => bytes.reduce((count, byte) => count + (byte === 0 ? 0 : 1), 0);

describe('growing a disk whose current state came from a snapshot with VM state', () => {
  it.each(['qemu-img', 'cowbell'] as const)('loaded by %s: the grown space reads zeros; the snapshot still loads', async (how) => {
    const image = await loadedDisk(`grown-${how}.qcow2`, how);
    const vmStateSize = (await qemuInfo(image)).snapshots?.[0]?.['vm-state-size'] ?? 0;
    expect(vmStateSize).toBeGreaterThan(0);
    resizeImagePath(image, 3 * MiB);
    const data = await rawOf(image);
    expect(data.length).toBe(3 * MiB);
    expect(data[0]).toBe(0x5a);
    expect(nonZero(data.subarray(MiB)), 'non-zero bytes past the old end').toBe(0);
    expect((await qemuCheck(image)).code).toBe(0);
    expect((await qemuInfo(image)).snapshots?.[0]?.['vm-state-size']).toBe(vmStateSize);
    expect((await loadVm(image, 'booted')).ok).toBe(true);
  });

  it('commit into such a base (grown to the overlay\'s size) leaves the overlay reading zeros there', async () => {
    const base = await loadedDisk('commit-base.qcow2', 'qemu-img');
    const overlay = folder.file('commit-overlay.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay, '3M']);
    await qemuIo(overlay, ['write -P 0x7c 2M 64k']);
    const before = await rawOf(overlay);
    runSteps(commitSteps({ image: overlay }));
    const after = await rawOf(overlay);
    expect(nonZero(after.subarray(MiB, 2 * MiB)), 'non-zero bytes the base shows past its old end').toBe(0);
    expect(Buffer.compare(Buffer.from(after), Buffer.from(before))).toBe(0);
    expect((await qemuCheck(base)).code).toBe(0);
  });
});
