/**
 * What the disk view draws beyond ImageInfo: the snapshot tree and the space report, read by
 * background jobs, re-read when the disk changes; plus the snapshot selected in the tree and the
 * one hovered (shared by the tree and the charts so each highlights the other).
 */
import { defineStore } from 'pinia';
import { reactive, ref } from 'vue';
import type { BackingChain, SnapshotTree, UsageReport } from '../../../shared/ipc/contract.ts';
import { on } from '../api.ts';
import { toApiError, type ApiErrorCode } from '../lib/api-error.ts';
import { CURRENT_ID } from '../lib/tree-layout.ts';
import { useJobsStore } from './jobs.ts';

export interface DiskData {
  path: string;
  status: 'loading' | 'ready' | 'error';
  tree: SnapshotTree | null;
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
  let listening = false;

  function entry(path: string): DiskData {
    let data = disks.get(path);
    if (!data) {
      disks.set(path, { path, status: 'loading', tree: null, usage: null, chain: null, error: null, selectedId: CURRENT_ID, inUseReason: null, checkDamage: null });
      data = disks.get(path) as DiskData;
    }
    return data;
  }

  /**
   * Reads the tree and the space report side by side: the tree shows as soon as its job ends, the
   * Space tab's figures when theirs does (it shows that job's progress meanwhile), so a big disk's
   * tree does not wait for the space report too.
   */
  async function readOnce(path: string): Promise<void> {
    const jobs = useJobsStore();
    const data = entry(path);
    // The chain is read beside the rest; a chain that cannot be read leaves the tree and usage to show.
    const chain = jobs.run('chain.read', path, {}, { title: 'Read the backing chain', background: true }).then(
      (value) => {
        data.chain = value;
      },
      () => {
        data.chain = null;
      },
    );
    const tree = jobs.run('snapshot.tree', path, {}, { title: 'Read the snapshot tree', background: true }).then((read) => {
      data.tree = read;
      data.status = 'ready';
      const known = data.selectedId === CURRENT_ID || read.snapshots.some((snapshot) => snapshot.id === data.selectedId);
      if (!known) data.selectedId = CURRENT_ID;
    });
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
      if (typeof path === 'string' && disks.has(path)) void load(path);
    });
  }

  function forget(path: string): void {
    disks.delete(path);
    if (hovered.value?.path === path) hovered.value = null;
  }

  function select(path: string, id: string | null): void {
    entry(path).selectedId = id;
  }

  function hover(path: string, id: string | null): void {
    hovered.value = id === null ? null : { path, id };
  }

  function markInUse(path: string, reason: string): void {
    entry(path).inUseReason = reason;
  }

  /** Remembers what a check or repair found: corruptions left make the disk view offer to save what can be read. */
  function noteCheck(path: string, corruptions: number): void {
    entry(path).checkDamage = corruptions > 0 ? `The last check found ${corruptions} corruption${corruptions === 1 ? '' : 's'}.` : null;
  }

  return { disks, hovered, entry, load, forget, select, hover, markInUse, noteCheck };
});
