/**
 * commit and rebase against qemu-img 7.2 on the same chains: after every operation each file is
 * clean by qemu-img check, the overlay reads (qemu-img convert) the same guest data as before, and
 * every file reads as qemu-img's own commit or rebase leaves it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { commitSteps } from '../../../src/shared/qcow2/chain/commit.ts';
import { rebaseSteps } from '../../../src/shared/qcow2/chain/rebase.ts';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import type { JobContext } from '../../../src/shared/qcow2/job-context.ts';
import { runSteps } from '../../../src/shared/qcow2/steps.ts';
import { run } from '../../helpers/cli.ts';
import { fileHash, holdWithQemuIo } from '../../helpers/image-locks.ts';
import { firstDifference, qemuCheck, qemuImg, qemuInfo, qemuIo, qemuMap, rawOf, type TempDir } from '../../helpers/qemu.ts';
import { copyFolder, expectSameBytes, guestOf, makeChain, uncleanFiles, useTwoFolders, type ChainShape } from './chain-fixtures.ts';

const shapes: [string, ChainShape][] = [
  ['v3, 64 KiB clusters', { options: 'compat=1.1' }],
  ['v2, 4 KiB clusters', { options: 'compat=0.10,cluster_size=4096' }],
  ['extended L2 (subclusters)', { options: 'compat=1.1,cluster_size=65536,extended_l2=on' }],
  ['a raw file at the bottom', { options: 'compat=1.1,cluster_size=4096', baseFormat: 'raw' }],
  ['a snapshot in the middle file', { options: 'compat=1.1', midSnapshot: 'before' }],
];

let ours: TempDir;
let theirs: TempDir;
useTwoFolders((folders) => ({ ours, theirs } = folders));

/** The same chain in both folders: ours for cowbell, theirs for qemu-img. */
async function twoChains(shape: ChainShape): Promise<{ base: string; mid: string; top: string; their: (file: string) => string }> {
  const files = await makeChain(ours, shape);
  copyFolder(ours, theirs);
  return { ...files, their: (file) => theirs.file(path.basename(file)) };
}

describe('commit gives the emptied overlay\'s space back', () => {
  // Audit C: with 4 KiB clusters the refcount blocks spread through the file kept its end in use,
  // so cutting the free tail left 41 of 44 MiB in the file (qemu-img leaves 16 KiB). The CLI and
  // the app's job now compact the emptied overlay in place.
  it('an overlay with 4 KiB clusters and 44 MiB of data ends no bigger than qemu-img commit leaves it, each file reading as qemu-img\'s', async () => {
    const base = ours.file('small-base.qcow2');
    const top = ours.file('small-top.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', base, '64M']);
    await qemuIo(base, ['write -P 3 0 64M']);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', 'small-base.qcow2', '-F', 'qcow2', top]);
    await qemuIo(top, ['write -P 9 4M 44M']);
    copyFolder(ours, theirs);
    const model = await guestOf(top);
    const result = await run('commit', top);
    expect(result.err).toBe('');
    expect(result.code).toBe(0);
    await qemuImg(['commit', '-q', theirs.file('small-top.qcow2')]);
    expect(await uncleanFiles([base, top])).toEqual([]);
    expectSameBytes(await guestOf(top), model, 'the overlay after commit');
    expectSameBytes(await guestOf(base), await guestOf(theirs.file('small-base.qcow2')), 'the base beside qemu-img commit');
    expect((await qemuInfo(top))['backing-filename']).toBe('small-base.qcow2');
    expect(fs.statSync(top).size).toBeLessThanOrEqual(fs.statSync(theirs.file('small-top.qcow2')).size + 64 * 1024);
  });

  it('an overlay whose snapshot keeps most of the file is not copied whole to give back a little (audit Q7)', async () => {
    const base = ours.file('kept-base.qcow2');
    const top = ours.file('kept-top.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', base, '32M']);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', 'kept-base.qcow2', '-F', 'qcow2', top]);
    // The snapshot maps the whole disk, so the commit changes nothing it reads; a second snapshot,
    // taken and deleted around a rewrite, leaves 2 MiB free in the middle of the file.
    await qemuIo(top, ['write -P 5 0 32M']);
    await qemuImg(['snapshot', '-c', 'whole', top]);
    await qemuIo(top, ['write -P 6 0 2M']);
    await qemuImg(['snapshot', '-c', 'passing', top]);
    await qemuIo(top, ['write -P 7 0 2M']);
    await qemuImg(['snapshot', '-d', 'passing', top]);
    const copy = ours.file('kept-copy.qcow2');
    fs.copyFileSync(top, copy);
    const model = await guestOf(top);
    const inode = fs.statSync(top).ino;
    expect((await run('commit', top)).code).toBe(0);
    expect(fs.statSync(top).ino).toBe(inode);
    expect(await uncleanFiles([base, top])).toEqual([]);
    expectSameBytes(await guestOf(top), model, 'the overlay after commit');
    // What the commit saw: free space enough to pass 1 MiB, too little a share of the file to copy it.
    const result = runSteps(commitSteps({ image: copy }));
    expect(result.freeBytesLeft).toBeGreaterThanOrEqual(1024 * 1024);
    expect(result.worthCompacting).toBe(false);
  });
});

