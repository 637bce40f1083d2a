/**
 * What the disk view draws beyond ImageInfo: the snapshot tree and the space report, read by
 * background jobs, re-read when the disk changes; plus the snapshot selected in the tree and the
 * one hovered (shared by the tree and the charts so each highlights the other).
 */
import { defineStore } from 'pinia';
import { reactive, ref } from 'vue';
import type { BackingChain, SnapshotTree, UsageReport } from '../../../shared/ipc/contract.ts';
import { on, request } from '../api.ts';
import { toApiError, type ApiErrorCode } from '../lib/api-error.ts';
import { carryOver, fillIn, withoutFigures } from '../lib/tree-figures.ts';
import { CURRENT_ID } from '../lib/tree-layout.ts';
import { useJobsStore } from './jobs.ts';

export interface DiskData {
  path: string;
  status: 'loading' | 'ready' | 'error';
  tree: SnapshotTree | null;
  /**
   * True while the full tree is read: the tree shown is the quick one (snapshot table alone), its
   * space figures null ("counting…") or carried over from the last read ("recounting"), and its
   * pending parents placeholders. False once the full tree is in, or could not be read.
   */
  counting: boolean;
  /** True when the user stopped the count (stopCounting): the tree stays, its figures "not counted", until a new read. */
  countStopped: boolean;
  usage: UsageReport | null;
  /** The disk's backing chain (the disk first); null until read, or when it could not be read. */
  chain: BackingChain | null;
  error: { code: ApiErrorCode; message: string } | null;
  /** A snapshot id, CURRENT_ID for the current state, or null. */
  selectedId: string | null;
  /** Set when a write was refused because another program holds the disk. */
  inUseReason: string | null;
  /** What the last check found wrong that a copy would lose data to (corruptions), in words; null when it found nothing or none ran. */
  checkDamage: string | null;
}

