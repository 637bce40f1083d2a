/**
 * The page's only way out: `window.cowbell`, exactly the contract's requests and events over two
 * IPC channels. Runs sandboxed, so it imports nothing but `electron` (types are erased).
 */
import { contextBridge, ipcRenderer, webUtils, type IpcRendererEvent } from 'electron';
import { EVENT_CHANNEL, REQUEST_CHANNEL } from '../shared/ipc/channels.ts';
import type {
  CowbellApi,
  EventName,
  EventPayloads,
  Reply,
  RequestArgs,
  RequestName,
  RequestReply,
  WireError,
} from '../shared/ipc/contract.ts';

// Records over the contract's names: the compiler flags a name added to the contract but not here.
const REQUEST_NAMES: Record<RequestName, true> = {
  'app.about': true,
  'app.initialPaths': true,
  'image.open': true,
  'dialog.openImages': true,
  'path.complete': true,
  'job.start': true,
  'job.cancel': true,
  'job.list': true,
  'image.watch': true,
  'image.unwatch': true,
  'path.stat': true,
  'menu.recent': true,
  'path.reveal': true,
};

const EVENT_NAMES: Record<EventName, true> = {
  'job.progress': true,
  'job.end': true,
  'image.changed': true,
  'menu.command': true,
  'app.openPaths': true,
};

type Listener = (payload: unknown) => void;
const listeners = new Map<EventName, Set<Listener>>();

ipcRenderer.on(EVENT_CHANNEL, (_event: IpcRendererEvent, name: unknown, payload: unknown) => {
  if (typeof name !== 'string' || !Object.hasOwn(EVENT_NAMES, name)) return;
  for (const listener of listeners.get(name as EventName) ?? []) {
    try {
      listener(payload);
    } catch (error) {
      console.error(`cowbell: a listener for ${name} failed`, error);
    }
  }
});

function refused(message: string): WireError {
  return { code: 'INVALID_REQUEST', message };
}

const api: CowbellApi = {
  async request<N extends RequestName>(name: N, args: RequestArgs<N>): Promise<RequestReply<N>> {
    if (typeof name !== 'string' || !Object.hasOwn(REQUEST_NAMES, name)) {
      return Promise.reject(refused(`There is no request named ${String(name)}`));
    }
    const reply = (await ipcRenderer.invoke(REQUEST_CHANNEL, name, args)) as Reply<RequestReply<N>>;
    if (reply.ok) return reply.value;
    // A plain {code, message}: contextBridge copies an object's fields but drops an Error's extra ones.
    return Promise.reject(reply.error);
  },

  on<E extends EventName>(event: E, listener: (payload: EventPayloads[E]) => void): () => void {
    if (typeof event !== 'string' || !Object.hasOwn(EVENT_NAMES, event)) {
      throw new Error(`There is no event named ${String(event)}`);
    }
    const set = listeners.get(event) ?? new Set<Listener>();
    listeners.set(event, set);
    const wrapped = listener as Listener;
    set.add(wrapped);
    return () => {
      set.delete(wrapped);
    };
  },

  // A dropped File's path: the sandboxed page cannot read it since File.path was removed.
  pathForFile(file: File): string {
    return webUtils.getPathForFile(file);
  },
};

contextBridge.exposeInMainWorld('cowbell', api);
