/**
 * A replayed log (XFS's log, ext's journal, btrfs's log tree) is made once per state and kept for
 * the next job that opens the same state in the thread (the app opens a state afresh for every
 * folder it lists): what is read is the same either way, and any change to a file the state reads
 * makes it replayed afresh.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { forgetReplays, keptReplays, rememberedReplay } from '../../../src/shared/qcow2/files/replay-memo.ts';
import { stateIdentity } from '../../../src/shared/qcow2/files/state-identity.ts';
import { openStateFiles, type StateFiles } from '../../../src/shared/qcow2/files/state-files.ts';
import { openGuestReader } from '../../../src/shared/qcow2/image/image-format.ts';
import { findSnapshot, Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { debugfs, makeExtImage, qcow2FromRaw } from '../../helpers/guest-filesystems.ts';
import { qemuImg, tempDir, type TempDir } from '../../helpers/qemu.ts';

const FILES = path.join(import.meta.dirname);
const XFS_STATES = ['v5', 'big-records', 'wrapped', 'reflink'];
/** A file's times are trusted to tell a change only this long after it (state-identity.ts). */
const SETTLE_MS = 2100;

let folder: TempDir;
let xfs: string;
let btrfs: string;
let ext: string;

const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, SETTLE_MS));

beforeAll(async () => {
  folder = tempDir();
  xfs = folder.file('xfs-log.qcow2');
  fs.writeFileSync(xfs, gunzipSync(fs.readFileSync(path.join(FILES, 'xfs', 'fixtures', 'xfs-log.qcow2.gz'))));
  btrfs = folder.file('btrfs.qcow2');
  fs.writeFileSync(btrfs, gunzipSync(fs.readFileSync(path.join(FILES, 'btrfs', 'fixtures', 'btrfs.qcow2.gz'))));
  // An ext4 whose journal holds a committed change to /notes.txt's block (debugfs writes it as a crash leaves it).
  const raw = folder.file('ext.raw');
  await makeExtImage(raw, 16, { 'notes.txt': 'as written before\n'.repeat(200) }, { mkfsArgs: ['-O', '64bit,metadata_csum', '-b', '1024'] });
  const first = /^(\d+)/m.exec(await debugfs(raw, ['blocks /notes.txt']))?.[1];
  if (first === undefined) throw new Error('debugfs gave no block of /notes.txt');
  const contents = folder.file('journaled');
  fs.writeFileSync(contents, Buffer.alloc(1024, 'j'));
  await debugfs(raw, ['jo -c -v 3', `jw -b ${first} ${contents}`, 'jc']);
  ext = folder.file('ext.qcow2');
  await qcow2FromRaw(raw, ext);
  await settle();
}, 60_000);
afterAll(() => folder.cleanup());
beforeEach(() => forgetReplays());

/** Every entry of a state with a hash of its first bytes. */
async function walk(files: StateFiles, at = '/'): Promise<Record<string, string>> {
  const found: Record<string, string> = {};
  for (const entry of await files.list(at)) {
    let facts = `${entry.kind} ${entry.size} ${entry.mtimeMs} ${entry.damaged ?? ''}`;
    if (entry.kind === 'file') {
      const bytes = new Uint8Array(Math.min(entry.size, 65536));
      const count = await files.read(entry.path, bytes, 0);
      facts += ` ${createHash('sha256').update(bytes.subarray(0, count)).digest('hex').slice(0, 16)}`;
    }
    found[entry.path] = facts;
    if (entry.kind === 'directory') Object.assign(found, await walk(files, entry.path));
  }
  return found;
}

async function walkState(image: string, state: string): Promise<{ entries: Record<string, string>; caution: (string | undefined)[] }> {
  const files = await openStateFiles(image, state);
  try {
    return { entries: await walk(files), caution: files.volumes.map((volume) => volume.caution) };
  } finally {
    await files.close();
  }
}

describe('a replayed log kept for the next job', { timeout: 60_000 }, () => {
  it('XFS: each dirty snapshot is replayed once, and the second job reads what the first read', async () => {
    const firsts = [];
    for (const [index, state] of XFS_STATES.entries()) {
      // Each snapshot its own replay (none taken for another's).
      const first = await walkState(xfs, state);
      expect(keptReplays()).toMatchObject({ made: index + 1, reused: index });
      const again = await walkState(xfs, state);
      expect(keptReplays()).toMatchObject({ made: index + 1, reused: index + 1 });
      expect(again).toEqual(first);
      expect(Object.keys(first.entries).length).toBeGreaterThan(3);
      firsts.push(first);
    }
    // And what a fresh replay reads, as the first job read it.
    forgetReplays();
    for (const [index, state] of XFS_STATES.entries()) expect(await walkState(xfs, state)).toEqual(firsts[index]);
  });

  it('ext: a journal replayed once; the replayed block is read the same the second time', async () => {
    const first = await walkState(ext, 'current');
    expect(first.entries['/notes.txt']).toBeDefined();
    const again = await walkState(ext, 'current');
    expect(keptReplays()).toMatchObject({ made: 1, reused: 1, count: 1 });
    expect(again).toEqual(first);
  });

  it('btrfs: a log tree read once; the file only the log holds is there the second time too', async () => {
    const first = await walkState(btrfs, 'current');
    expect(first.entries['/root/fsynced.txt']).toBeDefined();
    const again = await walkState(btrfs, 'current');
    expect(keptReplays()).toMatchObject({ made: 1, reused: 1 });
    expect(again).toEqual(first);
  });

  it('a change to the image replays afresh: none kept while its times are fresh, a new identity after', async () => {
    const copy = folder.file('xfs-changed.qcow2');
    fs.copyFileSync(xfs, copy);
    await settle();
    await walkState(copy, 'v5');
    await walkState(copy, 'v5');
    expect(keptReplays()).toMatchObject({ made: 1, reused: 1, count: 1 });
    await qemuImg(['snapshot', '-c', 'later', copy]);
    // Just changed: its times cannot tell a change in the same clock tick, so nothing is kept or reused.
    await walkState(copy, 'v5');
    expect(keptReplays()).toMatchObject({ made: 2, reused: 1, count: 1 });
    await settle();
    await walkState(copy, 'v5');
    await walkState(copy, 'v5');
    expect(keptReplays()).toMatchObject({ made: 3, reused: 2, count: 2 });
  });
});

