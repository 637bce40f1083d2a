import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { BridgeServerMessage } from '../../src/shared/ipc/contract.ts';
import { createBackend, type Backend } from '../../src/main/backend.ts';
import { startBrowserServer, type BrowserServer } from '../../src/main/browser-server.ts';

const workerFile = fileURLToPath(new URL('../../src/main/worker/worker.ts', import.meta.url));

let folder = '';
let image = '';
let backend: Backend;
let server: BrowserServer;
let origin = '';
/** The session key the printed address's token was traded for (beforeAll: the token works once). */
let session = '';
let firstLoad: { status: number; headers: Record<string, unknown>; body: string };
/** A HEAD of the printed address before the browser's GET (a link checker, an opener probing it): it must not use the token up. */
let headFirst: { status: number; headers: Record<string, unknown>; body: string };

beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'cowbell-server-'));
  const rendererDir = join(folder, 'renderer');
  await mkdir(join(rendererDir, 'assets'), { recursive: true });
  await writeFile(join(rendererDir, 'index.html'), '<!doctype html><title>Cowbell</title>');
  await writeFile(join(rendererDir, 'assets', 'app.js'), 'console.log(1)');
  await writeFile(join(folder, 'secret.txt'), 'outside the renderer');
  image = join(folder, 'disk.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, '64M']);
  execFileSync('qemu-img', ['snapshot', '-c', 'before-upgrade', image]);

  backend = createBackend({
    workerFile,
    mode: 'browser',
    version: '1.2.3',
    initialPaths: () => [image],
    openDialog: async () => [],
    maxThreads: 2,
  });
  server = await startBrowserServer({ rendererDir, handle: backend.handle, events: backend.events });
  origin = `http://127.0.0.1:${server.port}`;
  headFirst = await head(`/?token=${server.token}`);
  firstLoad = await get(`/?token=${server.token}`);
  session = /^\/#session=([A-Za-z0-9_-]+)$/.exec(String(firstLoad.headers.location))?.[1] ?? '';
});

afterAll(async () => {
  await server?.close();
  await backend?.close();
  await rm(folder, { recursive: true, force: true });
});

function head(path: string): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return get(path, {}, 'HEAD');
}

function get(path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest({ host: '127.0.0.1', port: server.port, path, headers, method }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body }));
    });
    request.on('error', reject);
    request.end();
  });
}

/** Opens a socket and resolves with it, or with the HTTP status the server refused it with. */
function connect(query: string, socketOrigin: string | undefined): Promise<WebSocket | number> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://127.0.0.1:${server.port}/ws${query}`, socketOrigin === undefined ? {} : { origin: socketOrigin });
    socket.on('open', () => resolve(socket));
    socket.on('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
    socket.on('error', reject);
  });
}

async function openSocket(): Promise<{ socket: WebSocket; frames: BridgeServerMessage[]; next: (match: (frame: BridgeServerMessage) => boolean) => Promise<BridgeServerMessage> }> {
  const socket = await connect(`?session=${session}`, origin);
  if (typeof socket === 'number') throw new Error(`refused with ${socket}`);
  const frames: BridgeServerMessage[] = [];
  const waiters: { match: (frame: BridgeServerMessage) => boolean; resolve: (frame: BridgeServerMessage) => void }[] = [];
  socket.on('message', (data) => {
    const frame = JSON.parse(String(data)) as BridgeServerMessage;
    frames.push(frame);
    for (const waiter of [...waiters]) {
      if (waiter.match(frame)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(frame);
      }
    }
  });
  const next = (match: (frame: BridgeServerMessage) => boolean) =>
    new Promise<BridgeServerMessage>((resolve) => {
      const seen = frames.find(match);
      if (seen) resolve(seen);
      else waiters.push({ match, resolve });
    });
  return { socket, frames, next };
}

const reply = (id: number) => (frame: BridgeServerMessage) => frame.type === 'reply' && frame.id === id;

