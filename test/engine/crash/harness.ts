/**
 * The crash-test table: every mutating operation, one entry each. An entry says how to build the
 * image it starts from (with the real qemu tools, so the engine also meets QEMU's own layouts),
 * what the operation does, and its crash contract (guest-state.ts). runner.ts replays each
 * operation on a FaultFile and checks every power cut it allows. A new operation (compress,
 * encrypt, …) joins by adding one entry here.
 *
 * Not covered, because the engine cannot do it: growing the active L1 table (its size is fixed
 * at create; only a resize would need more, and there is no resize).
 */
import { Qcow2Image } from '../../../src/shared/qcow2/image.ts';
import { applySnapshot, createSnapshot, deleteSnapshot, renameSnapshot } from '../../../src/shared/qcow2/snapshots.ts';
import { qemuImg, qemuIo } from '../../helpers/qemu.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';
import type { Contract } from './guest-state.ts';

export interface ImageOperation {
  name: string;
  contract: Contract;
  /** Builds the image the operation starts from at `imagePath`. */
  setup(imagePath: string): Promise<void>;
  /** The operation on the open image; the runner flushes and closes it afterwards, as every caller does. */
  run(image: Qcow2Image): void;
  /** Run only by `npm run crash` (slower variants of what the quick table already covers). */
  fullOnly?: boolean;
}

const KiB = 1024;

type Step = { io: string } | { snapshot: string } | { deleteSnapshot: string } | { engine: (image: Qcow2Image) => void };

/** qemu-img create, then qemu-io writes and qemu-img snapshots in order (or engine steps, for states qemu cannot make). */
export async function buildImage(imagePath: string, options: string, size: number, steps: Step[] = []): Promise<void> {
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', options, imagePath, String(size)]);
  for (const step of steps) {
    if ('io' in step) await qemuIo(imagePath, [step.io]);
    else if ('snapshot' in step) await qemuImg(['snapshot', '-c', step.snapshot, imagePath]);
    else if ('deleteSnapshot' in step) await qemuImg(['snapshot', '-d', step.deleteSnapshot, imagePath]);
    else {
      const image = Qcow2Image.open(imagePath);
      try {
        step.engine(image);
      } finally {
        image.close();
      }
    }
  }
}

const V3_512 = 'compat=1.1,cluster_size=512,refcount_bits=16';
const V2_512 = 'compat=0.10,cluster_size=512';
const V3_4K = 'compat=1.1,cluster_size=4096,refcount_bits=16';

/** Guest bytes that differ per call (so before and after never agree by accident). */
function pattern(seed: number, length: number): Uint8Array {
  return new SeededRandom(seed).bytes(length);
}

/** Data, a snapshot, more data over part of it: L2 tables and clusters both shared and not. */
const withSnapshot: Step[] = [{ io: 'write -P 0x11 0 24k' }, { io: 'write -P 0x12 40k 8k' }, { snapshot: 's1' }, { io: 'write -P 0x13 4k 2k' }];
/** Two snapshots with different data, and a current state different from both. */
const twoSnapshots: Step[] = [
  { io: 'write -P 0x21 0 20k' },
  { snapshot: 's1' },
  { io: 'write -P 0x22 2k 10k' },
  { io: 'write -P 0x23 70k 6k' },
  { snapshot: 's2' },
  { io: 'write -P 0x24 6k 20k' },
  { io: 'write -z 90k 4k' },
];

function guestWrite(name: string, options: string, size: number, steps: Step[], offset: number, length: number, extra: Partial<ImageOperation> = {}): ImageOperation {
  return {
    name,
    contract: 'per-cluster',
    setup: (imagePath) => buildImage(imagePath, options, size, steps),
    run: (image) => image.write(pattern(offset + length, length), offset),
    ...extra,
  };
}

export const imageOperations: ImageOperation[] = [
  guestWrite('guest write: allocating clusters and a new L2 table (partial clusters at both ends)', V3_512, 128 * KiB, [{ io: 'write -P 0x11 0 8k' }], 31 * KiB + 100, 3 * KiB),
  guestWrite('guest write: in place over clusters with refcount 1', V3_512, 128 * KiB, [{ io: 'write -P 0x11 0 16k' }], 1000, 2500),
  guestWrite('guest write: copy-on-write into shared clusters and a shared L2 table', V3_512, 128 * KiB, withSnapshot, 1000, 6 * KiB),
  guestWrite('guest write: v2 image (compat=0.10)', V2_512, 128 * KiB, withSnapshot, 20 * KiB + 7, 5 * KiB),
  guestWrite('guest write: 1-bit refcounts', 'compat=1.1,cluster_size=512,refcount_bits=1', 128 * KiB, [{ io: 'write -P 0x11 0 8k' }], 6 * KiB, 4 * KiB),
  guestWrite('guest write: extended L2 (subclusters), in place and allocating', 'compat=1.1,cluster_size=16384,extended_l2=on', 512 * KiB, [{ io: 'write -P 0x11 0 20k' }, { io: 'write -P 0x12 100k 1k' }], 12 * KiB + 512, 100 * KiB),
  {
    // 64-bit refcounts with 512-byte clusters: a refcount block covers 32 KiB and the first
    // refcount table 2 MiB of file, so a write that takes the file past 2 MiB needs new blocks
    // and a bigger table, which moves. (1-bit refcounts would do the opposite: one block covers 2 MiB.)
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
  },
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
