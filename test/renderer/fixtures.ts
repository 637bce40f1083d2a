import type { ImageInfo } from '../../src/shared/ipc/contract.ts';
import type { ApiConnection } from '../../src/renderer/src/api.ts';
import type { ConnectionState } from '../../src/renderer/src/bridge-client.ts';
import type { CowbellApi, EventName, EventPayloads, JobEnd } from '../../src/shared/ipc/contract.ts';

/** What `qemu-img info --output=json` says about a fresh 1 GiB v3 image with two snapshots. */
export function imageInfo(overrides: Partial<ImageInfo> = {}): ImageInfo {
  return {
    filename: '/disks/fedora.qcow2',
    format: 'qcow2',
    'virtual-size': 1073741824,
    'actual-size': 200704,
    'cluster-size': 65536,
    'dirty-flag': false,
    snapshots: [
      {
        id: '1',
        name: 'fresh install',
        'vm-state-size': 0,
        'date-sec': 1764085682,
        'date-nsec': 0,
        'vm-clock-sec': 0,
        'vm-clock-nsec': 0,
      },
      {
        id: '2',
        name: 'before upgrade',
        'vm-state-size': 536870912,
        'date-sec': 1764172082,
        'date-nsec': 0,
        'vm-clock-sec': 3725,
        'vm-clock-nsec': 250000000,
      },
    ],
    'format-specific': {
      type: 'qcow2',
      data: {
        compat: '1.1',
        'compression-type': 'zlib',
        'lazy-refcounts': false,
        'refcount-bits': 16,
        corrupt: false,
        'extended-l2': false,
      },
    },
    ...overrides,
  };
}

type Handler = (args: unknown) => unknown;

/** A CowbellApi whose replies are set per request name; a handler that throws becomes a rejection. */
export function fakeConnection(handlers: Record<string, Handler>): ApiConnection & {
  emit<E extends EventName>(event: E, payload: EventPayloads[E]): void;
  calls: { name: string; args: unknown }[];
} {
  const listeners = new Map<string, Set<(payload: unknown) => void>>();
  const calls: { name: string; args: unknown }[] = [];
  const api: CowbellApi = {
    async request(name, args) {
      calls.push({ name, args });
      const handler = handlers[name];
      if (!handler) throw { code: 'INVALID_REQUEST', message: `no fake for ${name}` };
      return (await handler(args)) as never;
    },
    on(event, listener) {
      const set = listeners.get(event) ?? new Set();
      listeners.set(event, set);
      set.add(listener as (payload: unknown) => void);
      return () => set.delete(listener as (payload: unknown) => void);
    },
  };
  const state: ConnectionState = 'open';
  return {
    api,
    transport: 'browser',
    state: () => state,
    onStateChange: () => () => undefined,
    calls,
    emit(event, payload) {
      for (const listener of listeners.get(event) ?? []) listener(payload);
    },
  };
}

/** A job the fake main was asked to start (ids job-1, job-2, … in order). */
export interface StartedJob {
  id: string;
  kind: string;
  path: string;
  args: Record<string, unknown>;
}

export type JobOutcome = { result: unknown } | { error: { code: string; message: string } };

/**
 * A fake main that starts jobs (each recorded in `started`) and cancels them, with `handlers` for
 * the other requests; `end` ends the latest job of a kind, as main's job.end event would.
 */
export function fakeJobsConnection(handlers: Record<string, Handler> = {}): {
  fake: ReturnType<typeof fakeConnection>;
  started: StartedJob[];
  end(kind: string, outcome: JobOutcome): void;
} {
  const started: StartedJob[] = [];
  const fake = fakeConnection({
    'job.start': (request) => {
      const { kind, path, args } = request as Omit<StartedJob, 'id'>;
      const id = `job-${started.length + 1}`;
      started.push({ id, kind, path, args });
      return { jobId: id };
    },
    'job.cancel': () => ({ cancelled: true }),
    ...handlers,
  });
  function end(kind: string, outcome: JobOutcome): void {
    const job = [...started].reverse().find((candidate) => candidate.kind === kind);
    if (!job) throw new Error(`no ${kind} job was started`);
    fake.emit('job.end', ('result' in outcome ? { jobId: job.id, ok: true, result: outcome.result } : { jobId: job.id, ok: false, error: outcome.error }) as JobEnd);
  }
  return { fake, started, end };
}

/**
 * The requests App makes as it starts in Electron, answered as an empty library would: mount App
 * on it to drive the shell (menus, dialogs); `extra` adds or replaces handlers.
 */
export function fakeElectronApp(extra: Record<string, Handler> = {}): ReturnType<typeof fakeConnection> {
  return fakeConnection({
    'app.about': () => ({ name: 'Cowbell', version: '0.1.0', mode: 'electron', platform: 'linux' }),
    'app.initialPaths': () => [],
    'image.open': (args) => imageInfo({ filename: (args as { path: string }).path }),
    'image.watch': () => null,
    'image.unwatch': () => null,
    'menu.recent': () => null,
    'path.stat': () => [],
    ...extra,
  });
}
