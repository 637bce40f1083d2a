import { lstat, stat } from 'node:fs/promises';
import { platform } from 'node:process';
import {
  isJobKind,
  requestSchemas,
  type PathStat,
  type Reply,
  type RequestArgs,
  type RequestName,
  type RequestReply,
} from '../shared/ipc/contract.ts';
import type { ImageInfo } from '../shared/qcow2/model.ts';
import { scrubSecrets, secretsIn } from '../shared/ipc/secrets.ts';
import { RequestError, toWireError } from './errors.ts';
import type { ImageWatcher } from './image-watch.ts';
import type { JobManager } from './jobs.ts';
import { completePath } from './path-complete.ts';
import { requireExistingFile, requireJobPaths, requireWellFormedPath, requireWellFormedPrefix } from './request-paths.ts';

/** What differs between Electron and browser mode; everything else is shared. */
export interface HandlerSeam {
  mode: 'electron' | 'browser';
  version: string;
  jobs: JobManager;
  /** Paths given on the command line (and, in Electron, by later launches). */
  initialPaths(): string[];
  /** The native Open dialog; browser mode has none and answers with no paths. */
  openDialog(): Promise<string[]>;
  /** Reports changes other programs make to open disks; without one, watch requests do nothing. */
  watcher?: ImageWatcher;
  /** Electron's File > Open Recent; browser mode has no menu. */
  setRecentDisks?(paths: string[]): void;
  /** Shows a file or folder in the system's file manager (Electron); browser mode has none. */
  revealPath?(path: string): void;
}

/** One entry point for every request, whatever carried it: validates, dispatches, never throws. */
export type RequestHandle = (name: unknown, args: unknown) => Promise<Reply<unknown>>;

type Handlers = { [N in RequestName]: (args: RequestArgs<N>) => Promise<RequestReply<N>> };

export function createRequestHandle(seam: HandlerSeam): RequestHandle {
  // Path checks are asynchronous; requests still reach the job manager in the order they arrived.
  let checks: Promise<unknown> = Promise.resolve();
  function afterChecks<T>(check: () => Promise<unknown>, enqueue: () => T): Promise<T> {
    const turn = checks.then(check).then(enqueue);
    checks = turn.catch(() => undefined);
    return turn;
  }

  // What restores were asked to write: the only paths the page may have shown in the file manager.
  const restoredTargets = new Set<string>();

  const handlers: Handlers = {
    'app.about': async () => ({ name: 'Cowbell', version: seam.version, mode: seam.mode, platform }),
    'app.initialPaths': async () => [...seam.initialPaths()],
    'image.open': async ({ path }) => {
      // Boxed so the queue of checks moves on once the job is queued, not once it is done.
      const job = await afterChecks(
        () => requireExistingFile(path),
        () => ({ result: seam.jobs.run('image.info', path, {}) }),
      );
      return (await job.result) as ImageInfo;
    },
    'dialog.openImages': () => seam.openDialog(),
    'path.complete': ({ prefix }) => completePath(requireWellFormedPrefix(prefix)),
    'job.start': ({ kind, path, args, title }) =>
      afterChecks(
        () => requireJobPaths(kind, path, args),
        () => {
          const jobId = title === undefined ? seam.jobs.start(kind, path, args) : seam.jobs.start(kind, path, args, title);
          const target = kind === 'files.copyOut' ? (args as { target?: unknown }).target : undefined;
          if (typeof target === 'string') restoredTargets.add(target);
          return { jobId };
        },
      ),
    'job.cancel': async ({ jobId }) => ({ cancelled: seam.jobs.cancel(jobId) }),
    'job.list': async () => seam.jobs.list().flatMap(({ kind, ...job }) => (isJobKind(kind) ? [{ ...job, kind }] : [])),
    'image.watch': async ({ path }) => {
      seam.watcher?.watch(await requireExistingFile(path));
      return null;
    },
    'image.unwatch': async ({ path }) => {
      // A disk deleted meanwhile must still be unwatched: the path only has to be well formed.
      seam.watcher?.unwatch(requireWellFormedPath(path));
      return null;
    },
    'path.stat': ({ paths }) => Promise.all(paths.map((path) => statPath(requireWellFormedPath(path)))),
    'path.reveal': async ({ path }) => {
      if (!restoredTargets.has(path)) throw new RequestError('Only a copy Cowbell restored can be shown in the file manager');
      if (seam.revealPath === undefined) return { revealed: false };
      await lstat(path);
      seam.revealPath(path);
      return { revealed: true };
    },
    'menu.recent': async ({ paths }) => {
      seam.setRecentDisks?.(paths.map((path) => requireWellFormedPath(path)));
      return null;
    },
  };

  return async (name, args) => {
    try {
      if (typeof name !== 'string' || !Object.hasOwn(requestSchemas, name)) {
        throw new RequestError(`There is no request named ${JSON.stringify(name)}`);
      }
      const requestName = name as RequestName;
      const parsed = requestSchemas[requestName].safeParse(args);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
        throw new RequestError(`Invalid arguments for ${requestName}: ${where}${issue?.message ?? 'rejected'}`);
      }
      const handler = handlers[requestName] as (valid: unknown) => Promise<unknown>;
      return { ok: true, value: await handler(parsed.data) };
    } catch (error) {
      const wire = toWireError(error);
      // A refused job.start (its paths, its arguments) answers without the passphrases it carried.
      const secrets = name === 'job.start' && typeof args === 'object' && args !== null ? secretsIn((args as { args?: unknown }).args) : [];
      return { ok: false, error: { code: wire.code, message: scrubSecrets(wire.message, secrets) } };
    }
  };
}

async function statPath(path: string): Promise<PathStat> {
  try {
    const info = await stat(path);
    return { path, kind: info.isFile() ? 'file' : info.isDirectory() ? 'folder' : 'other' };
  } catch {
    // A link that leads nowhere still takes the name: a new file cannot be made there.
    try {
      await lstat(path);
      return { path, kind: 'other' };
    } catch {
      return { path, kind: 'missing' };
    }
  }
}