describe('browser mode server', () => {
  it('listens on 127.0.0.1 and prints an address with a long random token', () => {
    expect(server.url).toBe(`${origin}/?token=${server.token}`);
    expect(server.token).toMatch(/^[A-Za-z0-9_-]{32}$/);
  });

  it('trades the printed token, once, for a session key in the fragment of the page it sends the browser to; a second use of the token is refused, saying why', async () => {
    expect(headFirst.status).toBe(200);
    expect(firstLoad.status).toBe(303);
    expect(firstLoad.headers['cache-control']).toBe('no-store');
    expect(session).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(session).not.toBe(server.token);
    // Whoever read the address off a command line (/proc/PID/cmdline) after the browser opened it gets nothing.
    const again = await get(`/?token=${server.token}`);
    expect(again.status).toBe(403);
    expect(again.body).toMatch(/opened already.*If you did not open it yourself, another program did/);
    expect(again.headers.location).toBeUndefined();
    expect(await connect(`?token=${server.token}`, origin)).toBe(403);
    expect((await get('/index.html?token=wrong')).status).toBe(403);
    expect((await get(`/?token=${server.token}x`)).status).toBe(403);
  });

  it('serves the page (the same for everyone: the socket is what needs the key), with the CSP as a header', async () => {
    const page = await get('/');
    expect(page.status).toBe(200);
    expect(page.body).toContain('<title>Cowbell</title>');
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.headers['content-security-policy']).not.toMatch(/unsafe-(eval|inline)/);
    expect(page.headers['referrer-policy']).toBe('no-referrer');
  });

  it('serves the built assets, and nothing outside the renderer folder', async () => {
    expect((await get('/assets/app.js')).status).toBe(200);
    expect((await get('/assets/missing.js')).status).toBe(404);
    expect((await get('/%2e%2e/secret.txt')).status).toBe(404);
    expect((await get('/..%2fsecret.txt')).status).toBe(404);
  });

  it('refuses a request whose Host is not 127.0.0.1:PORT (DNS rebinding)', async () => {
    expect((await get('/', { host: `evil.example:${server.port}` })).status).toBe(403);
    expect((await get(`/?token=${server.token}`, { host: `evil.example:${server.port}` })).status).toBe(403);
  });

  it.each([
    ['no session key', '', 'own'],
    ['a wrong session key', '?session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 'own'],
    ['the printed token instead of a session key', 'token', 'own'],
    ['a foreign Origin', 'session', 'http://evil.example'],
    ['localhost instead of 127.0.0.1', 'session', 'http://localhost:PORT'],
    ['no Origin', 'session', undefined],
  ])('refuses a WebSocket with %s (403)', async (_what, query, socketOrigin) => {
    const resolvedQuery = query === 'token' ? `?token=${server.token}` : query === 'session' ? `?session=${session}` : query;
    const resolvedOrigin = socketOrigin === 'own' ? origin : socketOrigin?.replace('PORT', String(server.port));
    expect(await connect(resolvedQuery, resolvedOrigin)).toBe(403);
  });

  it('answers requests over the WebSocket with the real handlers and engine', async () => {
    const { socket, next } = await openSocket();
    socket.send(JSON.stringify({ type: 'request', id: 1, name: 'app.about', args: {} }));
    socket.send(JSON.stringify({ type: 'request', id: 2, name: 'image.open', args: { path: image } }));
    socket.send(JSON.stringify({ type: 'request', id: 3, name: 'image.open', args: { path: 'relative.qcow2' } }));
    socket.send(JSON.stringify({ type: 'request', id: 4, name: 'app.initialPaths', args: {} }));
    expect(await next(reply(1))).toEqual({
      type: 'reply',
      id: 1,
      reply: { ok: true, value: { name: 'Cowbell', version: '1.2.3', mode: 'browser', platform: process.platform } },
    });
    const opened = await next(reply(2));
    expect(opened).toMatchObject({
      reply: { ok: true, value: { 'virtual-size': 64 * 1024 * 1024, snapshots: [{ name: 'before-upgrade' }] } },
    });
    expect(await next(reply(3))).toMatchObject({ reply: { ok: false, error: { code: 'INVALID_REQUEST' } } });
    expect(await next(reply(4))).toMatchObject({ reply: { ok: true, value: [image] } });
    socket.close();
  });

  it('pushes job events to the socket', async () => {
    const { socket, next } = await openSocket();
    socket.send(JSON.stringify({ type: 'request', id: 7, name: 'job.start', args: { kind: 'image.info', path: image, args: {} } }));
    const started = await next(reply(7));
    const jobId = started.type === 'reply' && started.reply.ok ? (started.reply.value as { jobId: string }).jobId : '';
    expect(jobId).not.toBe('');
    const end = await next((frame) => frame.type === 'event' && frame.event === 'job.end');
    expect(end).toMatchObject({ type: 'event', event: 'job.end', payload: { jobId, ok: true, result: { 'cluster-size': 65536 } } });
    socket.close();
  });

  it('forgets the watches of a page that went away without unwatching (a closed or reloaded tab): its disks are no longer polled', async () => {
    const gone = await openSocket();
    gone.socket.send(JSON.stringify({ type: 'request', id: 21, name: 'image.watch', args: { path: image } }));
    expect(await gone.next(reply(21))).toMatchObject({ reply: { ok: true } });
    const closed = new Promise<void>((resolve) => gone.socket.on('close', () => resolve()));
    gone.socket.close();
    await closed;
    await new Promise((resolve) => setTimeout(resolve, 100));
    const page = await openSocket();
    const changed = (frame: BridgeServerMessage): boolean => frame.type === 'event' && frame.event === 'image.changed';
    await utimes(image, new Date(), new Date(Date.now() + 5000));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(page.frames.filter(changed), 'a change event for a disk no open page watches').toEqual([]);
    // A page that watches it hears of a change.
    page.socket.send(JSON.stringify({ type: 'request', id: 22, name: 'image.watch', args: { path: image } }));
    await page.next(reply(22));
    await utimes(image, new Date(), new Date(Date.now() + 10_000));
    expect(await page.next(changed)).toMatchObject({ payload: { path: image } });
    page.socket.close();
  });

  it('closes a socket that sends something other than a request frame', async () => {
    const { socket } = await openSocket();
    const closed = new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)));
    socket.send('not json');
    expect(await closed).toBe(1008);
  });
});