describe.each(shapes)('commit and rebase like qemu-img: %s', (_name, shape) => {
  it('commit writes the overlay into its backing file, empties the overlay, and every file reads as after qemu-img commit', async () => {
    const { base, mid, top, their } = await twoChains(shape);
    const model = await guestOf(top);
    const result = await run('commit', top);
    expect(result.err).toBe('');
    expect(result.out).toBe('Image committed.\n');
    expect(result.code).toBe(0);
    await qemuImg(['commit', '-q', their(top)]);
    expect(await uncleanFiles([base, mid, top])).toEqual([]);
    expectSameBytes(await guestOf(top), model, 'the overlay after commit');
    expectSameBytes(await guestOf(mid), model, 'the backing file after commit');
    for (const file of [base, mid]) expectSameBytes(await guestOf(file), await guestOf(their(file)), `${path.basename(file)} beside qemu-img commit`);
    // Emptied: nothing of the guest disk is the overlay's own any more, and its file is as small as qemu-img leaves it.
    expect((await qemuMap(top)).filter((entry) => entry.depth === 0)).toEqual([]);
    expect(fs.statSync(top).size).toBeLessThanOrEqual(fs.statSync(their(top)).size);
  });

  it('commit -d keeps the overlay as it was', async () => {
    const { mid, top, their } = await twoChains(shape);
    const model = await guestOf(top);
    const ownBefore = (await qemuMap(top)).filter((entry) => entry.depth === 0);
    expect((await run('commit', '-d', '-q', top)).code).toBe(0);
    await qemuImg(['commit', '-q', '-d', their(top)]);
    expect(await uncleanFiles([mid, top])).toEqual([]);
    expect((await qemuMap(top)).filter((entry) => entry.depth === 0)).toEqual(ownBefore);
    expectSameBytes(await guestOf(top), model, 'the overlay');
    expectSameBytes(await guestOf(mid), await guestOf(their(mid)), 'the backing file beside qemu-img commit -d');
  });

  it('commit -b BASE writes everything above the base into it and keeps the overlay (-d implied, as in qemu-img)', async () => {
    const { base, mid, top, their } = await twoChains(shape);
    const model = await guestOf(top);
    const midBefore = await qemuMap(mid);
    expect((await run('commit', '-q', '-b', base, top)).code).toBe(0);
    await qemuImg(['commit', '-q', '-b', their(base), their(top)]);
    expect(await uncleanFiles([base, mid, top])).toEqual([]);
    expectSameBytes(await guestOf(base), model, 'the base after commit -b');
    expectSameBytes(await guestOf(base), await guestOf(their(base)), 'the base beside qemu-img commit -b');
    expectSameBytes(await guestOf(top), model, 'the overlay');
    expect((await qemuMap(mid)).filter((entry) => entry.depth === 0)).toEqual(midBefore.filter((entry) => entry.depth === 0));
  });

  it('commit -b with the overlay\'s own backing file keeps the overlay too, as qemu-img (its -b implies -d whatever the base)', async () => {
    const { mid, top, their } = await twoChains(shape);
    const ownBefore = (await qemuMap(top)).filter((entry) => entry.depth === 0);
    expect(ownBefore.length).toBeGreaterThan(0);
    expect((await run('commit', '-q', '-b', mid, top)).code).toBe(0);
    await qemuImg(['commit', '-q', '-b', their(mid), their(top)]);
    expect(await uncleanFiles([mid, top])).toEqual([]);
    expect((await qemuMap(top)).filter((entry) => entry.depth === 0)).toEqual(ownBefore);
    expect((await qemuMap(their(top))).filter((entry) => entry.depth === 0)).toEqual(ownBefore);
    expectSameBytes(await guestOf(mid), await guestOf(their(mid)), 'the backing file beside qemu-img commit -b');
  });

  it('rebase (safe) onto the bottom file: the overlay reads the same through the shorter chain, as after qemu-img rebase', async () => {
    const { base, mid, top, their } = await twoChains(shape);
    const model = await guestOf(top);
    const baseName = path.basename(base);
    const format = shape.baseFormat ?? 'qcow2';
    expect((await run('rebase', '-b', baseName, '-F', format, top)).code).toBe(0);
    await qemuImg(['rebase', '-b', baseName, '-F', format, their(top)]);
    expect(await uncleanFiles([top, mid, base])).toEqual([]);
    const info = await qemuInfo(top);
    expect(info['backing-filename']).toBe(baseName);
    expect(info['backing-filename-format']).toBe(format);
    expectSameBytes(await guestOf(top), model, 'the overlay after rebase');
    expectSameBytes(await guestOf(top), await guestOf(their(top)), 'the overlay beside qemu-img rebase');
  });

  it('rebase -b "" copies in everything the old chain showed and leaves no backing file', async () => {
    const { top } = await twoChains(shape);
    const model = await guestOf(top);
    expect((await run('rebase', '-b', '', top)).code).toBe(0);
    expect(await uncleanFiles([top])).toEqual([]);
    expect((await qemuInfo(top))['backing-filename']).toBeUndefined();
    expectSameBytes(await guestOf(top), model, 'the overlay without a backing file');
  });

  it('rebase -u rewrites only the header: the data the old chain gave is no longer seen', async () => {
    const { base, top } = await twoChains(shape);
    const mapBefore = (await qemuMap(top)).filter((entry) => entry.depth === 0);
    const format = shape.baseFormat ?? 'qcow2';
    expect((await run('rebase', '-u', '-b', path.basename(base), '-F', format, top)).code).toBe(0);
    expect(await uncleanFiles([top])).toEqual([]);
    const info = await qemuInfo(top);
    expect(info['backing-filename']).toBe(path.basename(base));
    expect((await qemuMap(top)).filter((entry) => entry.depth === 0)).toEqual(mapBefore);
  });
});

