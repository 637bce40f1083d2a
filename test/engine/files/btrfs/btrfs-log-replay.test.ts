/**
 * btrfs's log tree replayed in memory, checked against the kernel's own replay: volumes left by
 * the kernel with files fsync'd since the last commit (fixtures/make-btrfs-log-fixtures.py: new
 * and changed files, renames, deletes, hard links, an editor's rename-over, a log of several
 * levels, changes inside subvolumes), each read by Cowbell and compared entry by entry — kind,
 * size, time, permissions, target, bytes — with what the kernel listed once its mount had
 * replayed the log. The kernel's view of the log ignored ("committed") must differ: a state the
 * log changed nothing of would test nothing.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replayedFolder, type SubvolumeLog } from '../../../../src/shared/qcow2/files/btrfs/btrfs-log.ts';
import { openStateFiles } from '../../../../src/shared/qcow2/files/state-files.ts';
import { expectAsManifest, readManifests, type Manifest } from '../../../helpers/guest-manifest.ts';
import { qemuImg, tempDir, type TempDir } from '../../../helpers/qemu.ts';
import { runWalkCampaign } from '../../fuzz/walk-campaign.ts';
import { findBtrfsStructures, randomBtrfsDamage } from './btrfs-mutations.ts';

const FIXTURES = path.join(import.meta.dirname, 'fixtures');
const manifests = readManifests<Record<string, { replayed: Manifest; committed: Manifest }>>(path.join(FIXTURES, 'btrfs-log-manifests.json.gz'));
const STATES = Object.keys(manifests);
const CASES = Number(process.env.BTRFS_LOG_FUZZ_CASES ?? 40);
const BASE_SEED = Number(process.env.FUZZ_SEED ?? 31);
/** The owner a log tree block carries (BTRFS_TREE_LOG_OBJECTID, -6). */
const TREE_LOG_OWNER = 2n ** 64n - 6n;

let folder: TempDir;
let disk = '';

beforeAll(() => {
  folder = tempDir();
  disk = folder.file('btrfs-log.qcow2');
  fs.writeFileSync(disk, gunzipSync(fs.readFileSync(path.join(FIXTURES, 'btrfs-log.qcow2.gz'))));
});
afterAll(() => folder.cleanup());

describe('btrfs log tree replay', { timeout: 120_000 }, () => {
  it('has states whose logs change what is read (else they would test nothing)', () => {
    expect(STATES.length).toBeGreaterThanOrEqual(4);
    for (const state of STATES) expect(manifests[state]!.replayed, state).not.toEqual(manifests[state]!.committed);
  });

  it.each(STATES)('%s: every entry as the kernel showed it after replaying the log', async (state) => {
    // The fixture's last state is its current one.
    const files = await openStateFiles(disk, state === 'subvolumes' ? 'current' : state);
    try {
      expect(files.volumes[0]!.caution).toBeUndefined();
      await expectAsManifest(files, manifests[state]!.replayed);
    } finally {
      await files.close();
    }
  });
});

describe('a folder\'s entries replayed', () => {
  const inode = (objectId: bigint) => ({ objectId, type: 1, offset: 0n });
  const emptyLog = (): SubvolumeLog => ({ inodes: new Map(), extents: new Map(), entries: new Map(), ranges: new Map(), names: new Map() });

  it('take no ".." from a subvolume root folder\'s reference to itself (a logged root folder made /home/.. a folder, and a walk endless)', () => {
    const log = emptyLog();
    log.names.set(256n, [{ folder: 256n, index: 0n, name: '..' }]);
    log.names.set(300n, [{ folder: 256n, index: 7n, name: 'new.txt' }]);
    const committed = new Map([[2n, { name: 'old.txt', location: inode(299n) }]]);
    expect([...replayedFolder(committed, 256n, log).values()].map((entry) => entry.name).sort()).toEqual(['new.txt', 'old.txt']);
  });

  it('drop what a logged range no longer holds, keep what the log holds again, and give a logged inode only the names its references give it here', () => {
    const log = emptyLog();
    log.ranges.set(256n, [[2n, 4n]]);
    log.entries.set(256n, new Map([[3n, { name: 'kept', location: inode(301n) }], [5n, { name: 'renamed', location: inode(302n) }]]));
    log.names.set(303n, [{ folder: 256n, index: 9n, name: 'linked' }]);
    const committed = new Map([
      [2n, { name: 'deleted', location: inode(300n) }],
      [3n, { name: 'kept', location: inode(301n) }],
      [4n, { name: 'before-rename', location: inode(302n) }],
      [6n, { name: 'outside', location: inode(304n) }],
      [7n, { name: 'old-name', location: inode(303n) }],
    ]);
    expect(Object.fromEntries([...replayedFolder(committed, 256n, log).values()].map((entry) => [entry.name, entry.location.objectId]))).toEqual({ kept: 301n, renamed: 302n, outside: 304n, linked: 303n });
  });
});

describe('damaged log trees', () => {
  it('end in typed errors, or are read as committed with a caution, never anything else (seeded-random damage to the log\'s blocks, checksums made good)', async () => {
    const raw = folder.file('renames-deletes.raw');
    await qemuImg(['convert', '-O', 'raw', '-l', 'renames-deletes', disk, raw]);
    const pristine = new Uint8Array(fs.readFileSync(raw));
    const all = findBtrfsStructures(pristine);
    const view = new DataView(pristine.buffer, pristine.byteOffset, pristine.byteLength);
    const logNodes = all.nodes.filter((offset) => view.getBigUint64(offset + 0x58, true) === TREE_LOG_OWNER);
    expect(logNodes.length).toBeGreaterThan(0);
    const { pristineOutcome, findings } = await runWalkCampaign({
      folder: folder.file('fuzz'),
      target: 'btrfs-walk',
      pristine,
      cases: CASES,
      seed: BASE_SEED,
      damage: (random) => randomBtrfsDamage(pristine, { nodeBytes: all.nodeBytes, nodes: logNodes }, random),
    });
    expect(pristineOutcome).toBe('ok');
    expect(findings).toEqual([]);
  }, 600_000);
});
