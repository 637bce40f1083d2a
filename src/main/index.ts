/** Electron's entry: one hardened window over the shared backend. */
import { join } from 'node:path';
import { app, Menu, session, shell, type BrowserWindow } from 'electron';
import workerFile from './worker/worker.ts?modulePath';
// A compress job's helper threads run this chunk (the engine's default path is to the source file).
import compressWorkerFile from '../shared/qcow2/codec/compress-worker.ts?modulePath';
// A compact's helper thread that compares the copy as it is written runs this one.
import earlyVerifyWorkerFile from '../shared/qcow2/rewrite/early-verify-worker.ts?modulePath';
import { unpackedPath } from './asar-paths.ts';
import { installAppMenu, type AppMenu } from './app-menu.ts';
import { APP_ORIGIN, registerAppScheme, serveRenderer } from './app-protocol.ts';
import { createBackend, type Backend } from './backend.ts';
import { chooseImages } from './dialogs.ts';
import { EVENT_CHANNEL } from '../shared/ipc/channels.ts';
import { registerRequestChannel } from './ipc.ts';
import { imagePathsFromArgs, launchArguments } from './launch-paths.ts';
import { contentSecurityPolicy } from './security.ts';
import { createMainWindow, hardenSession, lockDownContents } from './window.ts';

registerAppScheme();

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  startApp();
}

function startApp(): void {
  const initialPaths = imagePathsFromArgs(launchArguments(process.argv, app.isPackaged), process.cwd());
  let window: BrowserWindow | null = null;
  let backend: Backend | null = null;

  // Paths from a later launch or the OS (macOS open-file): kept for a page that has yet to ask for
  // its initial paths, and sent to a page already showing.
  const openPaths = (paths: string[]): void => {
    for (const path of paths) if (!initialPaths.includes(path)) initialPaths.push(path);
    if (paths.length > 0) backend?.events.emit('app.openPaths', { paths });
  };

  app.on('web-contents-created', (_event, contents) => lockDownContents(contents));

  app.on('second-instance', (_event, argv, workingDirectory) => {
    openPaths(imagePathsFromArgs(launchArguments(argv, app.isPackaged), workingDirectory));
    if (window === null) return;
    if (window.isMinimized()) window.restore();
    window.focus();
  });

  // macOS hands files opened from Finder (or dropped on the Dock icon) here, not in argv.
  app.on('open-file', (event, path) => {
    event.preventDefault();
    openPaths(imagePathsFromArgs(['--', path], process.cwd()));
  });

  app.on('window-all-closed', () => app.quit());

  // Quitting waits for the running jobs to stop: a cancelled change finishes past its commit point
  // rather than die with the process (which a disk survives, as a power cut, but needing repair).
  let closed = false;
  let closing: Promise<void> | null = null;
  app.on('will-quit', (event: Electron.Event) => {
    if (closed || backend === null) return;
    event.preventDefault();
    closing ??= backend
      .close()
      .catch((error: unknown) => console.error('cowbell: closing the backend failed:', error))
      .finally(() => {
        closed = true;
        app.quit();
      });
  });

  void app.whenReady().then(() => {
    const devServer = app.isPackaged ? undefined : process.env.ELECTRON_RENDERER_URL;
    const trustedOrigin = devServer === undefined ? APP_ORIGIN : new URL(devServer).origin;
    const csp = contentSecurityPolicy();

    hardenSession(session.defaultSession, csp, trustedOrigin);
    serveRenderer(session.defaultSession.protocol, join(import.meta.dirname, '../renderer'), csp);

    let menu: AppMenu | null = null;
    const running = createBackend({
      workerFile: unpackedPath(workerFile),
      compressWorker: unpackedPath(compressWorkerFile),
      earlyVerifyWorker: unpackedPath(earlyVerifyWorkerFile),
      mode: 'electron',
      version: app.getVersion(),
      initialPaths: () => initialPaths,
      openDialog: () => chooseImages(window),
      setRecentDisks: (paths) => menu?.setRecent(paths),
      revealPath: (path) => shell.showItemInFolder(path),
    });
    backend = running;
    menu = installAppMenu(Menu, (command) => running.events.emit('menu.command', command));

    window = createMainWindow({
      preloadPath: join(import.meta.dirname, '../preload/index.cjs'),
      url: devServer ?? `${APP_ORIGIN}/index.html`,
    });
    const contents = window.webContents;
    window.on('closed', () => {
      window = null;
    });

    registerRequestChannel(() => (window === null ? null : contents), trustedOrigin, running.handle);
    running.events.subscribe((event, payload) => {
      if (window !== null && !contents.isDestroyed()) contents.send(EVENT_CHANNEL, event, payload);
    });
  });
}
