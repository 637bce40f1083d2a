/**
 * Browser mode's `CowbellApi`: requests and events over the WebSocket protocol declared in the
 * contract (`BridgeClientMessage` / `BridgeServerMessage`). It never reconnects: once the socket
 * closes every pending and later request fails with DISCONNECTED and the UI says so.
 */
import type {
  BridgeClientMessage,
  CowbellApi,
  EventName,
  EventPayloads,
  RequestArgs,
  RequestName,
  RequestReply,
} from '../../shared/ipc/contract.ts';
import { ApiError, isApiErrorCode } from './lib/api-error.ts';

export type ConnectionState = 'connecting' | 'open' | 'lost';

/** The part of the DOM WebSocket the bridge uses, so tests can hand it a fake. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(): void;
  addEventListener(type: 'open' | 'close' | 'error', listener: () => void): void;
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void;
}

export type WebSocketFactory = (url: string) => WebSocketLike;

export interface BridgeClient extends CowbellApi {
  readonly state: ConnectionState;
  onStateChange(listener: (state: ConnectionState) => void): () => void;
  close(): void;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: ApiError) => void;
}

type Listener = (payload: unknown) => void;

// A Record over EventName makes the compiler flag an event the contract adds but the bridge would drop.
const KNOWN_EVENTS: Record<EventName, true> = {
  'job.progress': true,
  'job.end': true,
  'image.changed': true,
  'menu.command': true,
  'app.openPaths': true,
};

function isEventName(value: unknown): value is EventName {
  return typeof value === 'string' && Object.hasOwn(KNOWN_EVENTS, value);
}

/**
 * `ws(s)://HOST/ws?session=KEY` for the page's own host and the session key in its fragment (the
 * server traded the printed address's one-time token for it: browser-server.ts). A page opened
 * without one cannot connect, and says so.
 */
export function bridgeUrl(location: Pick<Location, 'protocol' | 'host' | 'hash'>): string {
  const session = new URLSearchParams(location.hash.replace(/^#/, '')).get('session') ?? '';
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws?session=${encodeURIComponent(session)}`;
}

export function createBridgeClient(
  url: string,
  createSocket: WebSocketFactory = (socketUrl) => new WebSocket(socketUrl),
): BridgeClient {
  let state: ConnectionState = 'connecting';
  let nextId = 1;
  const pending = new Map<number, Pending>();
  const unsent: string[] = [];
  const listeners = new Map<EventName, Set<Listener>>();
  const stateListeners = new Set<(state: ConnectionState) => void>();

  const socket = createSocket(url);

  function setState(next: ConnectionState): void {
    if (state === next) return;
    state = next;
    for (const listener of stateListeners) listener(next);
  }

  function lose(): void {
    if (state === 'lost') return;
    setState('lost');
    unsent.length = 0;
    const failed = [...pending.values()];
    pending.clear();
    for (const request of failed) {
      request.reject(new ApiError('DISCONNECTED', 'The connection to Cowbell was lost.'));
    }
  }

  socket.addEventListener('open', () => {
    setState('open');
    for (const frame of unsent.splice(0)) socket.send(frame);
  });
  socket.addEventListener('close', lose);
  socket.addEventListener('error', lose);
  socket.addEventListener('message', (event) => handleFrame(event.data));

  function handleFrame(data: unknown): void {
    if (typeof data !== 'string') return;
    let frame: unknown;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (typeof frame !== 'object' || frame === null) return;
    const message = frame as { type?: unknown; id?: unknown; reply?: unknown; event?: unknown; payload?: unknown };
    if (message.type === 'reply' && typeof message.id === 'number') {
      settle(message.id, message.reply);
    } else if (message.type === 'event' && isEventName(message.event)) {
      for (const listener of listeners.get(message.event) ?? []) {
        try {
          listener(message.payload);
        } catch (error) {
          console.error(`listener for ${message.event} failed`, error);
        }
      }
    }
  }

  function settle(id: number, reply: unknown): void {
    const request = pending.get(id);
    if (!request) return;
    pending.delete(id);
    const shaped = (typeof reply === 'object' && reply !== null ? reply : {}) as {
      ok?: unknown;
      value?: unknown;
      error?: { code?: unknown; message?: unknown };
    };
    if (shaped.ok === true) {
      request.resolve(shaped.value);
    } else if (shaped.ok === false && typeof shaped.error === 'object' && shaped.error !== null) {
      const code = isApiErrorCode(shaped.error.code) ? shaped.error.code : 'INTERNAL';
      const text = typeof shaped.error.message === 'string' ? shaped.error.message : 'The request failed.';
      request.reject(new ApiError(code, text));
    } else {
      request.reject(new ApiError('BAD_REPLY', 'Cowbell sent a reply this window cannot read.'));
    }
  }

  return {
    get state() {
      return state;
    },

    request<N extends RequestName>(name: N, args: RequestArgs<N>): Promise<RequestReply<N>> {
      if (state === 'lost') {
        return Promise.reject(new ApiError('DISCONNECTED', 'The connection to Cowbell was lost.'));
      }
      const id = nextId++;
      const message: BridgeClientMessage = { type: 'request', id, name, args };
      const frame = JSON.stringify(message);
      return new Promise<RequestReply<N>>((resolve, reject) => {
        // The reply's value is checked where it is used (see reply-guards.ts), not here.
        pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
        if (state === 'open') socket.send(frame);
        else unsent.push(frame);
      });
    },

    on<E extends EventName>(event: E, listener: (payload: EventPayloads[E]) => void): () => void {
      const set = listeners.get(event) ?? new Set<Listener>();
      listeners.set(event, set);
      const untyped = listener as Listener;
      set.add(untyped);
      return () => set.delete(untyped);
    },

    onStateChange(listener) {
      stateListeners.add(listener);
      return () => stateListeners.delete(listener);
    },

    close() {
      socket.close();
      lose();
    },
  };
}
