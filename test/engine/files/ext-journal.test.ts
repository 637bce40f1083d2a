/**
 * An ext4 filesystem saved while in use (needs_recovery): its latest changes wait in the journal.
 * The fixtures are built without mounting: image A made by mke2fs -d, the same changes made by
 * debugfs on a copy (B), and the blocks that differ written into A's journal as transactions by
 * debugfs's journal_write — committed, uncommitted, with revoked blocks, with a block that begins
 * with the journal's magic (escaped), in the plain, 64-bit and checksum v3 formats. Cowbell's
 * reading must equal its reading of the same image after `e2fsck -fy` replayed the journal (the
 * kernel's mount does the same replay), and differ from A's where a committed change lies.
 * (The audit that found it reproduced it with a kernel-mounted filesystem copied mid-use: this is
 * what a snapshot of a running Linux guest holds.)
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import { diffStatesByName } from '../../../src/shared/qcow2/files/files-diff.ts';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { openStateFiles, type StateFiles } from '../../../src/shared/qcow2/files/state-files.ts';
import { readDiff } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { debugfs, makeExtImage, qcow2FromRaw, qemuSnapshot, writeRawIntoQcow2 } from '../../helpers/guest-filesystems.ts';
import { runTool, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';

vi.setConfig({ testTimeout: 60_000 });

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

const BLOCK = 1024;
/** Begins with jbd2's magic: journal_write must escape the block, and replay must give the magic back. */
const MAGIC_FIRST = Buffer.concat([Buffer.from([0xc0, 0x3b, 0x39, 0x98]), Buffer.alloc(BLOCK * 3 - 4, 0x5a)]);

/** Every entry of a state: kind, size, mtime, link target and a hash of the bytes. */
async function walk(files: StateFiles, path = '/'): Promise<Record<string, string>> {
  const found: Record<string, string> = {};
  for (const entry of await files.list(path)) {
    let facts = `${entry.kind} ${entry.size} ${entry.mtimeMs} ${entry.target ?? ''}`;
    if (entry.kind === 'file') {
      // The first 8 MiB (a damaged inode can claim terabytes).
      const bytes = new Uint8Array(Math.min(entry.size, 8 * 2 ** 20));
      for (let done = 0; done < bytes.length; ) {
        const count = await files.read(entry.path, bytes.subarray(done, Math.min(bytes.length, done + 65536)), done);
        if (count === 0) break;
        done += count;
      }
      facts += ` ${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}`;
    }
    found[entry.path] = facts;
    if (entry.kind === 'directory') Object.assign(found, await walk(files, entry.path));
  }
  return found;
}

async function walkImage(raw: string): Promise<Record<string, string>> {
  const qcow2 = `${raw}.qcow2`;
  fs.rmSync(qcow2, { force: true });
  await qcow2FromRaw(raw, qcow2);
  const files = await openStateFiles(qcow2, 'current');
  try {
    return await walk(files);
  } finally {
    await files.close();
  }
}

interface Variant {
  name: string;
  mkfs: string[];
  open: string;
}

const VARIANTS: Variant[] = [
  { name: 'a plain journal (32-bit tags)', mkfs: ['-O', '^64bit,^metadata_csum'], open: 'jo' },
  { name: 'a 64-bit journal', mkfs: ['-O', '64bit'], open: 'jo' },
  { name: 'a checksum v3 journal (tag3)', mkfs: ['-O', '64bit,metadata_csum'], open: 'jo -c -v 3' },
];

