import { defineStore } from 'pinia';
import { ref } from 'vue';
import type { AppAbout } from '../../../shared/ipc/contract.ts';
import { connection, request, type ConnectionState } from '../api.ts';
import { isAppAbout } from '../lib/reply-guards.ts';

/** The app around the disks: which mode it runs in and whether main is still reachable. */
export const useAppStore = defineStore('app', () => {
  const about = ref<AppAbout | null>(null);
  const connectionState = ref<ConnectionState>('connecting');
  let started = false;

  async function start(): Promise<void> {
    if (started) return;
    started = true;
    const link = connection();
    connectionState.value = link.state();
    link.onStateChange((state) => {
      connectionState.value = state;
    });
    try {
      const reply = await request('app.about', {});
      about.value = isAppAbout(reply) ? reply : null;
    } catch {
      // Without `about` the UI falls back to the transport for the mode; a lost link shows its own banner.
    }
  }

  /** Electron shows a native Open dialog; the browser has only the path field. */
  function mode(): AppAbout['mode'] {
    return about.value?.mode ?? connection().transport;
  }

  return { about, connectionState, start, mode };
});
