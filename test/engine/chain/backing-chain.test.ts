/** Reading a disk's backing chain: each file's format, sizes and snapshots; a missing or looping file named, not a failure. */
import * as fs from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readBackingChain } from '../../../src/shared/qcow2/chain/chain.ts';
import { run } from '../../helpers/cli.ts';
import { fileHash, holdWithQemuIo } from '../../helpers/image-locks.ts';
import { qemuImg, qemuInfo, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { makeChain, MiB } from './chain-fixtures.ts';

let folder: TempDir;
beforeEach(() => {
  folder = tempDir();
});
afterEach(() => folder.cleanup());

describe('the backing chain of a disk', () => {
  it('lists each file top to bottom with its format, size on disk and its own snapshots, as qemu-img info sees them', async () => {
    const { base, mid, top } = await makeChain(folder, { options: 'compat=1.1', baseFormat: 'raw', midSnapshot: 'installed' });
    const chain = readBackingChain(top);
    expect(chain.complete).toBe(true);
    expect(chain.files.map((file) => [file.path, file.name, file.format, file.declaredFormat])).toEqual([
      [top, top, 'qcow2', null],
      [mid, 'mid.qcow2', 'qcow2', 'qcow2'],
      [base, 'base.raw', 'raw', 'raw'],
    ]);
    expect(chain.files.map((file) => file.snapshots.map((snapshot) => snapshot.name))).toEqual([[], ['installed'], []]);
    const midInfo = await qemuInfo(mid);
    expect(chain.files[1]?.snapshots[0]?.['date-sec']).toBe(midInfo.snapshots?.[0]?.['date-sec']);
    for (const file of chain.files) {
      expect(file.problem).toBeNull();
      expect(file.virtualSize).toBe(4 * MiB);
      expect(file.fileSize).toBe(fs.statSync(file.path).size);
      expect(file.allocatedBytes).toBe(fs.statSync(file.path).blocks * 512);
    }
  });

  it('names a missing backing file instead of failing', async () => {
    const { base, top } = await makeChain(folder, { options: 'compat=1.1' });
    fs.rmSync(base);
    const chain = readBackingChain(top);
    expect(chain.complete).toBe(false);
    expect(chain.files).toHaveLength(3);
    const missing = chain.files[2];
    expect(missing?.path).toBe(base);
    expect(missing?.problem?.kind).toBe('missing');
    expect(missing?.problem?.message).toContain('base.qcow2');
    expect(chain.files[1]?.problem).toBeNull();
  });

  it('shows where a chain loops back (made with qemu-img rebase -u) instead of failing', async () => {
    const { base, top } = await makeChain(folder, { options: 'compat=1.1' });
    await qemuImg(['rebase', '-u', '-b', 'top.qcow2', '-F', 'qcow2', base]);
    const chain = readBackingChain(top);
    expect(chain.complete).toBe(false);
    expect(chain.files.map((file) => file.name)).toEqual([top, 'mid.qcow2', 'base.qcow2', 'top.qcow2']);
    expect(chain.files[3]?.problem?.kind).toBe('loop');
    expect(chain.files[3]?.problem?.message).toContain('file 1');
    // The operations refuse such a chain with a reason, and change nothing.
    const hash = fileHash(top);
    const commit = await run('commit', '-b', folder.file('nothing.qcow2'), top);
    expect(commit.code).toBe(1);
    expect(commit.err).toMatch(/loops/);
    expect(fileHash(top)).toBe(hash);
  });

  it('rebase refuses a new backing file whose own chain leads back to the image', async () => {
    const { mid, top } = await makeChain(folder, { options: 'compat=1.1' });
    const hash = fileHash(mid);
    const result = await run('rebase', '-b', 'top.qcow2', '-F', 'qcow2', mid);
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/would loop/);
    expect(fileHash(mid)).toBe(hash);
    expect(readBackingChain(top).complete).toBe(true);
  });

  it('a name that is the image under another name (a symbolic or hard link) is the image: rebase refuses the loop, safe or -u, and a chain looping through one is shown as a loop', async () => {
    const { base, top } = await makeChain(folder, { options: 'compat=1.1' });
    fs.symlinkSync('top.qcow2', folder.file('top-link.qcow2'));
    fs.linkSync(top, folder.file('top-hard.qcow2'));
    const hashes = [fileHash(top), fileHash(base)];
    for (const name of ['top-link.qcow2', 'top-hard.qcow2']) {
      for (const unsafe of [['-u'], []]) {
        const result = await run('rebase', ...unsafe, '-b', name, '-F', 'qcow2', top);
        expect(result.code, `${name} ${unsafe.join('')}`).toBe(1);
        expect(result.err).toMatch(/would loop/);
      }
      // Through another file's chain: base would read top, whose chain reads base.
      const result = await run('rebase', '-u', '-b', name, '-F', 'qcow2', base);
      expect(result.err).toMatch(/would loop/);
    }
    expect([fileHash(top), fileHash(base)]).toEqual(hashes);
    await qemuImg(['rebase', '-u', '-b', 'top-link.qcow2', '-F', 'qcow2', base]);
    const chain = readBackingChain(top);
    expect(chain.files.map((file) => file.name)).toEqual([top, 'mid.qcow2', 'base.qcow2', 'top-link.qcow2']);
    expect(chain.files[3]?.problem?.kind).toBe('loop');
    const map = await run('map', top);
    expect(map.code).toBe(1);
    expect(map.err).toMatch(/base\.qcow2: The backing chain loops back to .*top-link\.qcow2/);
  });

  it('rebase onto a file of the old chain in another format than that chain reads it checks the file\'s own chain for a loop too', async () => {
    // x.qcow2 is qcow2 with top.qcow2 as its backing file; top names x.qcow2 as raw, so its chain ends there.
    await qemuImg(['create', '-q', '-f', 'qcow2', '-u', '-b', 'top.qcow2', '-F', 'qcow2', folder.file('x.qcow2'), String(MiB)]);
    const top = folder.file('top.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'x.qcow2', '-F', 'raw', top, String(MiB)]);
    const hash = fileHash(top);
    const result = await run('rebase', '-b', 'x.qcow2', '-F', 'qcow2', top);
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/would loop/);
    expect(fileHash(top)).toBe(hash);
  });
});