describe("an overlay's own snapshots", () => {
  it('commit and rebase refuse, changing nothing, when a snapshot of the overlay would read differently through its holes (qemu-img changes it silently)', async () => {
    const { base, mid, top } = await makeChain(ours, { options: 'compat=1.1', top: ['write -P 0x31 0 64k'] });
    await qemuImg(['snapshot', '-c', 'early', top]);
    await runIo(top, ['write -P 0x32 1M 64k']);
    const hashes = () => [base, mid, top].map(fileHash);
    const before = hashes();
    const commit = await run('commit', top);
    expect(commit.code).toBe(1);
    expect(commit.err).toMatch(/snapshot "early"/);
    const rebase = await run('rebase', '-b', 'base.qcow2', '-F', 'qcow2', top);
    expect(rebase.code).toBe(1);
    expect(rebase.err).toMatch(/snapshot "early"/);
    expect(hashes()).toEqual(before);
    // Where the snapshot reads nothing that changes, commit goes ahead and keeps it as it was.
    await qemuImg(['snapshot', '-d', 'early', top]);
    await qemuImg(['snapshot', '-c', 'late', top]);
    const lateBefore = await rawOf(top, { snapshot: 'late' });
    const result = await run('commit', '-q', top);
    expect(result.err).toBe('');
    expect(result.code).toBe(0);
    expect(await uncleanFiles([base, mid, top])).toEqual([]);
    expect(firstDifference(await rawOf(top, { snapshot: 'late' }), lateBefore)).toBe(-1);
  });
});