export const useDiskDataStore = defineStore('disk-data', () => {
  const disks = reactive(new Map<string, DiskData>());
  const hovered = ref<{ path: string; id: string } | null>(null);
  const inFlight = new Map<string, Promise<void>>();
  const again = new Set<string>();
  /** Each disk's latest read, so that a late quick tree from an earlier one is dropped. */
  const reads = new Map<string, number>();
  /** Per open disk, the files below it in its chain that main watches for it: a change to one re-reads the disk. */
  const chainWatches = new Map<string, string[]>();
  let listening = false;

  function entry(path: string): DiskData {
    let data = disks.get(path);
    if (!data) {
      disks.set(path, { path, status: 'loading', tree: null, counting: false, countStopped: false, usage: null, chain: null, error: null, selectedId: CURRENT_ID, inUseReason: null, checkDamage: null });
      data = disks.get(path) as DiskData;
    }
    return data;
  }

  /**
   * Reads the quick tree, the full tree and the space report side by side: the quick tree (the
   * snapshot table alone, asked for first so no long job in the pool holds it up) shows at once,
   * its space figures counting; the full tree fills them in where they are drawn (and settles
   * pending parents); the Space tab's figures come when theirs do (with that job's progress meanwhile).
   */
  async function readOnce(path: string): Promise<void> {
    const jobs = useJobsStore();
    const data = entry(path);
    const thisRead = (reads.get(path) ?? 0) + 1;
    reads.set(path, thisRead);
    let fullRead = false;
    let quickShown = false;
    data.counting = true;
    data.countStopped = false;
    void jobs.run('snapshot.outline', path, {}, { title: 'Read the snapshot table', background: true }).then(
      (quick) => {
        // A full tree already in (a small disk), or a newer read under way, says more.
        if (fullRead || reads.get(path) !== thisRead) return;
        data.tree = carryOver(data.tree, quick);
        quickShown = true;
        showTree(data);
      },
      // The full tree's outcome says what went wrong, if anything did.
      () => undefined,
    );
    // The chain is read beside the rest; a chain that cannot be read leaves the tree and usage to show.
    const chain = jobs.run('chain.read', path, {}, { title: 'Read the backing chain', background: true }).then(
      (value) => {
        data.chain = value;
        watchChain(path, value);
      },
      () => {
        data.chain = null;
      },
    );
    const tree = jobs.run('snapshot.tree', path, {}, { title: 'Read the snapshot tree', background: true }).then(
      (read) => {
        fullRead = true;
        // Into this read's quick tree, in place; a tree from an earlier read is replaced (the map pane re-reads on a new tree).
        data.tree = quickShown ? fillIn(data.tree, read) : read;
        data.counting = false;
        showTree(data);
      },
      (error: unknown) => {
        fullRead = true;
        data.counting = false;
        // Figures carried over from the last read were never recounted: not shown as if they were.
        if (quickShown && data.tree !== null) withoutFigures(data.tree);
        // Stopped by the user, with a tree shown: nothing went wrong, the figures are simply not counted.
        if (toApiError(error).code === 'CANCELLED' && data.tree !== null) {
          data.countStopped = true;
          return;
        }
        throw error;
      },
    );
    const usage = jobs.run('image.usage', path, {}, { title: 'Read space usage', background: true }).then((read) => {
      data.usage = read;
    });
    const outcomes = await Promise.allSettled([tree, usage]);
    const failure = outcomes.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
    if (failure === undefined) {
      data.error = null;
    } else {
      const apiError = toApiError(failure.reason);
      data.error = { code: apiError.code, message: apiError.message };
      data.status = data.tree ? 'ready' : 'error';
    }
    await chain;
  }

  function showTree(data: DiskData): void {
    data.status = 'ready';
    const known = data.selectedId === CURRENT_ID || (data.tree?.snapshots.some((snapshot) => snapshot.id === data.selectedId) ?? false);
    if (!known) data.selectedId = CURRENT_ID;
  }

  /**
   * Stops counting the space each snapshot holds (the full tree's pass, long on a big disk): the
   * quick tree stays, its figures "not counted"; load() counts again.
   */
  async function stopCounting(path: string): Promise<void> {
    const jobs = useJobsStore();
    const count = jobs.jobs.find((job) => job.kind === 'snapshot.tree' && job.path === path && job.status === 'running');
    if (count) await jobs.cancel(count.id);
  }

  /** Reads (or re-reads) the tree and usage; calls during a read queue one more read after it. */
  function load(path: string): Promise<void> {
    listen();
    entry(path);
    const running = inFlight.get(path);
    if (running) {
      again.add(path);
      return running;
    }
    const next = (async () => {
      do {
        again.delete(path);
        await readOnce(path);
      } while (again.has(path) && disks.has(path));
      inFlight.delete(path);
    })();
    inFlight.set(path, next);
    return next;
  }

  function listen(): void {
    if (listening) return;
    listening = true;
    on('image.changed', (payload) => {
      const path = (payload as { path?: unknown } | null)?.path;
      if (typeof path !== 'string') return;
      if (disks.has(path)) void load(path);
      // A backing file another program changed (a snapshot, a resize): the disks above it read it.
      for (const [disk, below] of chainWatches) if (disk !== path && below.includes(path) && disks.has(disk)) void load(disk);
    });
  }

  /** Watches the files below `path` in its chain (and stops watching those no longer in it). */
  function watchChain(path: string, chain: BackingChain | null): void {
    const next = disks.has(path) ? (chain?.files.slice(1).filter((file) => file.problem === null).map((file) => file.path) ?? []) : [];
    const before = chainWatches.get(path) ?? [];
    for (const file of next) if (!before.includes(file)) void request('image.watch', { path: file }).catch(() => undefined);
    for (const file of before) if (!next.includes(file)) void request('image.unwatch', { path: file }).catch(() => undefined);
    if (next.length > 0) chainWatches.set(path, next);
    else chainWatches.delete(path);
  }

  function forget(path: string): void {
    disks.delete(path);
    watchChain(path, null);
    if (hovered.value?.path === path) hovered.value = null;
  }

  function select(path: string, id: string | null): void {
    entry(path).selectedId = id;
  }

  function hover(path: string, id: string | null): void {
    hovered.value = id === null ? null : { path, id };
  }

  function markInUse(path: string, reason: string | null): void {
    entry(path).inUseReason = reason;
  }

  /** Remembers what a check or repair found: corruptions left make the disk view offer to save what can be read. */
  function noteCheck(path: string, corruptions: number): void {
    entry(path).checkDamage = corruptions > 0 ? `The last check found ${corruptions} corruption${corruptions === 1 ? '' : 's'}.` : null;
  }

  /**
   * The open disks built on `path` (it is in their backing chain, below them): what changes the
   * disk's current data in place (a revert, a shrink) changes what they read too.
   */
  function builtOn(path: string): string[] {
    const dependents: string[] = [];
    for (const [diskPath, data] of disks) {
      if (diskPath !== path && (data.chain?.files.slice(1) ?? []).some((file) => file.path === path)) dependents.push(diskPath);
    }
    return dependents;
  }

  return { disks, hovered, entry, load, stopCounting, forget, select, hover, markInUse, noteCheck, builtOn };
});