describe('a linked clone is create -b', () => {
  it('an overlay named relative to its folder, sized from its backing file, reads as it (qemu-img compare), and qemu-img accepts it', async () => {
    const { top } = await makeChain(folder, { options: 'compat=1.1', baseFormat: 'raw' });
    const clone = folder.file('clone.qcow2');
    const result = await run('create', '-q', '-b', 'top.qcow2', '-F', 'qcow2', clone);
    expect(result.err).toBe('');
    expect(result.code).toBe(0);
    const info = await qemuInfo(clone);
    expect(info['backing-filename']).toBe('top.qcow2');
    expect(info['backing-filename-format']).toBe('qcow2');
    expect(info['virtual-size']).toBe(4 * MiB);
    expect((await qemuImg(['check', clone])).code).toBe(0);
    expect((await qemuImg(['compare', clone, top])).code).toBe(0);
    expect(readBackingChain(clone).files.map((file) => file.format)).toEqual(['qcow2', 'qcow2', 'qcow2', 'raw']);
  });
});

describe('commit and rebase refuse while a VM holds a file of the chain', () => {
  it('commit: the overlay, or the backing file, used by a running qemu', async () => {
    const { base, mid, top } = await makeChain(folder, { options: 'compat=1.1' });
    const hashes = () => [base, mid, top].map(fileHash);
    const before = hashes();
    for (const held of [top, mid]) {
      const holder = await holdWithQemuIo(held);
      try {
        const result = await run('commit', top);
        expect(result.code).toBe(1);
        expect(result.err).toMatch(/in use/i);
      } finally {
        await holder.release();
      }
    }
    expect(hashes()).toEqual(before);
  });

  it('rebase: the overlay used by a running qemu, or a file of its old chain written by one', async () => {
    const { base, mid, top } = await makeChain(folder, { options: 'compat=1.1' });
    const before = [base, mid, top].map(fileHash);
    for (const held of [top, base]) {
      const holder = await holdWithQemuIo(held);
      try {
        const result = await run('rebase', '-b', 'base.qcow2', '-F', 'qcow2', top);
        expect(result.code).toBe(1);
        expect(result.err).toMatch(/in use|being written/i);
      } finally {
        await holder.release();
      }
    }
    expect([base, mid, top].map(fileHash)).toEqual(before);
  });
});
