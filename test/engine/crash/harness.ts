/**
 * The crash-test table: every mutating operation, one entry each. An entry says how to build the
 * image it starts from (with the real qemu tools, so the engine also meets QEMU's own layouts),
 * what the operation does, and its crash contract (guest-state.ts). runner.ts replays each
 * operation on a FaultFile and checks every power cut it allows. A new operation (compress,
 * encrypt, …) joins by adding one entry here.
 */
import * as path from 'node:path';
import { checkImage } from '../../../src/shared/qcow2/check/check.ts';
import { convertImage } from '../../../src/shared/qcow2/convert/convert.ts';
import { createImage } from '../../../src/shared/qcow2/image/create.ts';
import { rewriteImage } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import type { OpenImageOptions, Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { resizeImage } from '../../../src/shared/qcow2/snapshots/resize.ts';
import { applySnapshot, createSnapshot, deleteSnapshot, renameSnapshot, setSnapshotNote } from '../../../src/shared/qcow2/snapshots/snapshots.ts';
import type { FaultFileSystem } from '../../helpers/fault-file.ts';
import { createLuksImage, qemuIoEncrypted, rawOfEncrypted, snapshotEncrypted } from '../../helpers/encrypted-images.ts';
import { firstDifference, qemuImg, qemuInfo, rawOf, type TempDir } from '../../helpers/qemu.ts';
import { saveVm } from '../../helpers/qemu-system.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';
import type { Contract } from './guest-state.ts';
import {
  buildImage,
  compressedImage,
  crashInTheMiddle,
  imageOverBacking,
  KiB,
  qemuMadeImage,
  spreadSnapshots,
  twoSnapshots,
  V2_512,
  V3_4K,
  V3_512,
  withSnapshot,
  type Step,
} from './setups.ts';

/** The LUKS-encrypted cases' passphrase. */
const LUKS_PASSPHRASE = 'crash-moo';

export interface ImageOperation {
  name: string;
  contract: Contract;
  /** Builds the image the operation starts from at `imagePath`. */
  setup(imagePath: string): Promise<void>;
  /** The operation on the open image; the runner flushes and closes it afterwards, as every caller does. */
  run(image: Qcow2Image): void;
  /** False for operations that must leave the guest's view as it was (repair); the runner checks either way, so no case is vacuous. */
  changesGuestState?: boolean;
  /** How the runner opens the image for `run` (default: writable). */
  open?: OpenImageOptions;
  /** An encrypted image's passphrase: the runner opens it, reads every state and has qemu-img check and read it with this. */
  passphrase?: string;
  /** Run only by `npm run crash` (slower variants of what the quick table already covers). */
  fullOnly?: boolean;
}

function repairCase(name: string, options: string, steps: Step[], crashed: (image: Qcow2Image) => void, mode: 'leaks' | 'all'): ImageOperation {
  return {
    name,
    contract: 'all-or-nothing',
    changesGuestState: false,
    open: { openBacking: false, allowDirtyForRepair: true },
    setup: async (imagePath) => {
      await buildImage(imagePath, options, 128 * KiB, steps);
      crashInTheMiddle(imagePath, crashed);
    },
    run: (image) => void checkImage(image, { repair: mode }),
  };
}

/** Guest bytes that differ per call (so before and after never agree by accident). */
function pattern(seed: number, length: number): Uint8Array {
  return new SeededRandom(seed).bytes(length);
}

function guestWrite(name: string, options: string, size: number, steps: Step[], offset: number, length: number, extra: Partial<ImageOperation> = {}): ImageOperation {
  return {
    name,
    contract: 'per-cluster',
    setup: (imagePath) => buildImage(imagePath, options, size, steps),
    run: (image) => image.write(pattern(offset + length, length), offset),
    ...extra,
  };
}

/**
 * 64-bit refcounts with 512-byte clusters: a refcount block covers 32 KiB and the first refcount
 * table 2 MiB of file, so a write that takes the file past 2 MiB needs new blocks and a bigger
 * table, which moves. (1-bit refcounts would do the opposite: one block covers 2 MiB.)
 */
const refcountGrowth: ImageOperation = {
  name: 'guest write: new refcount blocks and a grown (moved) refcount table',
  contract: 'per-cluster',
  setup: (imagePath) => buildImage(imagePath, 'compat=1.1,cluster_size=512,refcount_bits=64', 2100 * KiB, [{ io: 'write -P 0x11 0 1960k' }]),
  run: (image) => {
    const tableBefore = image.refcounts.tableOffset;
    const clustersLeft = image.refcounts.coveredClusters() - Math.ceil(image.file.size() / image.clusterBytes);
    image.write(pattern(7, (clustersLeft + 4) * image.clusterBytes), 1960 * KiB);
    image.flush();
    if (image.refcounts.tableOffset === tableBefore) throw new Error('the refcount table did not grow; the case tests nothing');
  },
};

/**
 * One cluster at a time into 24 existing L2 tables, round robin: 72 new clusters, so a new
 * refcount block (64-bit refcounts: one per 64 clusters) appears while tables are evicted.
 */
const scatteredWrites: ImageOperation = {
  name: 'guest writes: one cluster at a time over 24 existing L2 tables, new refcount blocks on the way',
  contract: 'per-cluster',
  setup: (imagePath) => buildImage(imagePath, 'compat=1.1,cluster_size=512,refcount_bits=64', 1024 * KiB, Array.from({ length: 24 }, (_, table) => ({ io: `write -P ${table + 1} ${table * 32 * KiB} 512` }))),
  run: (image) => {
    for (let write = 0; write < 72; write++) image.write(pattern(write, 512), (write % 24) * 32 * KiB + 512 * (1 + Math.floor(write / 24)));
  },
};

/**
 * The same operation with the smallest metadata caches (four tables each), so that dirty L2
 * tables and refcount blocks are evicted — written — in the middle of the operation, not only
 * by its flush: the ordering must hold there too.
 */
function tinyCaches(operation: ImageOperation): ImageOperation {
  return { ...operation, name: `${operation.name}, with caches small enough to evict mid-operation`, open: { ...operation.open, cacheBytes: { l2Tables: 0, refcountBlocks: 0 } } };
}

export const imageOperations: ImageOperation[] = [
  guestWrite('guest write: allocating clusters and a new L2 table (partial clusters at both ends)', V3_512, 128 * KiB, [{ io: 'write -P 0x11 0 8k' }], 31 * KiB + 100, 3 * KiB),
  guestWrite('guest write: in place over clusters with refcount 1', V3_512, 128 * KiB, [{ io: 'write -P 0x11 0 16k' }], 1000, 2500),
  guestWrite('guest write: copy-on-write into shared clusters and a shared L2 table', V3_512, 128 * KiB, withSnapshot, 1000, 6 * KiB),
  guestWrite('guest write: v2 image (compat=0.10)', V2_512, 128 * KiB, withSnapshot, 20 * KiB + 7, 5 * KiB),
  guestWrite('guest write: 1-bit refcounts', 'compat=1.1,cluster_size=512,refcount_bits=1', 128 * KiB, [{ io: 'write -P 0x11 0 8k' }], 6 * KiB, 4 * KiB),
  guestWrite('guest write: extended L2 (subclusters), in place and allocating', 'compat=1.1,cluster_size=16384,extended_l2=on', 512 * KiB, [{ io: 'write -P 0x11 0 20k' }, { io: 'write -P 0x12 100k 1k' }], 12 * KiB + 512, 100 * KiB),
  {
    name: 'zero write and discard: extended L2 (subcluster zero bits, whole clusters released)',
    contract: 'per-cluster',
    setup: (imagePath) => buildImage(imagePath, 'compat=1.1,cluster_size=16384,extended_l2=on', 512 * KiB, [{ io: 'write -P 0x11 0 100k' }, { snapshot: 's1' }, { io: 'write -P 0x12 40k 4k' }]),
    run: (image) => {
      image.writeZeroes(10 * KiB + 512, 30 * KiB);
      image.discard(48 * KiB, 40 * KiB);
    },
  },
  refcountGrowth,
  tinyCaches(scatteredWrites),
  tinyCaches({
    name: 'snapshot create over 20 L2 tables',
    contract: 'all-or-nothing',
    setup: (imagePath) => buildImage(imagePath, V3_512, 640 * KiB, spreadSnapshots),
    run: (image) => void createSnapshot(image, { name: 'new', now: new Date(1_700_000_000_000) }),
  }),
  tinyCaches({
    name: 'snapshot apply over 20 L2 tables',
    contract: 'all-or-nothing',
    setup: (imagePath) => buildImage(imagePath, V3_512, 640 * KiB, spreadSnapshots),
    run: (image) => applySnapshot(image, 's1'),
  }),
  tinyCaches({
    name: 'snapshot delete over 20 L2 tables',
    contract: 'all-or-nothing',
    setup: (imagePath) => buildImage(imagePath, V3_512, 640 * KiB, spreadSnapshots),
    run: (image) => deleteSnapshot(image, 's2'),
  }),
  {
    name: 'zero write: zero flags, partial clusters written as zeros (v3)',
    contract: 'per-cluster',
    setup: (imagePath) => buildImage(imagePath, V3_512, 128 * KiB, [{ io: 'write -P 0x11 0 16k' }]),
    run: (image) => image.writeZeroes(1000, 6000),
  },
  {
    name: 'zero write: deallocation on v2, over shared clusters',
    contract: 'per-cluster',
    setup: (imagePath) => buildImage(imagePath, V2_512, 128 * KiB, withSnapshot),
    run: (image) => image.writeZeroes(2 * KiB, 5 * KiB),
  },
  {
    name: 'zero write: shared clusters (v3)',
    contract: 'per-cluster',
    setup: (imagePath) => buildImage(imagePath, V3_512, 128 * KiB, withSnapshot),
    run: (image) => image.writeZeroes(0, 10 * KiB),
  },
  {
    name: 'discard: whole clusters, partly shared',
    contract: 'per-cluster',
    setup: (imagePath) => buildImage(imagePath, V3_512, 128 * KiB, withSnapshot),
    run: (image) => image.discard(300, 12 * KiB),
  },
  {
    name: 'snapshot create (v3, after an earlier snapshot)',
    contract: 'all-or-nothing',
    setup: (imagePath) => buildImage(imagePath, V3_512, 128 * KiB, withSnapshot),
    run: (image) => void createSnapshot(image, { name: 'new', now: new Date(1_700_000_000_000) }),
  },
  {
    name: 'snapshot create (v2, no dirty bit to lean on)',
    contract: 'all-or-nothing',
    setup: (imagePath) => buildImage(imagePath, V2_512, 128 * KiB, withSnapshot),
    run: (image) => void createSnapshot(image, { name: 'new', now: new Date(1_700_000_000_000) }),
  },
  {
    name: 'snapshot apply',
    contract: 'all-or-nothing',
    setup: (imagePath) => buildImage(imagePath, V3_512, 128 * KiB, twoSnapshots),
    run: (image) => applySnapshot(image, 's1'),
  },
  {
    // qemu-img snapshot -d walks the deleted snapshot's tables and sets COPIED wherever a
    // refcount fell to 1, so s1's own L2 tables carry COPIED flags; apply must not share them as they are.
    name: "snapshot apply: the snapshot's L2 tables carry COPIED flags (left by qemu-img snapshot -d)",
    contract: 'all-or-nothing',
    setup: (imagePath) => buildImage(imagePath, V3_512, 128 * KiB, [{ io: 'write -P 0x31 0 40k' }, { snapshot: 's1' }, { snapshot: 's2' }, { io: 'write -P 0x32 0 40k' }, { deleteSnapshot: 's2' }]),
    run: (image) => applySnapshot(image, 's1'),
  },
  {
    name: 'snapshot apply (v2)',
    contract: 'all-or-nothing',
    setup: (imagePath) => buildImage(imagePath, V2_512, 128 * KiB, twoSnapshots),
    run: (image) => applySnapshot(image, 's2'),
  },
  {
    name: 'snapshot delete (clusters freed, COPIED flags restored)',
    contract: 'all-or-nothing',
    setup: (imagePath) => buildImage(imagePath, V3_512, 128 * KiB, twoSnapshots),
    run: (image) => deleteSnapshot(image, 's2'),
  },
  {
    name: 'snapshot delete (v2, the only snapshot)',
    contract: 'all-or-nothing',
    setup: (imagePath) => buildImage(imagePath, V2_512, 128 * KiB, withSnapshot),
    run: (image) => deleteSnapshot(image, 's1'),
  },
  {
    name: 'snapshot rename',
    contract: 'all-or-nothing',
    setup: (imagePath) => buildImage(imagePath, V3_512, 128 * KiB, twoSnapshots),
    run: (image) => renameSnapshot(image, 's1', 'first'),
  },
  {
    name: 'snapshot note (a new snapshot table, like rename)',
    contract: 'all-or-nothing',
    setup: (imagePath) => buildImage(imagePath, V3_512, 128 * KiB, twoSnapshots),
    run: (image) => setSnapshotNote(image, 's1', 'before the upgrade — ✓'),
  },
  {
    // 3 MiB needs 96 L1 entries, more than one 512-byte cluster holds: the L1 moves, and Cowbell's current-parent mark with it.
    name: 'resize: grow past the L1 table\'s cluster (a new L1, the header switched in one write)',
    contract: 'all-or-nothing',
    setup: (imagePath) => buildImage(imagePath, V3_512, 128 * KiB, twoSnapshots),
    run: (image) => void resizeImage(image, 3 * 1024 * KiB),
  },
  {
    name: 'resize: grow from a size that is not a whole cluster (the old tail zeroed first), v2',
    contract: 'all-or-nothing',
    setup: async (imagePath) => {
      await buildImage(imagePath, 'compat=0.10,cluster_size=4096', 256 * KiB, [{ io: 'write -P 0x61 0 256k' }]);
      await qemuImg(['resize', '-q', '--shrink', imagePath, String(130 * KiB + 512)]);
    },
    run: (image) => void resizeImage(image, 512 * KiB),
  },
  {
    // QEMU's apply copies the snapshot's whole L1: the active tables point at its VM state past the end, which the grow drops first.
    name: 'resize: grow a disk whose current state was loaded from a snapshot with VM state (those pointers dropped first)',
    contract: 'all-or-nothing',
    setup: async (imagePath) => {
      await buildImage(imagePath, V3_512, 128 * KiB, [{ io: 'write -P 0x5a 0 64k' }]);
      await saveVm(imagePath, 'vm');
      await qemuImg(['snapshot', '-a', 'vm', imagePath]);
    },
    run: (image) => void resizeImage(image, 3 * 1024 * KiB),
  },
  tinyCaches({
    name: 'resize: shrink discarding data past the end, L2 tables shared with snapshots copied',
    contract: 'all-or-nothing',
    setup: (imagePath) => buildImage(imagePath, V3_512, 640 * KiB, spreadSnapshots),
    run: (image) => void resizeImage(image, 200 * KiB + 512, { shrink: true, discardData: true }),
  }),
  {
    name: 'resize: shrink to inside a cluster shared with a snapshot (the cut cluster copied, its part past the end zeroed)',
    contract: 'all-or-nothing',
    setup: (imagePath) => buildImage(imagePath, V3_4K, 256 * KiB, [{ io: 'write -P 0x71 0 256k' }, { snapshot: 's1' }, { io: 'write -P 0x72 120k 16k' }]),
    run: (image) => void resizeImage(image, 130 * KiB + 512, { shrink: true, discardData: true }),
  },
  {
    name: 'resize: grow an overlay over its larger backing file (a larger L1 alone, zero clusters past the old end, then the size)',
    contract: 'all-or-nothing',
    setup: async (imagePath) => {
      const backingPath = path.join(path.dirname(imagePath), 'large-backing.qcow2');
      await buildImage(backingPath, V3_512, 3 * 1024 * KiB, [{ io: 'write -P 0x55 0 3m' }]);
      await buildImage(imagePath, 'compat=1.1,cluster_size=512,backing_file=large-backing.qcow2,backing_fmt=qcow2', 128 * KiB + 512, [{ io: 'write -P 0x56 8k 4k' }, { snapshot: 's1' }]);
    },
    run: (image) => void resizeImage(image, 2560 * KiB),
  },
  {
    name: 'resize: shrink without snapshots (the clusters past the end freed, the file cut back after them)',
    contract: 'all-or-nothing',
    // 96 KiB: one 16-bit refcount block (256 clusters) covers the whole file, so nothing sits after the data dropped.
    setup: (imagePath) => buildImage(imagePath, V2_512, 96 * KiB, [{ io: 'write -P 0x73 0 40k' }, { io: 'write -P 0x74 40k 56k' }]),
    run: (image) => {
      const fileBefore = image.file.size();
      resizeImage(image, 40 * KiB, { shrink: true, discardData: true });
      if (image.file.size() >= fileBefore) throw new Error('the file was not cut back; the case tests nothing');
    },
  },
  {
    // The old tail cluster's part past the old end is zeroed as encrypted data (LUKS sectors are numbered by host offset).
    name: 'resize: grow a LUKS-encrypted disk from a size that is not a whole cluster, with a snapshot',
    contract: 'all-or-nothing',
    passphrase: LUKS_PASSPHRASE,
    setup: async (imagePath) => {
      await createLuksImage(imagePath, LUKS_PASSPHRASE, { clusterSize: 4096, size: String(130 * KiB + 512) });
      await qemuIoEncrypted(imagePath, LUKS_PASSPHRASE, ['write -P 0x41 0 64k', 'write -P 0x42 124k 6656']);
      await snapshotEncrypted(imagePath, LUKS_PASSPHRASE, '-c', 's1');
      await qemuIoEncrypted(imagePath, LUKS_PASSPHRASE, ['write -P 0x43 8k 8k']);
    },
    run: (image) => void resizeImage(image, 2560 * KiB),
  },
  {
    name: 'resize: shrink a LUKS-encrypted disk discarding data, into a cluster shared with a snapshot',
    contract: 'all-or-nothing',
    passphrase: LUKS_PASSPHRASE,
    setup: async (imagePath) => {
      await createLuksImage(imagePath, LUKS_PASSPHRASE, { clusterSize: 4096, size: '256K' });
      await qemuIoEncrypted(imagePath, LUKS_PASSPHRASE, ['write -P 0x51 0 256k']);
      await snapshotEncrypted(imagePath, LUKS_PASSPHRASE, '-c', 's1');
      await qemuIoEncrypted(imagePath, LUKS_PASSPHRASE, ['write -P 0x52 120k 16k']);
    },
    run: (image) => void resizeImage(image, 130 * KiB + 512, { shrink: true, discardData: true }),
  },
  {
    name: 'resize: shrink discarding compressed clusters (v3, 4 KiB clusters)',
    contract: 'all-or-nothing',
    setup: compressedImage,
    run: (image) => void resizeImage(image, 100 * KiB, { shrink: true, discardData: true }),
  },
  guestWrite('guest write: over compressed clusters packed several to a host cluster', V3_4K, 256 * KiB, [], 10 * KiB + 5, 20 * KiB, { setup: compressedImage }),
  {
    name: 'snapshot create over compressed clusters',
    contract: 'all-or-nothing',
    setup: compressedImage,
    run: (image) => void createSnapshot(image, { name: 'new', now: new Date(1_700_000_000_000) }),
  },
  {
    name: 'snapshot delete over compressed clusters',
    contract: 'all-or-nothing',
    setup: compressedImage,
    run: (image) => deleteSnapshot(image, 's1'),
  },
  guestWrite('guest write: partial clusters over a backing file (the rest copied up from it)', V3_512, 128 * KiB, [], 3 * KiB + 100, 6 * KiB, { setup: (imagePath) => imageOverBacking(imagePath, '1.1') }),
  {
    name: 'discard and zero write over a backing file (v3: zero flags hide it)',
    contract: 'per-cluster',
    setup: (imagePath) => imageOverBacking(imagePath, '1.1'),
    run: (image) => {
      image.discard(6 * KiB, 4 * KiB);
      image.writeZeroes(20 * KiB + 300, 3 * KiB);
    },
  },
  {
    name: 'zero write over a backing file on v2 (no zero flag: zeros are written)',
    contract: 'per-cluster',
    setup: (imagePath) => imageOverBacking(imagePath, '0.10'),
    run: (image) => image.writeZeroes(6 * KiB, 4 * KiB),
  },
  repairCase('check --repair leaks: after a crash in snapshot create (dirty, leaked, COPIED missing)', 'compat=1.1,cluster_size=512,refcount_bits=16', withSnapshot, (image) => void createSnapshot(image, { name: 'crashed' }), 'leaks'),
  repairCase('check --repair leaks: after a crash in snapshot apply', 'compat=1.1,cluster_size=512,refcount_bits=16', twoSnapshots, (image) => applySnapshot(image, 's1'), 'leaks'),
  repairCase('check --repair leaks: v2, after a crash in snapshot delete', 'compat=0.10,cluster_size=512', twoSnapshots, (image) => deleteSnapshot(image, 's1'), 'leaks'),
  repairCase('check --repair all: after a crash in copy-on-write', 'compat=1.1,cluster_size=512,refcount_bits=16', withSnapshot, (image) => image.write(pattern(3, 9 * KiB), 500), 'all'),
  // Larger clusters: the same operations over 4 KiB clusters (more entries per table).
  guestWrite('guest write: copy-on-write, 4 KiB clusters', V3_4K, 1024 * KiB, withSnapshot, 2 * KiB, 20 * KiB, { fullOnly: true }),
  {
    name: 'snapshot create, 4 KiB clusters',
    contract: 'all-or-nothing',
    fullOnly: true,
    setup: (imagePath) => buildImage(imagePath, V3_4K, 1024 * KiB, twoSnapshots),
    run: (image) => void createSnapshot(image, { name: 'new', now: new Date(1_700_000_000_000) }),
  },
  {
    name: 'snapshot delete, 4 KiB clusters',
    contract: 'all-or-nothing',
    fullOnly: true,
    setup: (imagePath) => buildImage(imagePath, V3_4K, 1024 * KiB, twoSnapshots),
    run: (image) => deleteSnapshot(image, 's1'),
  },
  {
    name: 'snapshot apply, 64-bit refcounts',
    contract: 'all-or-nothing',
    fullOnly: true,
    setup: (imagePath) => buildImage(imagePath, 'compat=1.1,cluster_size=512,refcount_bits=64', 128 * KiB, twoSnapshots),
    run: (image) => applySnapshot(image, 's1'),
  },
];

// ------------------------------------------------------------------ whole-file operations

/**
 * Operations that make a whole new file through writeFileAtomically (create, convert, the rewrite
 * behind compress and compact; later encrypt): run against a FaultFileSystem, every cut of its log
 * must leave the target path with what was there before (or nothing) or the complete new file —
 * what was there before as long as the rename has not happened.
 */
export interface FileOperation {
  name: string;
  /** The target's path inside the fake file system. */
  target: string;
  /** Builds what the operation reads (real files in `folder`); returns the target's bytes before it, or null if there is none. */
  setup(folder: TempDir): Promise<Uint8Array | null>;
  run(fileSystem: FaultFileSystem, folder: TempDir): void;
  /** What is wrong with the finished new file (written at `finishedPath`) beyond qemu-img check: empty when nothing. */
  judgeAfter?(finishedPath: string, folder: TempDir): Promise<string[]>;
  fullOnly?: boolean;
  /** The new file's passphrase, when it is encrypted (qemu-img check needs it). */
  passphrase?: string;
}

const FAKE_FOLDER = '/cowbell-crash';

/** The finished file lists the same snapshots as `originalPath` and holds the same guest data in every state (qemu-img's view). */
function sameStatesAs(originalName: string): (finishedPath: string, folder: TempDir) => Promise<string[]> {
  return async (finishedPath, folder) => {
    const originalPath = folder.file(originalName);
    const problems: string[] = [];
    const listing = (snapshots: Awaited<ReturnType<typeof qemuInfo>>['snapshots']): string => JSON.stringify(snapshots ?? []);
    const [original, finished] = [await qemuInfo(originalPath), await qemuInfo(finishedPath)];
    if (listing(original.snapshots) !== listing(finished.snapshots)) problems.push(`the snapshots differ: ${listing(original.snapshots)} became ${listing(finished.snapshots)}`);
    for (const snapshot of [undefined, ...(original.snapshots ?? []).map((entry) => entry.name)]) {
      const at = firstDifference(await rawOf(originalPath, { snapshot }), await rawOf(finishedPath, { snapshot }));
      if (at !== -1) problems.push(`${snapshot === undefined ? 'the current state' : `snapshot ${snapshot}`} differs from the original at byte ${at}`);
    }
    return problems;
  };
}

/** The rewrite, reading its source through the fault file system (an in-place rewrite replaces what it reads). */
function rewriteThrough(fileSystem: FaultFileSystem, request: Omit<Parameters<typeof rewriteImage>[0], 'fileSystem' | 'openFile' | 'freeBytes'>, sourceInFileSystem: boolean): void {
  rewriteImage({ ...request, fileSystem, freeBytes: () => null, ...(sourceInFileSystem ? { openFile: (filePath: string) => fileSystem.open(filePath) } : {}) });
}

export const fileOperations: FileOperation[] = [
  {
    name: 'create: a new image where there was none',
    target: `${FAKE_FOLDER}/new.qcow2`,
    setup: async () => null,
    run: (fileSystem) => createImage({ path: `${FAKE_FOLDER}/new.qcow2`, size: 4 * 1024 * KiB, clusterSize: 512, fileSystem }),
  },
  {
    name: 'create with overwrite: replacing an image that holds data and a snapshot',
    target: `${FAKE_FOLDER}/old.qcow2`,
    setup: (folder) => qemuMadeImage(folder, 'old.qcow2', V3_512, 128 * KiB, withSnapshot),
    run: (fileSystem) => createImage({ path: `${FAKE_FOLDER}/old.qcow2`, size: 256 * KiB, clusterSize: 512, overwrite: true, fileSystem }),
  },
  {
    name: 'create with preallocation=metadata (many writes before the rename)',
    target: `${FAKE_FOLDER}/prealloc.qcow2`,
    setup: async () => null,
    run: (fileSystem) => createImage({ path: `${FAKE_FOLDER}/prealloc.qcow2`, size: 64 * KiB, clusterSize: 512, preallocation: 'metadata', fileSystem }),
  },
  {
    name: 'convert with compression over an existing target (a rewrite through the same helper)',
    target: `${FAKE_FOLDER}/converted.qcow2`,
    setup: async (folder) => {
      await qemuMadeImage(folder, 'source.qcow2', V3_512, 128 * KiB, twoSnapshots);
      return qemuMadeImage(folder, 'old-target.qcow2', V2_512, 64 * KiB, [{ io: 'write -P 0x55 0 8k' }]);
    },
    run: (fileSystem, folder) => void convertImage({ source: folder.file('source.qcow2'), target: `${FAKE_FOLDER}/converted.qcow2`, targetFormat: 'qcow2', compress: true, overwrite: true, fileSystem }),
  },
  {
    // -t unsafe skips the flush for a new output, never when an existing file is replaced.
    name: 'convert -t unsafe over an existing target (still flushed before the rename)',
    target: `${FAKE_FOLDER}/unsafe.qcow2`,
    setup: async (folder) => {
      await qemuMadeImage(folder, 'unsafe-source.qcow2', V3_512, 64 * KiB, [{ io: 'write -P 0x3c 1k 9k' }]);
      return new Uint8Array(8 * KiB).fill(0x77);
    },
    run: (fileSystem, folder) => void convertImage({ source: folder.file('unsafe-source.qcow2'), target: `${FAKE_FOLDER}/unsafe.qcow2`, targetFormat: 'qcow2', overwrite: true, durable: false, fileSystem }),
  },
  {
    // cowbell encrypt IMAGE: the source is the target, read through the fault file system (the old file until the rename).
    name: 'encrypt in place: a disk with a snapshot becomes LUKS-encrypted, or stays byte for byte as it was',
    target: `${FAKE_FOLDER}/encrypt.qcow2`,
    passphrase: 'crash-moo',
    setup: (folder) => qemuMadeImage(folder, 'encrypt.qcow2', 'compat=1.1,cluster_size=65536', 1024 * KiB, [{ io: 'write -P 0x11 0 200k' }, { io: 'write -P 0x12 700k 64k' }, { snapshot: 's1' }, { io: 'write -P 0x13 100k 130k' }]),
    run: (fileSystem) =>
      rewriteThrough(fileSystem, { source: `${FAKE_FOLDER}/encrypt.qcow2`, compression: 'keep', encryption: { kind: 'luks', passphrase: 'crash-moo', iterations: 1000, digestIterations: 1000 } }, true),
    judgeAfter: async (finishedPath, folder) => {
      const source = folder.file('encrypt.qcow2');
      for (const snapshot of [undefined, 's1']) {
        const at = firstDifference(await rawOfEncrypted(finishedPath, 'crash-moo', snapshot), await rawOf(source, snapshot === undefined ? {} : { snapshot }));
        if (at !== -1) return [`qemu-img reads ${snapshot ?? 'the current state'} of the encrypted disk differently from the original at byte ${at}`];
      }
      return [];
    },
  },
  {
    // The source is the target: read through the fault file system, it is the old file until the rename.
    name: 'compress in place: an image with two snapshots replaced by its compressed copy',
    target: `${FAKE_FOLDER}/disk.qcow2`,
    setup: (folder) => qemuMadeImage(folder, 'disk.qcow2', V3_4K, 256 * KiB, [...twoSnapshots, { io: 'write -P 0x25 100k 60k' }]),
    run: (fileSystem) => rewriteThrough(fileSystem, { source: `${FAKE_FOLDER}/disk.qcow2`, compression: 'compress', batchClusters: 3 }, true),
    judgeAfter: sameStatesAs('disk.qcow2'),
  },
  {
    name: 'compact into a new path over an existing target: compressed clusters kept, snapshots kept',
    target: `${FAKE_FOLDER}/compacted.qcow2`,
    setup: async (folder) => {
      await compressedImage(folder.file('compressed.qcow2'));
      return qemuMadeImage(folder, 'old-compacted.qcow2', V2_512, 64 * KiB, [{ io: 'write -P 0x56 0 12k' }, { snapshot: 'old' }]);
    },
    run: (fileSystem, folder) => rewriteThrough(fileSystem, { source: folder.file('compressed.qcow2'), target: `${FAKE_FOLDER}/compacted.qcow2`, compression: 'keep', overwrite: true, batchClusters: 5 }, false),
    judgeAfter: sameStatesAs('compressed.qcow2'),
  },
  {
    name: 'compact in place upgrading a compat 0.10 image with two snapshots to compat 1.1 (qcow2 version 3)',
    target: `${FAKE_FOLDER}/upgrade.qcow2`,
    setup: (folder) => qemuMadeImage(folder, 'upgrade.qcow2', V2_512, 128 * KiB, [...twoSnapshots, { io: 'write -P 0x27 90k 20k' }]),
    run: (fileSystem) => rewriteThrough(fileSystem, { source: `${FAKE_FOLDER}/upgrade.qcow2`, compression: 'keep', version: 3, batchClusters: 3 }, true),
    judgeAfter: async (finishedPath, folder) => {
      const problems = await sameStatesAs('upgrade.qcow2')(finishedPath, folder);
      const compat = (await qemuInfo(finishedPath))['format-specific']?.data.compat;
      return compat === '1.1' ? problems : [...problems, `the finished image is compat ${compat}, not 1.1`];
    },
  },
  {
    // 6 MiB of data: more than the writer stages at once, so the new file takes several writes.
    name: 'compact in place with --uncompress: a v2 image of several MiB, after a snapshot delete',
    target: `${FAKE_FOLDER}/v2.qcow2`,
    fullOnly: true,
    setup: (folder) =>
      qemuMadeImage(folder, 'v2.qcow2', 'compat=0.10,cluster_size=4096', 8 * 1024 * KiB, [
        { io: 'write -P 0x31 0 5M' },
        { snapshot: 's1' },
        { io: 'write -P 0x32 1M 2M' },
        { snapshot: 's2' },
        { io: 'write -P 0x33 6M 64k' },
        { deleteSnapshot: 's1' },
      ]),
    run: (fileSystem) => rewriteThrough(fileSystem, { source: `${FAKE_FOLDER}/v2.qcow2`, compression: 'uncompress', batchClusters: 7 }, true),
    judgeAfter: sameStatesAs('v2.qcow2'),
  },
];
