/** Which dialog is showing. One at a time, like a desktop app's modal dialogs. */
import { defineStore } from 'pinia';
import type { GuestFileKind } from '../../../shared/qcow2/model.ts';
import { ref } from 'vue';

export type DialogRequest =
  | { kind: 'take'; path: string }
  | { kind: 'revert'; path: string; snapshotId: string }
  | { kind: 'delete'; path: string; snapshotId: string }
  | { kind: 'rename'; path: string; snapshotId: string }
  | { kind: 'note'; path: string; snapshotId: string }
  | { kind: 'details'; path: string; snapshotId: string }
  | { kind: 'create-disk'; folder: string }
  | { kind: 'check'; path: string }
  | { kind: 'compress'; path: string }
  | { kind: 'compact'; path: string }
  | { kind: 'encrypt'; path: string }
  | { kind: 'decrypt'; path: string }
  | { kind: 'passphrase'; path: string }
  | { kind: 'resize'; path: string }
  | { kind: 'export'; path: string; snapshotId: string }
  | { kind: 'rescue'; path: string }
  | { kind: 'linked-clone'; path: string }
  | { kind: 'commit'; path: string }
  | { kind: 'rebase'; path: string }
  | { kind: 'files-restore'; path: string; state: string; stateDate?: string; stateName: string; guestPath: string; entryKind: GuestFileKind }
  | { kind: 'files-unlock-volume'; path: string; volumeName: string; uuid: string; format: 'luks1' | 'luks2'; label?: string }
  | { kind: 'files-compare'; path: string; from: string; fromDate?: string; fromName: string; to: string; toDate?: string; toName: string }
  | { kind: 'about' };

export const useDialogsStore = defineStore('dialogs', () => {
  const current = ref<DialogRequest | null>(null);
  // Focus goes back where it was when the dialog closes (the tree, usually).
  let returnFocus: HTMLElement | null = null;

  function open(request: DialogRequest): void {
    // A dialog opened from another (Revert… from a snapshot's Details) returns focus where the first
    // one would have: the button inside the first is gone by then.
    if (current.value === null || returnFocus === null) returnFocus = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    current.value = request;
  }

  /** Why a dialog was closed without the user's say (the shell shows it); null when none. */
  const notice = ref<string | null>(null);

  function close(): void {
    current.value = null;
    const target = returnFocus;
    returnFocus = null;
    // Gone meanwhile (its disk closed, its row re-drawn): the tree, where keys act on the disk shown.
    const fallback = (): HTMLElement | null => document.querySelector<HTMLElement>('[data-testid="snapshot-tree"]');
    queueMicrotask(() => (target?.isConnected ? target : fallback())?.focus());
  }

  /** Closes the dialog because what it was about is gone, saying so. */
  function closeWithNotice(text: string): void {
    close();
    notice.value = text;
  }

  return { current, notice, open, close, closeWithNotice };
});