describe('a middle file shorter than the overlay (it hides the files below past its end)', () => {
  it('rebase onto the bottom file copies in the zeros the middle file showed past its end, as qemu-img rebase; with a snapshot reading them, it is refused', async () => {
    const [bottom, middle, overlay] = ['short-f0.qcow2', 'short-f1.qcow2', 'short-f2.qcow2'].map((name) => ours.file(name)) as [string, string, string];
    await qemuImg(['create', '-q', '-f', 'qcow2', bottom, '4M']);
    await runIo(bottom, ['write -P 0xaa 0 4M']);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', path.basename(bottom), '-F', 'qcow2', middle, '1M']);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', path.basename(middle), '-F', 'qcow2', overlay, '4M']);
    await runIo(overlay, ['write -P 0x31 3M 64k']);
    copyFolder(ours, theirs);
    const model = await guestOf(overlay);
    expect(model.subarray(1 << 20, 3 << 20).every((byte) => byte === 0)).toBe(true);

    await qemuImg(['snapshot', '-c', 'sees-zeros', overlay]);
    const before = fileHash(overlay);
    const refused = await run('rebase', '-b', path.basename(bottom), '-F', 'qcow2', overlay);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/snapshot "sees-zeros"/);
    expect(fileHash(overlay)).toBe(before);
    await qemuImg(['snapshot', '-d', 'sees-zeros', overlay]);

    const rebased = await run('rebase', '-b', path.basename(bottom), '-F', 'qcow2', overlay);
    expect(rebased.err).toBe('');
    expect(rebased.code).toBe(0);
    await qemuImg(['rebase', '-b', path.basename(bottom), '-F', 'qcow2', theirs.file(path.basename(overlay))]);
    expect(await uncleanFiles([overlay])).toEqual([]);
    expectSameBytes(await guestOf(overlay), model, 'the overlay after rebase');
    expectSameBytes(await guestOf(theirs.file(path.basename(overlay))), model, 'the overlay after qemu-img rebase');
  });

  // Was: a middle file ending inside its last cluster (3 MiB with 2 MiB clusters) read its backing
  // file's bytes past its end where they must read zeros, so a flatten or a rebase copied those in
  // and the overlay (and its snapshots, unrefused) read the bottom file's data there.
  it('one that ends inside its last cluster: a flatten keeps the overlay as it reads, as qemu-img does; a rebase that would change its snapshot there is refused', async () => {
    const file = (name: string): string => ours.file(`partial-${name}`);
    await qemuImg(['create', '-q', '-f', 'qcow2', file('base.qcow2'), '4M']);
    await runIo(file('base.qcow2'), ['write -P 0xaa 0 4M']);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', '-b', 'partial-base.qcow2', '-F', 'qcow2', file('mid.qcow2'), '3584K']);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'partial-mid.qcow2', '-F', 'qcow2', file('top.qcow2'), '4M']);
    await qemuImg(['create', '-q', '-f', 'qcow2', file('other.qcow2'), '4M']);
    await runIo(file('other.qcow2'), ['write -P 0xaa 0 4M']);
    const current = await guestOf(file('top.qcow2'));
    expect(current.subarray(3584 << 10).every((byte) => byte === 0), "zeros past the middle file's end").toBe(true);

    // The other file reads as the old chain but for the zeros past the middle file's end.
    await qemuImg(['snapshot', '-c', 's', file('top.qcow2')]);
    const before = fileHash(file('top.qcow2'));
    const refused = await run('rebase', '-b', 'partial-other.qcow2', '-F', 'qcow2', file('top.qcow2'));
    expect(refused.code, refused.err).toBe(1);
    expect(refused.err).toMatch(/snapshot "s"/);
    expect(fileHash(file('top.qcow2'))).toBe(before);
    await qemuImg(['snapshot', '-d', 's', file('top.qcow2')]);

    const flattened = await run('rebase', '-b', '', file('top.qcow2'));
    expect(flattened.code, flattened.err).toBe(0);
    expectSameBytes(await guestOf(file('top.qcow2')), current, 'the overlay after the flatten');
    expect(await uncleanFiles([file('top.qcow2')])).toEqual([]);
  });
});

describe('a backing file another program holds', () => {
  it('commit is refused naming that file, and changes nothing', async () => {
    const { base, mid, top } = await makeChain(ours, { options: 'compat=1.1' });
    const before = [base, mid, top].map(fileHash);
    const holder = await holdWithQemuIo(mid);
    try {
      const result = await run('commit', top);
      expect(result.code).toBe(1);
      expect(result.err).toBe(`cowbell: The backing file ${mid} is in use by another program (a running VM or qemu-nbd); close it first\n`);
    } finally {
      await holder.release();
    }
    expect([base, mid, top].map(fileHash)).toEqual(before);
  });
});

