/**
 * Where the keyboard's focus goes when a dialog closes: back where it was before the first dialog,
 * also when a dialog was opened from another (Revert… from a snapshot's Details). Found by the
 * keyboard audit: focus fell to the page's body, where the next Delete did nothing.
 */
import { createPinia, setActivePinia } from 'pinia';
import { beforeEach, describe, expect, it } from 'vitest';
import { useDialogsStore } from '../../src/renderer/src/stores/dialogs.ts';

beforeEach(() => {
  setActivePinia(createPinia());
  document.body.innerHTML = '';
});

function button(testId: string, parent: HTMLElement = document.body): HTMLButtonElement {
  const element = document.createElement('button');
  element.dataset.testid = testId;
  parent.append(element);
  return element;
}

async function settled(): Promise<void> {
  await new Promise((resolve) => queueMicrotask(() => resolve(undefined)));
}

describe('focus after a dialog', () => {
  it('returns to where it was before the first of two chained dialogs', async () => {
    const dialogs = useDialogsStore();
    const tree = button('snapshot-tree');
    tree.focus();
    dialogs.open({ kind: 'details', path: '/disks/a.qcow2', snapshotId: '1' });
    // The Details dialog's Revert… button opens the next dialog, then Details (and the button) are gone.
    const details = document.createElement('div');
    document.body.append(details);
    const revert = button('details-revert', details);
    revert.focus();
    dialogs.open({ kind: 'revert', path: '/disks/a.qcow2', snapshotId: '1' });
    details.remove();
    dialogs.close();
    await settled();
    expect(document.activeElement).toBe(tree);
  });

  it('goes to the tree where what had it is gone', async () => {
    const dialogs = useDialogsStore();
    const tree = button('snapshot-tree');
    const row = button('disk-row');
    row.focus();
    dialogs.open({ kind: 'about' });
    row.remove();
    dialogs.close();
    await settled();
    expect(document.activeElement).toBe(tree);
  });
});
