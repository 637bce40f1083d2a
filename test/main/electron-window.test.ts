import { beforeEach, describe, expect, it, vi } from 'vitest';

vi.mock('electron', async () => (await import('./fakes/electron.ts')).electronModule);

const { FakeBrowserWindow, fakeSession } = await import('./fakes/electron.ts');
const { createMainWindow, hardenSession } = await import('../../src/main/window.ts');
const { contentSecurityPolicy } = await import('../../src/main/security.ts');

beforeEach(() => {
  FakeBrowserWindow.created.length = 0;
});

function openWindow() {
  createMainWindow({ preloadPath: '/app/out/preload/index.cjs', url: 'app://cowbell/index.html' });
  const window = FakeBrowserWindow.created[0];
  if (window === undefined) throw new Error('no window was created');
  return window;
}

describe('the Electron window', () => {
  it('is created isolated, sandboxed, without Node, with web security and only the preload', () => {
    const window = openWindow();
    expect(window.options.webPreferences).toMatchObject({
      preload: '/app/out/preload/index.cjs',
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
      disableBlinkFeatures: 'Auxclick',
    });
    expect(window.webContents.loadedUrl).toBe('app://cowbell/index.html');
  });

  it('refuses every navigation, new window and webview', () => {
    const { webContents } = openWindow();
    expect(webContents.emitPreventable('will-navigate', 'https://example.com/')).toBe(true);
    expect(webContents.emitPreventable('will-frame-navigate', 'https://example.com/')).toBe(true);
    expect(webContents.emitPreventable('will-attach-webview', {}, {})).toBe(true);
    expect(webContents.windowOpenHandler?.({ url: 'https://example.com/' })).toEqual({ action: 'deny' });
  });
});

describe('the session', () => {
  const csp = contentSecurityPolicy();

  function hardened() {
    const session = fakeSession();
    hardenSession(session as never, csp, 'app://cowbell');
    return session.handlers as Record<string, (...args: unknown[]) => unknown>;
  }

  it('denies every permission request and check', () => {
    const handlers = hardened();
    const decisions: boolean[] = [];
    handlers.permissionRequest?.({}, 'media', (granted: boolean) => decisions.push(granted));
    handlers.permissionRequest?.({}, 'notifications', (granted: boolean) => decisions.push(granted));
    expect(decisions).toEqual([false, false]);
    expect(handlers.permissionCheck?.({}, 'clipboard-read')).toBe(false);
    expect(handlers.devicePermission?.({})).toBe(false);
  });

  it('puts a strict CSP header on every response: no eval, no inline script', () => {
    const handlers = hardened();
    let headers: Record<string, string[]> = {};
    handlers.headersReceived?.({ responseHeaders: { 'X-Other': ['1'] } }, (reply: { responseHeaders: Record<string, string[]> }) => {
      headers = reply.responseHeaders;
    });
    expect(headers['X-Other']).toEqual(['1']);
    expect(headers['Content-Security-Policy']).toEqual([csp]);
    expect(csp).toMatch(/default-src 'none'/);
    expect(csp).toMatch(/script-src 'self'(;|$)/);
    expect(csp).not.toMatch(/unsafe-eval|unsafe-inline/);
  });

  it('cancels any request that leaves the app’s own origin', () => {
    const handlers = hardened();
    const cancelled = (url: string) => {
      let decision: boolean | undefined;
      handlers.beforeRequest?.({ url }, (reply: { cancel: boolean }) => (decision = reply.cancel));
      return decision;
    };
    expect(cancelled('app://cowbell/assets/index.js')).toBe(false);
    expect(cancelled('https://example.com/tracker.js')).toBe(true);
    expect(cancelled('http://127.0.0.1:8080/')).toBe(true);
    expect(cancelled('app://other/index.html')).toBe(true);
    expect(cancelled('file:///etc/passwd')).toBe(true);
  });
});