describe('commit -b BASE names the base as qemu-img matches it', () => {
  // Was: BASE was resolved from the working directory only, so the name a header stores
  // (../d2/base.qcow2, relative to the overlay's folder) was "not in the backing chain".
  it('by the name a header stores, relative to the image above it, or by a path from the working directory', async () => {
    const root = ours.file('named-base');
    for (const folder of ['d1', 'd2']) fs.mkdirSync(path.join(root, folder), { recursive: true });
    const base = path.join(root, 'd2', 'base.qcow2');
    const mid = path.join(root, 'd1', 'mid.qcow2');
    const top = path.join(root, 'd1', 'top.qcow2');
    for (const name of ['../d2/base.qcow2', 'd2/base.qcow2', base]) {
      await qemuImg(['create', '-q', '-f', 'qcow2', base, '4M']);
      await qemuImg(['create', '-q', '-f', 'qcow2', '-b', '../d2/base.qcow2', '-F', 'qcow2', mid, '4M']);
      await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', top, '4M']);
      await runIo(top, ['write -P 0x42 0 64k']);
      // 'd2/base.qcow2' only resolves from the working directory: the root folder here.
      const cwd = process.cwd();
      process.chdir(root);
      try {
        expect(runSteps(commitSteps({ image: top, base: name })).base, name).toBe(`${path.join(root, 'd1')}/../d2/base.qcow2`);
      } finally {
        process.chdir(cwd);
      }
      expect((await rawOf(base))[0], name).toBe(0x42);
    }
  });
});

describe('a huge sparse chain', () => {
  it('commit (and commit -b through a middle file) finds data at the start, the middle and the very end of a 64 TiB disk, as qemu-img commit', { timeout: 120_000 }, async () => {
    const size = 2 ** 46;
    for (const deep of [false, true]) {
      const folders = deep ? [ours.file('deep'), theirs.file('deep')] : [ours.file('flat'), theirs.file('flat')];
      for (const folder of folders) {
        fs.mkdirSync(folder);
        await qemuImg(['create', '-q', '-f', 'qcow2', path.join(folder, 'base.qcow2'), String(size)]);
        await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', path.join(folder, 'mid.qcow2'), String(size)]);
        await qemuIo(path.join(folder, 'mid.qcow2'), [`write -P 0x31 ${2 ** 45} 64k`]);
        await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', path.join(folder, 'top.qcow2'), String(size)]);
        await qemuIo(path.join(folder, 'top.qcow2'), ['write -P 0x22 1M 64k', `write -P 0x23 ${size - 4096} 4k`]);
      }
      const [mine, qemus] = folders as [string, string];
      const base = (folder: string): string => path.join(folder, deep ? 'base.qcow2' : 'mid.qcow2');
      const args = (folder: string): string[] => ['commit', '-q', ...(deep ? ['-b', base(folder)] : []), path.join(folder, 'top.qcow2')];
      expect((await run(...args(mine))).code).toBe(0);
      await qemuImg(args(qemus));
      const compared = await qemuImg(['compare', '-q', base(mine), base(qemus)], { okCodes: [0, 1] });
      expect(compared.code, `${deep ? 'commit -b' : 'commit'}: the base as qemu-img left it`).toBe(0);
      for (const file of ['base.qcow2', 'mid.qcow2', 'top.qcow2']) expect((await qemuCheck(path.join(mine, file))).code, file).toBe(0);
    }
  });
});

describe('an overlay Cowbell cannot change', () => {
  it('commit with persistent dirty bitmaps on the overlay is refused before the base takes anything (a bigger overlay grew the base first)', async () => {
    const { base, mid, top } = await makeChain(ours, { options: 'compat=1.1' });
    await qemuImg(['resize', '-q', top, '96M']);
    await qemuImg(['bitmap', '--add', top, 'backup']);
    const before = [base, mid, top].map(fileHash);
    const result = await run('commit', top);
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/cannot be changed: it has persistent dirty bitmaps/);
    expect([base, mid, top].map(fileHash)).toEqual(before);
  });

  it('commit -d of an overlay a program is writing is refused without offering -U (a read forced for a change is no way out)', async () => {
    const { top } = await makeChain(ours, { options: 'compat=1.1' });
    const holder = await holdWithQemuIo(top);
    try {
      const result = await run('commit', '-d', top);
      expect(result.code).toBe(1);
      expect(result.err).toBe(`cowbell: ${top} is being written by another program (a running VM or qemu-nbd); shut it down first\n`);
    } finally {
      await holder.release();
    }
  });
});

