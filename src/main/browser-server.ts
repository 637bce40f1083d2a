/**
 * Browser mode: the built renderer over HTTP and the request handlers over a WebSocket, on
 * 127.0.0.1 only. The address printed carries a random token that works once: opening it trades it
 * for a session key the page keeps in its address's fragment (`/#session=…`, never sent in a
 * request line, never on a command line), and the socket needs that key and our own Origin, so no
 * other site the browser has open can drive Cowbell. The printed token may end up on a command line
 * (a terminal opening the link runs `browser URL`, which other users can read in /proc): used once,
 * it is worth nothing there.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { z } from 'zod';
import type { BridgeServerMessage } from '../shared/ipc/contract.ts';
import type { EventHub } from './events.ts';
import type { RequestHandle } from './handlers.ts';
import { contentSecurityPolicy } from './security.ts';
import { contentTypeOf, resolveStaticFile } from './static-files.ts';
import { watchLedger } from './watch-ledger.ts';

export const HOST = '127.0.0.1';
const MAX_FRAME_BYTES = 1024 * 1024;

export interface BrowserServerOptions {
  rendererDir: string;
  handle: RequestHandle;
  events: EventHub;
  /** 0 (the default) picks a free port. */
  port?: number;
  /** Tests pass their own; otherwise 24 random bytes. */
  token?: string;
}

export interface BrowserServer {
  /** The page's address, token included: what the user opens. */
  url: string;
  port: number;
  token: string;
  close(): Promise<void>;
}

const ClientMessage = z.object({
  type: z.literal('request'),
  id: z.number().int().nonnegative(),
  name: z.string().max(256),
  args: z.unknown(),
});

export function newToken(): string {
  return randomBytes(24).toString('base64url');
}

