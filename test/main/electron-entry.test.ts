import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { EVENT_CHANNEL, REQUEST_CHANNEL } from '../../src/shared/ipc/channels.ts';

vi.mock('electron', async () => (await import('./fakes/electron.ts')).electronModule);

const fakes = await import('./fakes/electron.ts');
type Fakes = typeof fakes;

const entry = new URL('../../src/main/index.ts', import.meta.url).pathname;
let launches = 0;

/** Runs main's entry afresh (a new module instance, as a new process would) against a reset fake electron. */
async function launch(argv: string[], lockGranted = true): Promise<Fakes> {
  return launchWithArgv(['/usr/bin/electron', '/app', ...argv], lockGranted);
}

async function launchWithArgv(processArgv: string[], lockGranted = true): Promise<Fakes> {
  fakes.resetFakes();
  fakes.fakeApp.lockGranted = lockGranted;
  const savedArgv = process.argv;
  process.argv = processArgv;
  try {
    launches += 1;
    await import(/* @vite-ignore */ `${entry}?launch=${launches}`);
  } finally {
    process.argv = savedArgv;
  }
  return fakes;
}

async function ready(fakes: Fakes): Promise<void> {
  fakes.fakeApp.readyResolve();
  await fakes.fakeApp.whenReady();
  await new Promise((resolve) => setImmediate(resolve));
}

function ownFrameEvent(fakes: Fakes) {
  const window = fakes.FakeBrowserWindow.created[0];
  if (window === undefined) throw new Error('no window');
  return { sender: window.webContents, senderFrame: window.webContents.mainFrame };
}

/** Quits as Electron does: will-quit, which the entry may put off (preventDefault) until its jobs have ended and it calls app.quit() again. */
async function quit(fakes: Fakes): Promise<{ prevented: number }> {
  const outcome = { prevented: 0 };
  const event = { preventDefault: () => (outcome.prevented += 1) };
  const quitsBefore = fakes.fakeApp.quitCalls;
  fakes.fakeApp.emit('will-quit', event);
  if (outcome.prevented > 0) {
    await vi.waitFor(() => expect(fakes.fakeApp.quitCalls).toBe(quitsBefore + 1), { timeout: 20_000 });
    // The second will-quit (from that app.quit()) goes through.
    fakes.fakeApp.emit('will-quit', event);
    expect(outcome.prevented).toBe(1);
  }
  return outcome;
}

