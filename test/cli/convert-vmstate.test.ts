/**
 * `convert -l NAME` writes one snapshot's disk as a standalone disk: a VM state saved with it
 * (QEMU's savevm: RAM and devices) cannot come along, and the command says so (it said nothing,
 * found by an audit); a snapshot without one gets no note.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { run } from '../helpers/cli.ts';
import { firstDifference, qemuImg, qemuIo, rawOf, tempDir, type TempDir } from '../helpers/qemu.ts';
import { saveVm } from '../helpers/qemu-system.ts';

vi.setConfig({ testTimeout: 60_000 });

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

describe('convert -l of a snapshot with a saved VM state', () => {
  it('says the VM state stays behind; the disk is the snapshot\'s', async () => {
    const image = folder.file('vm.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '4M']);
    await qemuIo(image, ['write -P 0x41 0 64k']);
    await saveVm(image, 'booted');
    await qemuImg(['snapshot', '-c', 'disk-only', image]);
    const expected = await rawOf(image, { snapshot: 'booted' });
    const output = folder.file('booted.raw');
    const saved = await run('convert', '-l', 'booted', '-O', 'raw', image, output);
    expect(saved.code, saved.err).toBe(0);
    expect(saved.err).toMatch(/saved VM state \(its RAM, [\d.]+ [KM]iB\) is not disk data/);
    expect(firstDifference(await rawOf(output, { format: 'raw' }), expected)).toBe(-1);
    const plain = await run('convert', '-l', 'disk-only', '-O', 'qcow2', image, folder.file('disk-only.qcow2'));
    expect(plain).toMatchObject({ code: 0, err: '' });
  });
});