/** A (before), B (A changed by debugfs), and the blocks that differ with B's contents. */
async function makeChange(variant: Variant, tag: string): Promise<{ before: string; after: string; blocks: number[]; contents: string }> {
  const before = folder.file(`${tag}-A.ext4`);
  await makeExtImage(before, 16, { 'before.txt': 'before\n', 'keep/a.txt': 'stays the same\n', 'old.txt': 'to be removed\n' }, { mkfsArgs: ['-b', String(BLOCK), ...variant.mkfs] });
  const after = folder.file(`${tag}-B.ext4`);
  fs.copyFileSync(before, after);
  const changed = folder.file(`${tag}-changed.txt`);
  fs.writeFileSync(changed, 'changed!\n');
  const magic = folder.file(`${tag}-magic.bin`);
  fs.writeFileSync(magic, MAGIC_FIRST);
  const big = folder.file(`${tag}-big.bin`);
  fs.writeFileSync(big, Buffer.from(Array.from({ length: 40_000 }, (_, index) => (index * 7) % 251)));
  await debugfs(after, ['rm /before.txt', `write ${changed} before.txt`, 'rm /old.txt', 'mkdir newdir', `write ${big} newdir/big.bin`, `write ${magic} magic.bin`, 'symlink lnk /newdir/big.bin']);
  const a = fs.readFileSync(before);
  const b = fs.readFileSync(after);
  const blocks: number[] = [];
  for (let block = 0; block * BLOCK < a.length; block++) if (!a.subarray(block * BLOCK, (block + 1) * BLOCK).equals(b.subarray(block * BLOCK, (block + 1) * BLOCK))) blocks.push(block);
  const contents = folder.file(`${tag}-blocks.bin`);
  fs.writeFileSync(contents, Buffer.concat(blocks.map((block) => b.subarray(block * BLOCK, (block + 1) * BLOCK))));
  return { before, after, blocks, contents };
}

/** The image after e2fsck replayed its journal (and checked it). */
/** The caution Cowbell gives the image's volume, or undefined. */
async function cautionOf(raw: string): Promise<string | undefined> {
  const qcow2 = `${raw}.caution.qcow2`;
  fs.rmSync(qcow2, { force: true });
  await qcow2FromRaw(raw, qcow2);
  const files = await openStateFiles(qcow2, 'current');
  try {
    return files.volumes[0]?.caution;
  } finally {
    await files.close();
  }
}

async function replayedByE2fsck(image: string): Promise<string> {
  const copy = `${image}.e2fsck`;
  fs.copyFileSync(image, copy);
  await runTool('e2fsck', ['-fy', copy], { okCodes: [0, 1] });
  return copy;
}

async function needsRecovery(image: string): Promise<boolean> {
  return /needs_recovery/.test((await runTool('dumpe2fs', ['-h', image], { okCodes: [0] })).stdout);
}

describe.each(VARIANTS)('an ext4 filesystem saved in use, $name', (variant) => {
  const tag = variant.name.replace(/\W+/g, '-');
  let change: Awaited<ReturnType<typeof makeChange>>;
  beforeAll(async () => {
    change = await makeChange(variant, tag);
  });

  it('is read with its committed transaction replayed: as e2fsck replays it, not as its blocks lie', async () => {
    const journaled = folder.file(`${tag}-J.ext4`);
    fs.copyFileSync(change.before, journaled);
    await debugfs(journaled, [variant.open, `jw -b ${change.blocks.join(',')} ${change.contents}`, 'jc']);
    expect(await needsRecovery(journaled)).toBe(true);
    const seen = await walkImage(journaled);
    expect(seen).toEqual(await walkImage(await replayedByE2fsck(journaled)));
    // The replay is what B holds, and not what A's blocks hold.
    expect(seen).toEqual(await walkImage(change.after));
    expect(seen).not.toEqual(await walkImage(change.before));
    expect(Object.keys(seen)).toEqual(expect.arrayContaining(['/newdir/big.bin', '/magic.bin', '/lnk']));
    expect(Object.keys(seen)).not.toContain('/old.txt');
  });

  it('leaves out an uncommitted transaction and blocks a later transaction revoked', async () => {
    const journaled = folder.file(`${tag}-R.ext4`);
    fs.copyFileSync(change.before, journaled);
    // One committed transaction with every block; then one that revokes the last (a block of a new
    // file's data: the metadata stays whole), committed; then one never committed, over everything.
    const revoked = change.blocks.at(-1) as number;
    const garbage = folder.file(`${tag}-garbage.bin`);
    fs.writeFileSync(garbage, Buffer.alloc(change.blocks.length * BLOCK, 0xee));
    await debugfs(journaled, [variant.open, `jw -b ${change.blocks.join(',')} ${change.contents}`, `jw -r ${revoked} /dev/null`, `jw -b ${change.blocks.join(',')} -c ${garbage}`, 'jc']);
    const seen = await walkImage(journaled);
    expect(seen).toEqual(await walkImage(await replayedByE2fsck(journaled)));
    expect(Object.values(seen).join('\n')).not.toMatch(/undefined/);
    // The revoked block reads as it lies in A: not as B wrote it.
    expect(seen).not.toEqual(await walkImage(change.after));
  });

  it('files-diff between the snapshot before and the one saved in use finds the journal’s changes', async () => {
    const journaled = folder.file(`${tag}-D.ext4`);
    fs.copyFileSync(change.before, journaled);
    await debugfs(journaled, [variant.open, `jw -b ${change.blocks.join(',')} ${change.contents}`, 'jc']);
    const disk = folder.file(`${tag}-D.qcow2`);
    await qcow2FromRaw(change.before, disk);
    await qemuSnapshot(disk, 'before');
    await writeRawIntoQcow2(journaled, disk);
    await qemuSnapshot(disk, 'in use');
    const result = await diffStatesByName((state) => openStateFiles(disk, state), 'before', 'in use', () => readDiff(disk, 'before', 'in use').ranges);
    expect(result.differences.map((difference) => `${difference.change} ${difference.path}`).sort()).toEqual(
      ['added /lnk', 'added /magic.bin', 'added /newdir', 'added /newdir/big.bin', 'changed /before.txt', 'removed /old.txt'].sort(),
    );
  });
});

