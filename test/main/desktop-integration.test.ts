import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MenuItemConstructorOptions } from 'electron';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { appMenuTemplate } from '../../src/main/app-menu.ts';
import { createRequestHandle } from '../../src/main/handlers.ts';
import { createImageWatcher } from '../../src/main/image-watch.ts';
import type { JobManager } from '../../src/main/jobs.ts';
import { EVENT_CHANNEL, REQUEST_CHANNEL } from '../../src/shared/ipc/channels.ts';
import type { EventName, MenuCommand } from '../../src/shared/ipc/contract.ts';

vi.mock('electron', async () => (await import('./fakes/electron.ts')).electronModule);
const fakes = await import('./fakes/electron.ts');

let folder = '';
beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'cowbell-'));
});
afterAll(async () => {
  await rm(folder, { recursive: true, force: true });
});

type Item = MenuItemConstructorOptions;

function submenu(template: Item[], label: string): Item[] {
  const menu = template.find((entry) => entry.label?.replace('&', '') === label);
  if (!menu || !Array.isArray(menu.submenu)) throw new Error(`no menu ${label}`);
  return menu.submenu;
}

function click(item: Item | undefined): void {
  (item?.click as (() => void) | undefined)?.();
}

describe('the application menu', () => {
  it('has File, Snapshot, View and Help menus whose items send their command to the page', () => {
    const sent: MenuCommand[] = [];
    const template = appMenuTemplate((command) => sent.push(command), []);
    const labels = template.map((entry) => entry.label?.replace('&', '')).filter(Boolean);
    expect(labels).toEqual(['File', 'Snapshot', 'View', 'Help']);
    for (const item of submenu(template, 'Snapshot')) click(item);
    click(submenu(template, 'File').find((item) => item.label === 'Open…'));
    click(submenu(template, 'File').find((item) => item.label === 'Close Disk'));
    click(submenu(template, 'File').find((item) => item.label === 'Compact Disk…'));
    click(submenu(template, 'File').find((item) => item.label === 'Compress Disk…'));
    click(submenu(template, 'File').find((item) => item.label === 'Encrypt Disk…'));
    click(submenu(template, 'File').find((item) => item.label === 'Change Passphrase…'));
    click(submenu(template, 'File').find((item) => item.label === 'Decrypt Disk…'));
    click(submenu(template, 'File').find((item) => item.label === 'Save What Can Be Read…'));
    click(submenu(template, 'Help')[0]);
    expect(sent.map((command) => command.command)).toEqual([
      'snapshot.take',
      'snapshot.revert',
      'snapshot.rename',
      'snapshot.note',
      'snapshot.delete',
      'snapshot.export',
      'open',
      'close',
      'disk.compact',
      'disk.compress',
      'disk.encrypt',
      'disk.passphrase',
      'disk.decrypt',
      'disk.rescue',
      'about',
    ]);
  });

  it('shows shortcuts the page handles without registering them (Delete and F2 must still reach text fields)', () => {
    const template = appMenuTemplate(() => undefined, []);
    const snapshot = submenu(template, 'Snapshot').filter((item) => item.type !== 'separator');
    expect(snapshot.map((item) => item.accelerator)).toEqual(['CmdOrCtrl+Shift+S', undefined, 'F2', undefined, 'Delete', undefined]);
    for (const item of snapshot) if (item.accelerator) expect(item.registerAccelerator).toBe(false);
    // The View menu's keys are the tree's own (audit: it showed "C" where the tree goes to the current state on Home).
    expect(submenu(template, 'View').filter((item) => item.accelerator).map((item) => [item.label, item.accelerator])).toEqual([
      ['Fit Tree to Window', '0'],
      ['Go to Current State', 'Home'],
      ['Zoom In', '+'],
      ['Zoom Out', '-'],
    ]);
    expect(submenu(template, 'File').find((item) => item.label === 'Close Disk')?.accelerator).toBe('CmdOrCtrl+W');
  });

  it('lists recent disks under Open Recent, each opening its path', () => {
    const sent: MenuCommand[] = [];
    const empty = submenu(appMenuTemplate(() => undefined, []), 'File').find((item) => item.label === 'Open Recent');
    expect((empty?.submenu as Item[])[0]).toMatchObject({ label: 'No Recent Disks', enabled: false });
    const template = appMenuTemplate((command) => sent.push(command), ['/vm/a.qcow2', '/vm/b.qcow2']);
    const recent = submenu(template, 'File').find((item) => item.label === 'Open Recent')?.submenu as Item[];
    expect(recent.map((item) => item.label)).toEqual(['a.qcow2', 'b.qcow2']);
    click(recent[1]);
    expect(sent).toEqual([{ command: 'open-path', path: '/vm/b.qcow2' }]);
  });

  it('is installed by the Electron entry, sends clicks to the window and rebuilds Open Recent on menu.recent', async () => {
    fakes.resetFakes();
    const savedArgv = process.argv;
    process.argv = ['/usr/bin/electron', '/app'];
    try {
      await import(/* @vite-ignore */ `${new URL('../../src/main/index.ts', import.meta.url).pathname}?menu=1`);
    } finally {
      process.argv = savedArgv;
    }
    fakes.fakeApp.readyResolve();
    await fakes.fakeApp.whenReady();
    await new Promise((resolve) => setImmediate(resolve));
    expect(fakes.applicationMenus).toHaveLength(1);
    const window = fakes.FakeBrowserWindow.created[0]!;
    click(submenu(fakes.applicationMenus[0]!.template as Item[], 'Snapshot')[0]);
    expect(window.webContents.sent).toEqual([[EVENT_CHANNEL, 'menu.command', { command: 'snapshot.take' }]]);

    const handle = fakes.ipcHandlers.get(REQUEST_CHANNEL)!;
    const event = { sender: window.webContents, senderFrame: window.webContents.mainFrame };
    expect(await handle(event, 'menu.recent', { paths: ['/vm/c.qcow2'] })).toEqual({ ok: true, value: null });
    expect(fakes.applicationMenus).toHaveLength(2);
    const recent = submenu(fakes.applicationMenus[1]!.template as Item[], 'File').find((item) => item.label === 'Open Recent');
    expect((recent?.submenu as Item[]).map((item) => item.label)).toEqual(['c.qcow2']);
    // Quitting is put off until the backend has closed, then goes through (electron-entry.test.ts).
    const quits = fakes.fakeApp.quitCalls;
    fakes.fakeApp.emit('will-quit', { preventDefault: () => undefined });
    await vi.waitFor(() => expect(fakes.fakeApp.quitCalls).toBe(quits + 1), { timeout: 20_000 });
  });
});