describe('stateIdentity', () => {
  const farFuture = BigInt(Date.now() + 3_600_000) * 1_000_000n;

  it('names the state and every file it reads, and changes with any of them', async () => {
    const base = folder.file('base.raw');
    fs.writeFileSync(base, Buffer.alloc(1 << 20, 1));
    const overlay = folder.file('overlay.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', overlay]);
    await qemuImg(['snapshot', '-c', 'one', overlay]);
    await qemuImg(['snapshot', '-c', 'two', overlay]);
    const identities = (): (string | null)[] => {
      const reader = openGuestReader(overlay);
      try {
        if (!(reader instanceof Qcow2Image)) throw new Error('not qcow2');
        return [stateIdentity(reader, null, farFuture), stateIdentity(reader, findSnapshot(reader, 'one'), farFuture), stateIdentity(reader, findSnapshot(reader, 'two'), farFuture)];
      } finally {
        reader.close();
      }
    };
    const before = identities();
    expect(new Set(before).size).toBe(3);
    expect(before.every((identity) => identity !== null)).toBe(true);
    expect(identities()).toEqual(before);
    // The backing file changed under the overlay: every state reads other bytes.
    fs.writeFileSync(base, Buffer.alloc(1 << 20, 2));
    const after = identities();
    for (const [index, identity] of after.entries()) expect(identity).not.toBe(before[index]);
  });

  it('gives none for a file changed within the last two seconds, or a backing file that could not be opened', async () => {
    const image = folder.file('fresh.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '1M']);
    const reader = openGuestReader(image);
    try {
      expect(stateIdentity(reader, null)).toBeNull();
      expect(stateIdentity(reader, null, farFuture)).not.toBeNull();
    } finally {
      reader.close();
    }
    const orphan = folder.file('orphan.qcow2');
    await qemuImg(['create', '-q', '-u', '-f', 'qcow2', '-b', folder.file('gone.raw'), '-F', 'raw', orphan, '1M']);
    const withoutBacking = Qcow2Image.open(orphan, { readOnly: true, openBacking: false });
    try {
      expect(stateIdentity(withoutBacking, null, farFuture)).toBeNull();
    } finally {
      withoutBacking.close();
    }
  });
});

describe('rememberedReplay', () => {
  const MiB = 1024 * 1024;
  const context = (identity: string | null) => ({ identity });

  it('keeps nothing without an identity, and a failure never', async () => {
    await rememberedReplay(context(null), 'test', async () => 1, () => 8);
    await expect(rememberedReplay(context('a'), 'test', () => Promise.reject(new Error('no')), () => 8)).rejects.toThrow('no');
    expect(keptReplays()).toMatchObject({ count: 0, made: 1 });
    expect(await rememberedReplay(context('a'), 'test', async () => 2, () => 8)).toBe(2);
    expect(await rememberedReplay(context('a'), 'test', async () => 3, () => 8)).toBe(2);
    // Another kind of replay of the same bytes is another value.
    expect(await rememberedReplay(context('a'), 'other', async () => 4, () => 8)).toBe(4);
  });

  it('stays within its budget, dropping the least recently used first, and keeps no single value too large', async () => {
    for (const name of ['a', 'b']) await rememberedReplay(context(name), 'test', async () => name, () => 40 * MiB);
    // 'a' used again: 'b' is now the oldest.
    await rememberedReplay(context('a'), 'test', async () => 'made again', () => 40 * MiB);
    await rememberedReplay(context('c'), 'test', async () => 'c', () => 40 * MiB);
    expect(keptReplays()).toMatchObject({ count: 2, bytes: 80 * MiB });
    expect(await rememberedReplay(context('a'), 'test', async () => 'made again', () => 40 * MiB)).toBe('a');
    expect(await rememberedReplay(context('b'), 'test', async () => 'b again', () => 40 * MiB)).toBe('b again');
    forgetReplays();
    await rememberedReplay(context('huge'), 'test', async () => 'huge', () => 64 * MiB);
    expect(keptReplays()).toMatchObject({ count: 0, bytes: 0 });
  });

  it('counts a value two jobs made at once only once', async () => {
    let release = (): void => {};
    const slow = new Promise<void>((resolve) => (release = resolve));
    const first = rememberedReplay(context('same'), 'test', async () => (await slow, 'first'), () => MiB);
    const second = rememberedReplay(context('same'), 'test', async () => 'second', () => MiB);
    expect(await second).toBe('second');
    release();
    expect(await first).toBe('first');
    expect(keptReplays()).toMatchObject({ count: 1, bytes: MiB });
  });
});