describe('a checksummed journal with a damaged block (journal checksum v3)', () => {
  /** The journal's blocks in log order, as [journal block index, volume block, block type or 0]. */
  async function journalLayout(image: string): Promise<{ index: number; home: number; type: number }[]> {
    const bytes = fs.readFileSync(image);
    const layout: { index: number; home: number; type: number }[] = [];
    for (let index = 0; index < 80; index++) {
      const home = Number((await runTool('debugfs', ['-R', `bmap <8> ${index}`, image])).stdout.trim());
      const magic = bytes.readUInt32BE(home * BLOCK) === 0xc03b3998;
      layout.push({ index, home, type: magic ? bytes.readUInt32BE(home * BLOCK + 4) : 0 });
    }
    return layout;
  }

  let change: Awaited<ReturnType<typeof makeChange>>;
  beforeAll(async () => {
    change = await makeChange(VARIANTS[2] as Variant, 'csum');
  });

  /** A copy of the image before the change, its journal holding the change as two committed transactions (half the blocks each). */
  async function twoTransactions(name: string): Promise<string> {
    const journaled = folder.file(`${name}.ext4`);
    fs.copyFileSync(change.before, journaled);
    const half = Math.floor(change.blocks.length / 2);
    const firstHalf = folder.file(`${name}-first.bin`);
    fs.writeFileSync(firstHalf, fs.readFileSync(change.contents).subarray(0, half * BLOCK));
    const secondHalf = folder.file(`${name}-second.bin`);
    fs.writeFileSync(secondHalf, fs.readFileSync(change.contents).subarray(half * BLOCK));
    await debugfs(journaled, ['jo -c -v 3', `jw -b ${change.blocks.slice(0, half).join(',')} ${firstHalf}`, `jw -b ${change.blocks.slice(half).join(',')} ${secondHalf}`, 'jc']);
    return journaled;
  }

  it('leaves out a transaction whose commit block fails its checksum, as e2fsck does ("replay was aborted")', async () => {
    const journaled = await twoTransactions('csum-commit');
    const commits = (await journalLayout(journaled)).filter((block) => block.type === 2);
    expect(commits).toHaveLength(2);
    const bytes = fs.readFileSync(journaled);
    // The second commit block's checksum (h_chksum[0], at 16).
    const checksumAt = (commits[1] as { home: number }).home * BLOCK + 16;
    bytes.writeUInt8(bytes.readUInt8(checksumAt) ^ 0xff, checksumAt);
    fs.writeFileSync(journaled, bytes);
    const seen = await walkImage(journaled);
    expect(seen).toEqual(await walkImage(await replayedByE2fsck(journaled)));
    // The first transaction was replayed, the second not: neither A nor B.
    expect(seen).not.toEqual(await walkImage(change.before));
    expect(seen).not.toEqual(await walkImage(change.after));
    // Linux refuses to mount it: the reading says what it left out.
    expect(await cautionOf(journaled)).toMatch(/transaction \d+ fails its checksum .* not replayed/);
  });

  it('ends the log quietly at a transaction whose descriptor fails its checksum and whose commit is older than the one before (stale: left by an earlier filesystem), as the kernel does', async () => {
    const journaled = await twoTransactions('csum-stale');
    const layout = await journalLayout(journaled);
    const descriptors = layout.filter((block) => block.type === 1);
    const commits = layout.filter((block) => block.type === 2);
    expect(descriptors).toHaveLength(2);
    const bytes = fs.readFileSync(journaled);
    // The second transaction's descriptor fails its checksum, and its commit time (h_commit_sec, at 0x30) is before the first's.
    const descriptorAt = (descriptors[1] as { home: number }).home * BLOCK;
    bytes.writeUInt8(bytes.readUInt8(descriptorAt + BLOCK - 1) ^ 0xff, descriptorAt + BLOCK - 1);
    bytes.writeBigUInt64BE(0n, (commits[1] as { home: number }).home * BLOCK + 0x30);
    fs.writeFileSync(journaled, bytes);
    expect(await walkImage(journaled)).toEqual(await walkImage(await replayedByE2fsck(journaled)));
    expect(await cautionOf(journaled)).toBeUndefined();
    // The same with its commit time after the first's: damaged, said.
    bytes.writeBigUInt64BE(bytes.readBigUInt64BE((commits[0] as { home: number }).home * BLOCK + 0x30) + 1n, (commits[1] as { home: number }).home * BLOCK + 0x30);
    fs.writeFileSync(journaled, bytes);
    expect(await cautionOf(journaled)).toMatch(/transaction \d+ fails its checksum/);
  });

  it('skips a data block that fails its tag\'s checksum, as e2fsck does, and replays the rest', async () => {
    const journaled = folder.file('csum-data.ext4');
    fs.copyFileSync(change.before, journaled);
    await debugfs(journaled, ['jo -c -v 3', `jw -b ${change.blocks.join(',')} ${change.contents}`, 'jc']);
    const layout = await journalLayout(journaled);
    const descriptor = layout.find((block) => block.type === 1);
    if (descriptor === undefined) throw new Error('no descriptor block');
    // The last data block of the transaction (a block of a new file's data).
    const lastData = layout[descriptor.index + change.blocks.length] as { home: number };
    const bytes = fs.readFileSync(journaled);
    bytes.writeUInt8(bytes.readUInt8(lastData.home * BLOCK + 100) ^ 0xff, lastData.home * BLOCK + 100);
    fs.writeFileSync(journaled, bytes);
    const seen = await walkImage(journaled);
    expect(seen).toEqual(await walkImage(await replayedByE2fsck(journaled)));
    expect(seen).not.toEqual(await walkImage(change.before));
    expect(await cautionOf(journaled)).toMatch(/a block of its journal's transaction \d+ fails its checksum/);
  });
});

describe('fast commits (ext4\'s fast_commit: records fsync wrote after the last full commit)', () => {
  it('are not replayed, and a volume whose journal holds them says so; one without any, or with records from before its last full commit, says nothing', async () => {
    const image = folder.file('fc.ext4');
    await makeExtImage(image, 16, { 'a.txt': 'a\n' }, { mkfsArgs: ['-b', String(BLOCK), '-O', 'fast_commit'] });
    const block = folder.file('fc-block.bin');
    fs.writeFileSync(block, Buffer.alloc(BLOCK, 0x78));
    await debugfs(image, ['jo -c -v 3', `jw -b 3000 ${block}`, 'jc']);
    // As the kernel leaves a journal it wrote fast commits to: the journal's FAST_COMMIT feature
    // (debugfs does not set it) and the area's first record, a HEAD tag, one block past the log.
    const bytes = fs.readFileSync(image);
    const journalSuper = Number((await runTool('debugfs', ['-R', 'bmap <8> 0', image])).stdout.trim()) * BLOCK;
    bytes.writeUInt32BE(bytes.readUInt32BE(journalSuper + 40) | 0x20, journalSuper + 40);
    const fastCommits = bytes.readUInt32BE(journalSuper + 0x54);
    expect(fastCommits).toBeGreaterThan(1);
    const areaStart = bytes.readUInt32BE(journalSuper + 16) - fastCommits + 1;
    const areaHome = Number((await runTool('debugfs', ['-R', `bmap <8> ${areaStart}`, image])).stdout.trim()) * BLOCK;
    const without = folder.file('fc-without.ext4');
    fs.writeFileSync(without, bytes);
    // A head naming the transaction after the journal's one full commit: records to replay.
    const afterLastCommit = bytes.readUInt32BE(journalSuper + 24) + 1;
    bytes.set([9, 0, 8, 0], areaHome);
    bytes.writeUInt32LE(afterLastCommit, areaHome + 8);
    const withRecords = folder.file('fc-with.ext4');
    fs.writeFileSync(withRecords, bytes);
    // A head naming the committed transaction: left from before that full commit, nothing to replay (the kernel ignores it).
    bytes.writeUInt32LE(afterLastCommit - 1, areaHome + 8);
    const stale = folder.file('fc-stale.ext4');
    fs.writeFileSync(stale, bytes);
    for (const [file, expected] of [[withRecords, /fast-commit records .* may be missing/], [without, undefined], [stale, undefined]] as const) {
      const files = await openStateFiles(file, 'current');
      try {
        if (expected === undefined) expect(files.volumes[0]?.caution).toBeUndefined();
        else expect(files.volumes[0]?.caution).toMatch(expected);
        // The full commit is replayed either way.
        expect((await files.list('/')).map((entry) => entry.name)).toContain('a.txt');
      } finally {
        await files.close();
      }
    }
  });
});

describe('a journal Cowbell cannot read', () => {
  it('says so for a journal kept on another device (nothing wrong read in its place)', async () => {
    const image = folder.file('external.ext4');
    await makeExtImage(image, 16, { 'a.txt': 'a\n' }, { mkfsArgs: ['-O', '^has_journal'] });
    // The superblock as a filesystem with an external journal in use has it: has_journal,
    // needs_recovery, no journal inode (debugfs's feature and set_super_value commands).
    await debugfs(image, ['feature has_journal needs_recovery', 'ssv journal_inum 0', 'ssv journal_dev 0x0801']);
    const disk = folder.file('external.qcow2');
    await qcow2FromRaw(image, disk);
    const files = await openStateFiles(disk, 'current');
    try {
      expect(files.volumes[0]?.problem).toMatch(/journal on another device/);
    } finally {
      await files.close();
    }
  });

  it('a damaged journal superblock is a damaged filesystem, not a crash', async () => {
    const change = await makeChange(VARIANTS[1] as Variant, 'damaged');
    const journaled = folder.file('damaged-J.ext4');
    fs.copyFileSync(change.before, journaled);
    await debugfs(journaled, ['jo', `jw -b ${change.blocks.join(',')} ${change.contents}`, 'jc']);
    // The journal inode's first block: its superblock; its start (s_start, at 28) made to point past its end.
    const facts = (await runTool('debugfs', ['-R', 'bmap <8> 0', journaled])).stdout.trim();
    const handle = fs.openSync(journaled, 'r+');
    try {
      fs.writeSync(handle, Buffer.from([0x7f, 0xff, 0xff, 0xff]), 0, 4, Number(facts) * BLOCK + 28);
    } finally {
      fs.closeSync(handle);
    }
    const disk = folder.file('damaged.qcow2');
    await qcow2FromRaw(journaled, disk);
    const files = await openStateFiles(disk, 'current');
    try {
      expect(files.volumes[0]?.problem).toMatch(/journal's log starts at block/);
    } finally {
      await files.close();
    }
  });
});

describe('a hostile journal', () => {
  it('gives a typed error or a reading, never a crash or a hang: 300 seeded damages to its first blocks', async () => {
    const change = await makeChange(VARIANTS[2] as Variant, 'hostile');
    const journaled = folder.file('hostile-J.ext4');
    fs.copyFileSync(change.before, journaled);
    await debugfs(journaled, ['jo -c -v 3', `jw -b ${change.blocks.slice(0, 20).join(',')} ${change.contents}`, `jw -r ${change.blocks[3] ?? 0} /dev/null`, `jw -b ${change.blocks.slice(20).join(',')} ${change.contents}`, 'jc']);
    // Where the journal's first 80 blocks lie (its superblock, descriptors, revoke and commit blocks, data).
    // One debugfs run answers all 80 (it echoes each command, then its answer).
    const mapping = await debugfs(journaled, Array.from({ length: 80 }, (_, index) => `bmap <8> ${index}`));
    const homes = mapping
      .split('\n')
      .filter((line) => /^\d+$/.test(line.trim()))
      .map(Number);
    expect(homes).toHaveLength(80);
    const pristine = fs.readFileSync(journaled);
    const random = new SeededRandom(2712);
    const outcomes = new Map<string, number>();
    const damaged = folder.file('hostile-case.ext4');
    fs.copyFileSync(journaled, damaged);
    const damagedHandle = fs.openSync(damaged, 'r+');
    onTestFinished(() => fs.closeSync(damagedHandle));
    // Each round damages a few words of the pristine image and puts them back afterwards: rewriting
    // the whole 16 MiB image every round made the test's time the disk's (over a minute under load).
    const putBack = (word: number): void => void fs.writeSync(damagedHandle, pristine, word, 4, word);
    for (let round = 0; round < 300; round++) {
      const words: number[] = [];
      for (let change = random.int(1, 4); change > 0; change--) {
        const home = homes[random.int(0, homes.length - 1)] as number;
        // Mostly the header and tag fields of a block, where a number decides what is read next.
        const at = home * BLOCK + (random.int(0, 3) === 0 ? random.int(0, BLOCK - 4) : random.int(0, 63));
        const values = [0, 0xffffffff, 0xc03b3998, random.int(0, 0xffffffff), random.int(0, 4096), random.int(1, 5)];
        const word = Buffer.alloc(4);
        word.writeUInt32BE(values[random.int(0, values.length - 1)] as number);
        words.push(at - (at % 4));
        fs.writeSync(damagedHandle, word, 0, 4, at - (at % 4));
      }
      let outcome = 'ok';
      try {
        const files = await openStateFiles(damaged, 'current');
        try {
          const problem = files.volumes[0]?.problem;
          if (problem === undefined) await walk(files);
          else outcome = 'volume problem';
        } finally {
          await files.close();
        }
      } catch (error) {
        if (!(error instanceof Qcow2Error)) throw new Error(`round ${round}: ${String(error)}`, { cause: error });
        outcome = error.code;
      }
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      for (const word of words) putBack(word);
    }
    expect(fs.readFileSync(damaged).equals(pristine), 'every round put its damage back').toBe(true);
    // Some damage is refused, some read (a damaged data block is the guest's business).
    expect(outcomes.get('ok') ?? 0).toBeGreaterThan(0);
    // INVALID_ARGUMENT: a replayed folder block holding a name with NUL, which no path can name.
    expect([...outcomes.keys()].filter((key) => !['ok', 'volume problem', 'FILESYSTEM_CORRUPT', 'INVALID_ARGUMENT', 'NOT_FOUND', 'NOT_A_DIRECTORY', 'IS_A_DIRECTORY', 'NOT_A_FILE'].includes(key))).toEqual([]);
  });
});