describe('watching open disks', () => {
  it('reports a change another program makes (qemu-img snapshot -c) once, and nothing after unwatch', async () => {
    const path = join(folder, 'watched.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', path, '64M']);
    const seen: { event: EventName; payload: unknown }[] = [];
    const watcher = createImageWatcher({ emit: (event, payload) => seen.push({ event, payload }), pollMs: 50, quietMs: 100 });
    try {
      watcher.watch(path);
      watcher.watch(path);
      await new Promise((resolve) => setTimeout(resolve, 120));
      execFileSync('qemu-img', ['snapshot', '-c', 'outside', path]);
      await vi.waitFor(() => expect(seen).toEqual([{ event: 'image.changed', payload: { path } }]), { timeout: 5_000 });
      watcher.unwatch(path);
      watcher.unwatch(path);
      execFileSync('qemu-img', ['snapshot', '-c', 'unwatched', path]);
      await new Promise((resolve) => setTimeout(resolve, 400));
      expect(seen).toHaveLength(1);
    } finally {
      watcher.close();
    }
  });
});

describe('path.stat', () => {
  it('says which paths are files, folders or missing', async () => {
    const file = join(folder, 'here.qcow2');
    await writeFile(file, 'x');
    await mkdir(join(folder, 'sub'), { recursive: true });
    const handle = createRequestHandle({
      mode: 'browser',
      version: '0',
      jobs: {} as JobManager,
      initialPaths: () => [],
      openDialog: async () => [],
    });
    expect(await handle('path.stat', { paths: [file, join(folder, 'sub'), join(folder, 'gone.qcow2')] })).toEqual({
      ok: true,
      value: [
        { path: file, kind: 'file' },
        { path: join(folder, 'sub'), kind: 'folder' },
        { path: join(folder, 'gone.qcow2'), kind: 'missing' },
      ],
    });
    expect(await handle('path.stat', { paths: ['relative.qcow2'] })).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
  });
});