export async function startBrowserServer(options: BrowserServerOptions): Promise<BrowserServer> {
  const token = options.token ?? newToken();
  const server = createServer();
  const sockets = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES });

  server.listen(options.port ?? 0, HOST);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;
  const origin = `http://${HOST}:${port}`;
  const csp = contentSecurityPolicy([`ws://${HOST}:${port}`]);

  let tokenUsed = false;
  const sessions: string[] = [];
  /** The page's first load: the printed token, once, for a session key. */
  const exchangeToken = (request: IncomingMessage): TokenExchange => {
    const given = requestUrl(request)?.searchParams.get('token');
    if (given === null || given === undefined) return { kind: 'none' };
    if (!sameSecret(given, token)) return { kind: 'wrong' };
    if (tokenUsed) return { kind: 'used' };
    tokenUsed = true;
    const session = newToken();
    sessions.push(session);
    return { kind: 'session', session };
  };
  const hasSession = (request: IncomingMessage): boolean => {
    const given = requestUrl(request)?.searchParams.get('session') ?? '';
    // Every key compared, whichever matches: the time taken says nothing about which.
    return sessions.reduce((found, session) => sameSecret(given, session) || found, false);
  };
  // A page on another host name that resolves to 127.0.0.1 (DNS rebinding) carries its own Host.
  const hasOurHost = (request: IncomingMessage): boolean => request.headers.host === `${HOST}:${port}`;

  server.on('request', (request, response) => {
    void serveHttp(request, response, {
      rendererDir: options.rendererDir,
      csp,
      hasOurHost,
      exchangeToken,
    });
  });

  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = requestUrl(request);
    if (url?.pathname !== '/ws') return refuseUpgrade(socket, 404, 'Not Found');
    if (!hasOurHost(request) || !hasSession(request) || request.headers.origin !== origin) {
      return refuseUpgrade(socket, 403, 'Forbidden');
    }
    sockets.handleUpgrade(request, socket, head, (connection) => serveSocket(connection, options));
  });

  return {
    url: `${origin}/?token=${token}`,
    port,
    token,
    async close() {
      for (const client of sockets.clients) client.terminate();
      await new Promise<void>((resolve) => sockets.close(() => resolve()));
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

type TokenExchange = { kind: 'none' | 'wrong' | 'used' } | { kind: 'session'; session: string };

interface HttpContext {
  rendererDir: string;
  csp: string;
  hasOurHost(request: IncomingMessage): boolean;
  exchangeToken(request: IncomingMessage): TokenExchange;
}

const TOKEN_USED =
  'Forbidden: this address has been opened already, and works once. Reload the page it opened (or duplicate its tab) for another window; ' +
  'to start afresh, stop browser mode and start it again. If you did not open it yourself, another program did: stop browser mode now.';

async function serveHttp(request: IncomingMessage, response: ServerResponse, context: HttpContext): Promise<void> {
  const url = requestUrl(request);
  if (url === null || !context.hasOurHost(request)) return plain(response, 403, 'Forbidden');
  if (request.method !== 'GET' && request.method !== 'HEAD') return plain(response, 405, 'Method Not Allowed');
  const isPage = url.pathname === '/' || url.pathname === '/index.html';
  // The page, scripts and styles are the same for everyone (the socket is what needs the session key).
  if (isPage) {
    // Only a GET uses the token up: a HEAD (a link checker, an opener probing the address) must not lock the user out.
    const exchange = request.method === 'GET' ? context.exchangeToken(request) : { kind: 'none' as const };
    if (exchange.kind === 'wrong') return plain(response, 403, 'Forbidden: open the address Cowbell printed');
    if (exchange.kind === 'used') return plain(response, 403, TOKEN_USED);
    if (exchange.kind === 'session') {
      response.writeHead(303, { location: `/#session=${exchange.session}`, 'cache-control': 'no-store', 'referrer-policy': 'no-referrer', 'content-length': 0 });
      response.end();
      return;
    }
  }
  const file = resolveStaticFile(context.rendererDir, url.pathname);
  if (file === null) return plain(response, 404, 'Not Found');
  let body: Buffer;
  try {
    body = await readFile(file);
  } catch {
    return plain(response, 404, 'Not Found');
  }
  response.writeHead(200, {
    'content-type': contentTypeOf(file),
    'content-length': body.length,
    'content-security-policy': context.csp,
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'cache-control': isPage ? 'no-store' : 'no-cache',
  });
  response.end(request.method === 'HEAD' ? undefined : body);
}

function serveSocket(connection: WebSocket, options: BrowserServerOptions): void {
  const send = (message: BridgeServerMessage): void => {
    if (connection.readyState === connection.OPEN) connection.send(JSON.stringify(message));
  };
  const unsubscribe = options.events.subscribe((event, payload) => send({ type: 'event', event, payload }));
  // The page's watches go with it (a closed or reloaded tab sends no unwatch).
  const ledger = watchLedger(options.handle);
  connection.on('close', () => {
    unsubscribe();
    void ledger.releaseAll();
  });
  connection.on('error', () => connection.terminate());
  connection.on('message', (data: RawData, isBinary: boolean) => {
    const message = isBinary ? null : parseClientMessage(data);
    if (message === null) {
      connection.close(1008, 'Expected a JSON request frame');
      return;
    }
    void ledger.handle(message.name, message.args).then((reply) => send({ type: 'reply', id: message.id, reply }));
  });
}

function parseClientMessage(data: RawData): z.infer<typeof ClientMessage> | null {
  try {
    const bytes = Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? Buffer.from(data) : data;
    const text = bytes.toString('utf8');
    const parsed = ClientMessage.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

function requestUrl(request: IncomingMessage): URL | null {
  try {
    return new URL(request.url ?? '/', `http://${HOST}`);
  } catch {
    return null;
  }
}

function sameSecret(given: string, expected: string): boolean {
  const givenBytes = Buffer.from(given);
  const expectedBytes = Buffer.from(expected);
  // timingSafeEqual needs equal lengths; comparing against ourselves keeps the time the same.
  if (givenBytes.length !== expectedBytes.length) {
    timingSafeEqual(expectedBytes, expectedBytes);
    return false;
  }
  return timingSafeEqual(givenBytes, expectedBytes);
}

function plain(response: ServerResponse, status: number, text: string): void {
  response.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

function refuseUpgrade(socket: Duplex, status: number, reason: string): void {
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`, () => socket.destroy());
}
