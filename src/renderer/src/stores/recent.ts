/**
 * Recent disks, newest first, kept in the page's localStorage (the same in Electron and browser
 * mode). A recent disk that no longer exists is shown as missing, not as an error.
 */
import { defineStore } from 'pinia';
import { ref } from 'vue';
import type { PathStat } from '../../../shared/ipc/contract.ts';
import { request } from '../api.ts';

export const RECENT_KEY = 'cowbell.recent-disks';
const MAX_RECENT = 12;

function load(): string[] {
  try {
    const parsed: unknown = JSON.parse(localStorage.getItem(RECENT_KEY) ?? '[]');
    return Array.isArray(parsed) ? parsed.filter((item): item is string => typeof item === 'string').slice(0, MAX_RECENT) : [];
  } catch {
    return [];
  }
}

export const useRecentStore = defineStore('recent', () => {
  const paths = ref<string[]>(load());
  const missing = ref<Set<string>>(new Set());

  function save(): void {
    try {
      localStorage.setItem(RECENT_KEY, JSON.stringify(paths.value));
    } catch {
      // A full or disabled storage only costs the list its persistence.
    }
    void request('menu.recent', { paths: paths.value }).catch(() => undefined);
  }

  function remember(path: string): void {
    paths.value = [path, ...paths.value.filter((existing) => existing !== path)].slice(0, MAX_RECENT);
    missing.value.delete(path);
    save();
  }

  function forget(path: string): void {
    paths.value = paths.value.filter((existing) => existing !== path);
    save();
  }

  /** Asks main which recent disks still exist. */
  async function check(): Promise<void> {
    if (paths.value.length === 0) return;
    try {
      const stats: PathStat[] = await request('path.stat', { paths: paths.value });
      missing.value = new Set(stats.filter((stat) => stat.kind !== 'file').map((stat) => stat.path));
    } catch {
      // Unknown is shown as present; opening it will say what is wrong.
    }
  }

  function start(): Promise<void> {
    void request('menu.recent', { paths: paths.value }).catch(() => undefined);
    return check();
  }

  return { paths, missing, remember, forget, check, start };
});
