import { scrubSecrets, secretsIn } from '../../shared/ipc/secrets.ts';
import { jobContextFromFlag } from '../../shared/qcow2/job-context.ts';
import { toWireError } from '../errors.ts';
import type { JobTable, PortMessage, ProgressMessage, WorkerOutcome, WorkerTask } from './protocol.ts';

const PROGRESS_INTERVAL_MS = 25;

/**
 * The body of a pool worker for a given job table. Errors never escape as exceptions: they come
 * back as `{code, message}` so the engine's codes survive the thread boundary, scrubbed of the
 * job's passphrases.
 */
export function createJobRunner(table: JobTable): (task: WorkerTask) => Promise<WorkerOutcome> {
  return async function runJob(task) {
    const progress = throttledPoster(task);
    try {
      const job = Object.hasOwn(table, task.kind) ? table[task.kind] : undefined;
      if (job === undefined) {
        return { ok: false, error: { code: 'INTERNAL', message: `This worker has no job named ${task.kind}` } };
      }
      const context = jobContextFromFlag(task.cancelFlag, progress.post);
      context.throwIfCancelled();
      const result = await job(task.path, task.args as never, context);
      return { ok: true, result };
    } catch (error) {
      // The engine never puts a passphrase in its words; this makes sure nothing else does either.
      const wire = toWireError(error);
      return { ok: false, error: { code: wire.code, message: scrubSecrets(wire.message, secretsIn(task.args)) } };
    } finally {
      progress.flush();
      task.progressPort.postMessage({ type: 'end' } satisfies PortMessage);
      task.progressPort.close();
    }
  };
}

/** Engines may report on every cluster; the port gets at most one message per interval, and always the last. */
function throttledPoster(task: WorkerTask) {
  let lastPostAt = 0;
  let pending: ProgressMessage | null = null;
  let lastStage = '';
  const send = (message: ProgressMessage): void => {
    lastPostAt = Date.now();
    lastStage = message.stage;
    pending = null;
    task.progressPort.postMessage({ type: 'progress', ...message } satisfies PortMessage);
  };
  return {
    post(stage: string, done: number, total: number, unit: 'bytes' | 'steps'): void {
      const message = { stage, done, total, unit };
      if (stage !== lastStage || Date.now() - lastPostAt >= PROGRESS_INTERVAL_MS) send(message);
      else pending = message;
    },
    flush(): void {
      if (pending !== null) send(pending);
    },
  };
}