describe('commit and rebase mixed with qemu-img’s own', () => {
  it('a sequence of cowbell and qemu-img commits, rebases and guest writes keeps every file clean and the guest data as the model', async () => {
    const { base, mid, top } = await makeChain(ours, { options: 'compat=1.1,cluster_size=4096' });
    const files = [base, mid, top];
    let model = await guestOf(top);
    const step = async (what: string, act: () => Promise<unknown>, changesGuest = false): Promise<void> => {
      await act();
      expect(await uncleanFiles(files), `after ${what}`).toEqual([]);
      if (changesGuest) model = await guestOf(top);
      else expectSameBytes(await guestOf(top), model, `the overlay after ${what}`);
    };
    await step('cowbell commit -d', async () => expect((await run('commit', '-d', '-q', top)).code).toBe(0));
    await step('qemu-img rebase onto base', () => qemuImg(['rebase', '-b', 'base.qcow2', '-F', 'qcow2', top]));
    await step('a guest write', () => runIo(top, ['write -P 0x44 1M 700k', 'write -z 2100k 8k']), true);
    await step('cowbell rebase back onto mid', async () => expect((await run('rebase', '-b', 'mid.qcow2', '-F', 'qcow2', top)).code).toBe(0));
    await step('qemu-img commit', () => qemuImg(['commit', '-q', top]));
    await step('cowbell commit of mid into base', async () => expect((await run('commit', '-q', mid)).code).toBe(0));
    await step('another guest write', () => runIo(top, ['write -P 0x45 3M 100k']), true);
    await step('cowbell commit -b base', async () => {
      expect((await run('commit', '-q', '-b', base, top)).code).toBe(0);
    });
    expectSameBytes(await guestOf(base), model, 'the base at the end');
  });
});

async function runIo(image: string, commands: string[]): Promise<void> {
  const { qemuIo } = await import('../../helpers/qemu.ts');
  await qemuIo(image, commands);
}

describe('progress and cancel', () => {
  /** A job context that reports progress and cancels at the second chunk. */
  function cancellingJob(): { job: JobContext; progress: number[] } {
    const progress: number[] = [];
    return {
      progress,
      job: {
        progress: (_stage, done) => progress.push(done),
        throwIfCancelled: () => {
          if (progress.length >= 1) throw new Qcow2Error('CANCELLED', 'cancelled');
        },
      },
    };
  }

  it('a cancelled commit stops between chunks: the overlay untouched and reading as before, every file clean', async () => {
    const { mid, top } = await makeChain(ours, { options: 'compat=1.1', size: 12 * 1024 * 1024, top: ['write -P 0x31 0 12M'] });
    const model = await guestOf(top);
    const topHash = fileHash(top);
    const { job, progress } = cancellingJob();
    expect(() => runSteps(commitSteps({ image: top }, job))).toThrow(expect.objectContaining({ code: 'CANCELLED' }));
    expect(progress).toEqual([4 * 1024 * 1024]);
    expect(fileHash(top)).toBe(topHash);
    expect(await uncleanFiles([mid, top])).toEqual([]);
    expectSameBytes(await guestOf(top), model, 'the overlay after a cancelled commit');
  });

  it('a cancelled rebase leaves the old backing file named and the guest data as before', async () => {
    const { top } = await makeChain(ours, { options: 'compat=1.1', size: 12 * 1024 * 1024, mid: ['write -P 0x21 0 12M'], top: [] });
    const model = await guestOf(top);
    const { job } = cancellingJob();
    expect(() => runSteps(rebaseSteps({ image: top, backingFile: 'base.qcow2' }, job))).toThrow(expect.objectContaining({ code: 'CANCELLED' }));
    expect((await qemuInfo(top))['backing-filename']).toBe('mid.qcow2');
    expect(await uncleanFiles([top])).toEqual([]);
    expectSameBytes(await guestOf(top), model, 'the overlay after a cancelled rebase');
  });
});
