import { randomUUID } from 'node:crypto';
import type { z } from 'zod';
import { jobSchemas, type WireError } from '../shared/ipc/contract.ts';
import { scrubSecrets, secretsIn } from '../shared/ipc/secrets.ts';
import { fromWireError, RequestError, toWireError } from './errors.ts';
import type { EventSink } from './events.ts';
import { ImageQueue, imageKey, type Access } from './image-queue.ts';
import type { JobPool, RunOptions } from './pool.ts';
import { createProgressThrottle } from './progress-throttle.ts';

export interface JobSpec {
  access: Access;
  args: z.ZodType;
}

export type JobSpecs = Readonly<Record<string, JobSpec>>;

export interface JobManagerOptions {
  pool: JobPool;
  emit: EventSink;
  /** The contract's jobSchemas unless a test brings its own kinds (with a matching test worker). */
  specs?: JobSpecs;
  queue?: ImageQueue;
  progressIntervalMs?: number;
}

export interface JobManager {
  /** Validates and queues a job; its progress and end arrive as events. Throws RequestError. `title`: the job in words, for list. */
  start(kind: string, path: string, args: unknown, title?: string): string;
  /** The jobs started (not run) and not yet ended, oldest first. */
  list(): { jobId: string; kind: string; path: string; title: string | null }[];
  /** True when the job was still running or queued and has now been asked to stop. */
  cancel(jobId: string): boolean;
  /** Runs a job through the same queue and pool but hands back its result instead of events. */
  run(kind: string, path: string, args: unknown, signal?: AbortSignal): Promise<unknown>;
  cancelAll(): void;
  /** Resolves once every job started or run so far has ended (a cancelled change ends when it has finished safely). */
  settled(): Promise<void>;
}

const DEFAULT_PROGRESS_INTERVAL_MS = 100;

export function createJobManager(options: JobManagerOptions): JobManager {
  const specs: JobSpecs = options.specs ?? jobSchemas;
  const queue = options.queue ?? new ImageQueue();
  const intervalMs = options.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS;
  const running = new Map<string, AbortController>();
  const described = new Map<string, { jobId: string; kind: string; path: string; title: string | null }>();
  /** Every job not yet ended, started or run, for settled(). */
  const unsettled = new Set<Promise<unknown>>();
  function track<T>(job: Promise<T>): Promise<T> {
    const tracked = job.finally(() => unsettled.delete(tracked));
    unsettled.add(tracked);
    return tracked;
  }
  // Keys resolve (realpath) one after another, so jobs join their image's queue in the order they were asked for.
  let keyed: Promise<unknown> = Promise.resolve();

  function validate(kind: string, args: unknown): { spec: JobSpec; args: unknown } {
    const spec = Object.hasOwn(specs, kind) ? specs[kind] : undefined;
    if (spec === undefined) throw new RequestError(`There is no job named ${JSON.stringify(kind)}`);
    const parsed = spec.args.safeParse(args);
    if (!parsed.success) throw new RequestError(scrubSecrets(`Invalid arguments for ${kind}: ${describeIssues(parsed.error)}`, secretsIn(args)));
    return { spec, args: parsed.data };
  }

  /** Whatever a job failed with, as it may leave main: never with one of its passphrases in the words. */
  function wireErrorOf(error: unknown, args: unknown): WireError {
    const wire = toWireError(error);
    return { code: wire.code, message: scrubSecrets(wire.message, secretsIn(args)) };
  }

  async function execute(
    kind: string,
    path: string,
    valid: { spec: JobSpec; args: unknown },
    signal: AbortSignal,
    onProgress?: RunOptions['onProgress'],
  ): Promise<unknown> {
    const thisKey = keyed.then(() => imageKey(path));
    keyed = thisKey.catch(() => undefined);
    const key = await thisKey;
    return queue.run(
      key,
      valid.spec.access,
      async () => {
        try {
          // A change is never stopped from outside: it heeds the cancel until its commit point, then finishes (pool.ts).
          return await options.pool.run(kind, path, valid.args, { signal, onProgress, mayTerminate: valid.spec.access === 'read' });
        } finally {
          if (valid.spec.access === 'write') options.emit('image.changed', { path });
        }
      },
      signal,
    );
  }

  return {
    start(kind, path, args, title) {
      const valid = validate(kind, args);
      const jobId = randomUUID();
      const controller = new AbortController();
      running.set(jobId, controller);
      described.set(jobId, { jobId, kind, path, title: title ?? null });
      const progress = createProgressThrottle(jobId, (payload) => options.emit('job.progress', payload), intervalMs);
      const finish = (end: { ok: true; result: unknown } | { ok: false; error: WireError }): void => {
        running.delete(jobId);
        described.delete(jobId);
        progress.flush();
        options.emit('job.end', { jobId, ...end });
      };
      track(execute(kind, path, valid, controller.signal, progress.push)).then(
        (result) => finish({ ok: true, result }),
        (error: unknown) => finish({ ok: false, error: wireErrorOf(error, valid.args) }),
      );
      return jobId;
    },

    list() {
      return [...described.values()].map((job) => ({ ...job }));
    },

    cancel(jobId) {
      const controller = running.get(jobId);
      if (controller === undefined || controller.signal.aborted) return false;
      controller.abort();
      return true;
    },

    async run(kind, path, args, signal = new AbortController().signal) {
      const valid = validate(kind, args);
      try {
        return await track(execute(kind, path, valid, signal));
      } catch (error) {
        throw secretsIn(valid.args).length === 0 ? error : fromWireError(wireErrorOf(error, valid.args));
      }
    },

    cancelAll() {
      for (const controller of running.values()) controller.abort();
    },

    async settled() {
      while (unsettled.size > 0) await Promise.allSettled([...unsettled]);
    },
  };
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((issue) => (issue.path.length > 0 ? `${issue.path.join('.')}: ${issue.message}` : issue.message))
    .join('; ');
}
