import { defineStore } from 'pinia';
import { computed, ref } from 'vue';
import type { ImageInfo } from '../../../shared/ipc/contract.ts';
import { on, request } from '../api.ts';
import { toApiError, type ApiErrorCode } from '../lib/api-error.ts';
import { isImageInfo, isStringArray } from '../lib/reply-guards.ts';
import { useGuestFilesStore } from './guest-files.ts';
import { useRecentStore } from './recent.ts';
import { tidyPath } from '../lib/paths.ts';

export interface DiskError {
  code: ApiErrorCode;
  message: string;
}

/** One disk in the sidebar: being read, read (`info`), or failed (`error`). */
export interface OpenDisk {
  path: string;
  status: 'loading' | 'ready' | 'error';
  info: ImageInfo | null;
  error: DiskError | null;
  /** Re-reading after a change on disk; the last info stays visible meanwhile. */
  refreshing: boolean;
}

/** The disks open in this window, in the order they were opened, and the one shown. */
export const useLibraryStore = defineStore('library', () => {
  const disks = ref<OpenDisk[]>([]);
  const selectedPath = ref<string | null>(null);
  // A newer read of the same path wins over an older one still in flight.
  const readGeneration = new Map<string, number>();
  let stopWatching: (() => void) | null = null;
  let stopOpening: (() => void) | null = null;

  const selected = computed(() => disks.value.find((disk) => disk.path === selectedPath.value) ?? null);

  function find(path: string): OpenDisk | undefined {
    return disks.value.find((disk) => disk.path === path);
  }

  async function read(path: string): Promise<void> {
    const generation = (readGeneration.get(path) ?? 0) + 1;
    readGeneration.set(path, generation);
    let outcome: { info: ImageInfo } | { error: DiskError };
    try {
      const reply = await request('image.open', { path });
      outcome = isImageInfo(reply)
        ? { info: reply }
        : { error: { code: 'BAD_REPLY', message: 'The reply to image.open is not an image description.' } };
    } catch (error) {
      const apiError = toApiError(error);
      outcome = { error: { code: apiError.code, message: apiError.message } };
    }
    const disk = find(path);
    if (!disk || readGeneration.get(path) !== generation) return;
    disk.refreshing = false;
    if ('info' in outcome) {
      disk.status = 'ready';
      disk.info = outcome.info;
      disk.error = null;
      useRecentStore().remember(path);
    } else {
      disk.status = 'error';
      disk.info = null;
      disk.error = outcome.error;
    }
  }

  /** Puts `path` in the list (as loading, or re-reading if already there) without reading it yet. */
  function add(path: string): void {
    const existing = find(path);
    if (!existing) {
      disks.value.push({ path, status: 'loading', info: null, error: null, refreshing: false });
      // Main reports changes other programs make (image.changed) while the disk is open.
      void request('image.watch', { path }).catch(() => undefined);
    }
    else if (existing.status === 'ready') existing.refreshing = true;
    else existing.status = 'loading';
  }

  /** Opens a disk (or, if it is open already, reads it again) and shows it. */
  function open(typed: string): Promise<void> {
    const path = tidyPath(typed);
    add(path);
    selectedPath.value = path;
    return read(path);
  }

  /** Opens several disks and shows the first; a selection the user makes meanwhile is kept. */
  async function openMany(typed: string[]): Promise<void> {
    const paths = [...new Set(typed.map(tidyPath))];
    for (const path of paths) add(path);
    if (paths[0] !== undefined) selectedPath.value = paths[0];
    await Promise.all(paths.map((path) => read(path)));
  }

  /** Electron's native Open dialog; resolves once the chosen disks have been read. */
  async function openWithDialog(): Promise<void> {
    const paths = await request('dialog.openImages', {});
    if (isStringArray(paths)) await openMany(paths);
  }

  function close(path: string): void {
    const index = disks.value.findIndex((disk) => disk.path === path);
    if (index < 0) return;
    disks.value.splice(index, 1);
    readGeneration.delete(path);
    useGuestFilesStore().forget(path);
    void request('image.unwatch', { path }).catch(() => undefined);
    if (selectedPath.value === path) {
      const neighbour = disks.value[Math.min(index, disks.value.length - 1)];
      selectedPath.value = neighbour?.path ?? null;
    }
  }

  function select(path: string): void {
    if (find(path)) selectedPath.value = path;
  }

  /** Selects the disk `offset` places above (-1) or below (+1) the selected one. */
  function selectNeighbour(offset: number): void {
    const index = disks.value.findIndex((disk) => disk.path === selectedPath.value);
    const next = disks.value[Math.max(0, Math.min(disks.value.length - 1, index + offset))];
    if (next) selectedPath.value = next.path;
  }

  function reload(path: string): Promise<void> {
    if (!find(path)) return Promise.resolve();
    add(path);
    return read(path);
  }

  /** Opens the paths given on the command line and re-reads disks main reports as changed. */
  async function start(): Promise<void> {
    stopWatching ??= on('image.changed', (payload) => {
      const path = (payload as { path?: unknown } | null)?.path;
      if (typeof path === 'string' && find(path)) void reload(path);
    });
    // A second launch (`cowbell other.qcow2`, Open with Cowbell) or macOS's open-file, while this window shows.
    stopOpening ??= on('app.openPaths', (payload) => {
      const paths = (payload as { paths?: unknown } | null)?.paths;
      if (isStringArray(paths)) void openMany(paths);
    });
    try {
      const paths = await request('app.initialPaths', {});
      if (isStringArray(paths)) await openMany(paths);
    } catch {
      // No initial paths to open; a lost connection is shown by the app store.
    }
  }

  return { disks, selectedPath, selected, open, openMany, openWithDialog, close, select, selectNeighbour, reload, start };
});
