import { describe, expect, it, vi } from 'vitest';

vi.mock('electron', async () => (await import('./fakes/electron.ts')).electronModule);

const { FakeWebContents, ipcHandlers, protocolHandlers, fakeSession } = await import('./fakes/electron.ts');
const { registerRequestChannel } = await import('../../src/main/ipc.ts');
const { serveRenderer } = await import('../../src/main/app-protocol.ts');
const { REQUEST_CHANNEL } = await import('../../src/shared/ipc/channels.ts');

function setup() {
  const contents = new FakeWebContents();
  const calls: unknown[][] = [];
  registerRequestChannel(
    () => contents as never,
    'app://cowbell',
    async (name, args) => {
      calls.push([name, args]);
      return { ok: true, value: 'handled' };
    },
  );
  const handler = ipcHandlers.get(REQUEST_CHANNEL);
  if (handler === undefined) throw new Error('no request channel registered');
  const invoke = (event: unknown) => handler(event, 'app.about', {});
  return { contents, calls, invoke };
}

describe('the IPC request channel', () => {
  it('handles a request from the window’s own top frame', async () => {
    const { contents, calls, invoke } = setup();
    expect(await invoke({ sender: contents, senderFrame: contents.mainFrame })).toEqual({ ok: true, value: 'handled' });
    expect(calls).toEqual([['app.about', {}]]);
  });

  it.each([
    ['another web contents', (c: InstanceType<typeof FakeWebContents>) => ({ sender: new FakeWebContents(), senderFrame: c.mainFrame })],
    ['no sender frame', (c: InstanceType<typeof FakeWebContents>) => ({ sender: c, senderFrame: null })],
    [
      'a subframe',
      (c: InstanceType<typeof FakeWebContents>) => ({
        sender: c,
        senderFrame: { ...c.mainFrame, frameToken: 'child', parent: c.mainFrame },
      }),
    ],
    [
      'a frame showing a foreign page',
      (c: InstanceType<typeof FakeWebContents>) => ({ sender: c, senderFrame: { ...c.mainFrame, url: 'https://evil.example/' } }),
    ],
    [
      'a top frame that is not the window’s main frame',
      (c: InstanceType<typeof FakeWebContents>) => ({ sender: c, senderFrame: { ...c.mainFrame, frameToken: 'other' } }),
    ],
  ])('refuses a request from %s without calling any handler', async (_what, makeEvent) => {
    const { contents, calls, invoke } = setup();
    expect(await invoke(makeEvent(contents))).toEqual({
      ok: false,
      error: { code: 'INVALID_REQUEST', message: expect.stringContaining('Refused') },
    });
    expect(calls).toEqual([]);
  });

  it('refuses everything once the window is gone', async () => {
    const { contents, calls, invoke } = setup();
    contents.destroyed = true;
    expect(await invoke({ sender: contents, senderFrame: contents.mainFrame })).toMatchObject({ ok: false });
    expect(calls).toEqual([]);
  });
});

describe('the app:// protocol', () => {
  it('serves the renderer with the CSP header, and nothing outside it', async () => {
    const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const folder = await mkdtemp(join(tmpdir(), 'cowbell-protocol-'));
    try {
      await writeFile(join(folder, 'index.html'), '<title>Cowbell</title>');
      serveRenderer(fakeSession().protocol as never, folder, "default-src 'none'");
      const handle = protocolHandlers.get('app');
      if (handle === undefined) throw new Error('no protocol handler');
      const page = await handle(new Request('app://cowbell/index.html'));
      expect(page.status).toBe(200);
      expect(page.headers.get('content-security-policy')).toBe("default-src 'none'");
      expect(await page.text()).toBe('<title>Cowbell</title>');
      expect((await handle(new Request('app://cowbell/%2e%2e/etc/passwd'))).status).toBe(404);
      expect((await handle(new Request('app://elsewhere/index.html'))).status).toBe(404);
      expect((await handle(new Request('app://cowbell/missing.js'))).status).toBe(404);
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });
});
