import { basename } from 'node:path';
import type { Menu, MenuItemConstructorOptions } from 'electron';
import type { MenuCommand, MenuCommandName } from '../shared/ipc/contract.ts';

export type MenuSend = (command: MenuCommand) => void;

/** The part of Electron's `Menu` class the application menu needs (tests hand in a fake). */
export interface MenuSeam {
  buildFromTemplate(template: MenuItemConstructorOptions[]): Menu;
  setApplicationMenu(menu: Menu | null): void;
}

const isMac = process.platform === 'darwin';

/**
 * The application menu. Items whose keys the page handles itself (so they work the same in browser
 * mode) show their shortcut but do not register it: a registered Delete or F2 would also fire while
 * the user types in a text field.
 */
export function appMenuTemplate(send: MenuSend, recentPaths: readonly string[]): MenuItemConstructorOptions[] {
  const item = (label: string, command: MenuCommandName, accelerator?: string): MenuItemConstructorOptions => ({
    label,
    click: () => send({ command }),
    ...(accelerator === undefined ? {} : { accelerator, registerAccelerator: false }),
  });
  const recent: MenuItemConstructorOptions[] =
    recentPaths.length === 0
      ? [{ label: 'No Recent Disks', enabled: false }]
      : recentPaths.map((path) => ({ label: basename(path), sublabel: path, toolTip: path, click: () => send({ command: 'open-path', path }) }));

  return [
    ...(isMac ? [{ role: 'appMenu' as const }] : []),
    {
      label: '&File',
      submenu: [
        item('Open…', 'open', 'CmdOrCtrl+O'),
        { label: 'Open Recent', submenu: recent },
        { type: 'separator' },
        item('New Disk…', 'disk.create'),
        item('Check Disk…', 'disk.check'),
        item('Compact Disk…', 'disk.compact'),
        item('Compress Disk…', 'disk.compress'),
        item('Resize Disk…', 'disk.resize'),
        { type: 'separator' },
        item('Encrypt Disk…', 'disk.encrypt'),
        item('Change Passphrase…', 'disk.passphrase'),
        item('Decrypt Disk…', 'disk.decrypt'),
        { type: 'separator' },
        item('Save What Can Be Read…', 'disk.rescue'),
        item('New Linked Clone…', 'disk.linked-clone'),
        item('Commit into Backing File…', 'disk.commit'),
        item('Rebase…', 'disk.rebase'),
        { type: 'separator' },
        item('Close Disk', 'close', 'CmdOrCtrl+W'),
        ...(isMac ? [] : [{ type: 'separator' as const }, { role: 'quit' as const }]),
      ],
    },
    { role: 'editMenu' },
    {
      label: '&Snapshot',
      submenu: [
        item('Take Snapshot…', 'snapshot.take', 'CmdOrCtrl+Shift+S'),
        item('Revert to Snapshot…', 'snapshot.revert'),
        item('Rename Snapshot…', 'snapshot.rename', 'F2'),
        item('Edit Snapshot Note…', 'snapshot.note'),
        item('Delete Snapshot…', 'snapshot.delete', 'Delete'),
        { type: 'separator' },
        item('Save Snapshot as New Disk…', 'snapshot.export'),
      ],
    },
    {
      label: '&View',
      submenu: [
        item('Fit Tree to Window', 'view.fit', '0'),
        item('Go to Current State', 'view.current', 'Home'),
        item('Zoom In', 'view.zoom-in', '+'),
        item('Zoom Out', 'view.zoom-out', '-'),
        { type: 'separator' },
        item('Jobs', 'view.jobs'),
        { type: 'separator' },
        { role: 'togglefullscreen' },
      ],
    },
    { label: '&Help', submenu: [item('About Cowbell', 'about')] },
  ];
}

export interface AppMenu {
  setRecent(paths: readonly string[]): void;
}

/** Installs the menu and rebuilds it when the page reports a new recent-disks list. */
export function installAppMenu(menu: MenuSeam, send: MenuSend): AppMenu {
  const apply = (paths: readonly string[]): void => menu.setApplicationMenu(menu.buildFromTemplate(appMenuTemplate(send, paths)));
  apply([]);
  return { setRecent: apply };
}
