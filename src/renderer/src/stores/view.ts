/** How the disk view is shown: the open tab, whether the Files panel is open beside the tree, and tree commands from the menu and shortcuts. */
import { defineStore } from 'pinia';
import { ref } from 'vue';

export type DiskTab = 'snapshots' | 'space' | 'map' | 'properties';
export type TreeCommand = 'fit' | 'current' | 'zoom-in' | 'zoom-out';

export const useViewStore = defineStore('view', () => {
  const tab = ref<DiskTab>('snapshots');
  /** The latest tree command; `sequence` makes a repeated command a new one. */
  /** The Files panel takes room from the tree, so it opens when asked for. */
  const filesOpen = ref(false);
  const treeCommand = ref<{ command: TreeCommand; sequence: number } | null>(null);
  let sequence = 0;

  function sendTreeCommand(command: TreeCommand): void {
    tab.value = 'snapshots';
    treeCommand.value = { command, sequence: ++sequence };
  }

  return { tab, filesOpen, treeCommand, sendTreeCommand };
});