describe('the Electron entry', () => {
  it('quits without a window when another Cowbell already holds the single-instance lock', async () => {
    const fakes = await launch(['disk.qcow2'], false);
    expect(fakes.fakeApp.quitCalls).toBe(1);
    expect(fakes.fakeApp.listeners.size).toBe(0);
    expect(fakes.FakeBrowserWindow.created).toEqual([]);
  });

  it('registers app:// as a secure standard scheme before the app is ready', async () => {
    const fakes = await launch([]);
    expect(fakes.privilegedSchemes).toEqual([
      expect.objectContaining({ scheme: 'app', privileges: expect.objectContaining({ standard: true, secure: true }) }),
    ]);
    expect(fakes.FakeBrowserWindow.created).toEqual([]);
  });

  it('opens one hardened window on app://cowbell with the CommonJS preload, and serves requests from it', async () => {
    const fakes = await launch(['--', 'vm/disk.qcow2']);
    await ready(fakes);
    expect(fakes.FakeBrowserWindow.created).toHaveLength(1);
    const window = fakes.FakeBrowserWindow.created[0]!;
    expect(window.webContents.loadedUrl).toBe('app://cowbell/index.html');
    expect(window.options.webPreferences).toMatchObject({ sandbox: true, contextIsolation: true, nodeIntegration: false });
    expect(String((window.options.webPreferences as { preload: string }).preload)).toMatch(/preload[\\/]index\.cjs$/);
    expect(fakes.protocolHandlers.has('app')).toBe(true);
    expect(Object.keys(fakes.defaultSession.handlers).sort()).toEqual([
      'beforeRequest',
      'devicePermission',
      'headersReceived',
      'permissionCheck',
      'permissionRequest',
    ]);

    const handle = fakes.ipcHandlers.get(REQUEST_CHANNEL)!;
    expect(await handle(ownFrameEvent(fakes), 'app.about', {})).toMatchObject({
      ok: true,
      value: { name: 'Cowbell', version: '7.7.7', mode: 'electron' },
    });
    expect(await handle(ownFrameEvent(fakes), 'app.initialPaths', {})).toEqual({
      ok: true,
      value: [`${process.cwd()}/vm/disk.qcow2`],
    });
    await quit(fakes);
  });

  it('adds a second launch’s paths, sends them to the page and focuses the window', async () => {
    const fakes = await launch([]);
    await ready(fakes);
    fakes.fakeApp.emit('second-instance', {}, ['/usr/bin/electron', '--no-sandbox', '/app', 'other.qcow2', '--flag'], '/home/me');
    const window = fakes.FakeBrowserWindow.created[0]!;
    expect(window.focused).toBe(1);
    expect(window.webContents.sent).toEqual([[EVENT_CHANNEL, 'app.openPaths', { paths: ['/home/me/other.qcow2'] }]]);
    const handle = fakes.ipcHandlers.get(REQUEST_CHANNEL)!;
    expect(await handle(ownFrameEvent(fakes), 'app.initialPaths', {})).toEqual({ ok: true, value: ['/home/me/other.qcow2'] });
    await quit(fakes);
  });

  it('takes a launch’s paths after Playwright’s switches, not the app folder', async () => {
    const fakes = await launchWithArgv(['/usr/bin/electron', '--no-sandbox', '/repo', '/vm/disk.qcow2']);
    await ready(fakes);
    const handle = fakes.ipcHandlers.get(REQUEST_CHANNEL)!;
    expect(await handle(ownFrameEvent(fakes), 'app.initialPaths', {})).toEqual({ ok: true, value: ['/vm/disk.qcow2'] });
    // Quitting is put off once, until the backend has closed (its jobs ended), then goes through.
    expect(await quit(fakes)).toEqual({ prevented: 1 });
  });

  it('opens files macOS hands over (open-file), before and after the window exists', async () => {
    const fakes = await launch([]);
    let prevented = 0;
    fakes.fakeApp.emit('open-file', { preventDefault: () => (prevented += 1) }, '/Users/me/early.qcow2');
    await ready(fakes);
    fakes.fakeApp.emit('open-file', { preventDefault: () => (prevented += 1) }, '/Users/me/late.qcow2');
    expect(prevented).toBe(2);
    const window = fakes.FakeBrowserWindow.created[0]!;
    expect(window.webContents.sent).toEqual([[EVENT_CHANNEL, 'app.openPaths', { paths: ['/Users/me/late.qcow2'] }]]);
    const handle = fakes.ipcHandlers.get(REQUEST_CHANNEL)!;
    expect(await handle(ownFrameEvent(fakes), 'app.initialPaths', {})).toEqual({
      ok: true,
      value: ['/Users/me/early.qcow2', '/Users/me/late.qcow2'],
    });
    await quit(fakes);
  });

  it('pushes job events to the window on the event channel', async () => {
    const fakes = await launch([]);
    await ready(fakes);
    const handle = fakes.ipcHandlers.get(REQUEST_CHANNEL)!;
    const folder = await mkdtemp(join(tmpdir(), 'cowbell-'));
    const notAnImage = join(folder, 'notes.qcow2');
    await writeFile(notAnImage, 'a text file, not a disk image'.repeat(40));
    const started = (await handle(ownFrameEvent(fakes), 'job.start', {
      kind: 'image.info',
      path: notAnImage,
      args: {},
    })) as { ok: true; value: { jobId: string } };
    expect(started.ok).toBe(true);
    const sent = fakes.FakeBrowserWindow.created[0]!.webContents.sent;
    await vi.waitFor(() => expect(sent.length).toBeGreaterThan(0), { timeout: 10_000 });
    expect(sent[0]).toEqual([
      EVENT_CHANNEL,
      'job.end',
      { jobId: started.value.jobId, ok: false, error: { code: 'BAD_MAGIC', message: expect.any(String) } },
    ]);
    await quit(fakes);
    await rm(folder, { recursive: true, force: true });
  });
});
