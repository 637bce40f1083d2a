/**
 * The one way the renderer reaches main: Electron's `window.cowbell`, or in browser mode the
 * WebSocket bridge. Every failure comes out as an ApiError with a code.
 */
import type { CowbellApi, EventName, EventPayloads, RequestArgs, RequestName, RequestReply } from '../../shared/ipc/contract.ts';
import { toApiError } from './lib/api-error.ts';
import { bridgeUrl, createBridgeClient, type ConnectionState } from './bridge-client.ts';

export type { ConnectionState } from './bridge-client.ts';

export interface ApiConnection {
  readonly api: CowbellApi;
  /** Whether the page talks to Electron's preload or to the browser-mode bridge. */
  readonly transport: 'electron' | 'browser';
  state(): ConnectionState;
  onStateChange(listener: (state: ConnectionState) => void): () => void;
}

let current: ApiConnection | null = null;

function connect(): ApiConnection {
  const preload = window.cowbell;
  if (preload) {
    return { api: preload, transport: 'electron', state: () => 'open', onStateChange: () => () => undefined };
  }
  const bridge = createBridgeClient(bridgeUrl(window.location));
  return {
    api: bridge,
    transport: 'browser',
    state: () => bridge.state,
    onStateChange: (listener) => bridge.onStateChange(listener),
  };
}

export function connection(): ApiConnection {
  current ??= connect();
  return current;
}

/** Tests hand in a fake; the app never calls this. */
export function replaceConnection(replacement: ApiConnection | null): void {
  current = replacement;
}

export async function request<N extends RequestName>(name: N, args: RequestArgs<N>): Promise<RequestReply<N>> {
  try {
    return await connection().api.request(name, args);
  } catch (error) {
    throw toApiError(error);
  }
}

export function on<E extends EventName>(event: E, listener: (payload: EventPayloads[E]) => void): () => void {
  return connection().api.on(event, listener);
}

/** A dropped file's path: Electron's preload knows it; the browser-mode bridge cannot (null). */
export function pathForFile(file: File): string | null {
  const api = connection().api;
  if (typeof api.pathForFile !== 'function') return null;
  try {
    const path = api.pathForFile(file);
    return path === '' ? null : path;
  } catch {
    return null;
  }
}
