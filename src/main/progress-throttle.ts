import type { JobProgress } from '../shared/ipc/contract.ts';
import type { ProgressMessage } from './worker/protocol.ts';

export interface ProgressThrottle {
  push(progress: ProgressMessage): void;
  /** Sends the progress still held back, so the last one always arrives before the job's end. */
  flush(): void;
}

/** At most one progress event per interval for a job, always ending with the latest. */
export function createProgressThrottle(
  jobId: string,
  send: (progress: JobProgress) => void,
  intervalMs: number,
): ProgressThrottle {
  let lastSentAt = Number.NEGATIVE_INFINITY;
  let pending: JobProgress | null = null;
  let timer: NodeJS.Timeout | undefined;

  const sendPending = (): void => {
    clearTimeout(timer);
    timer = undefined;
    if (pending === null) return;
    const progress = pending;
    pending = null;
    lastSentAt = Date.now();
    send(progress);
  };

  return {
    push(progress) {
      pending = { jobId, ...progress };
      const wait = lastSentAt + intervalMs - Date.now();
      if (wait <= 0) sendPending();
      else timer ??= setTimeout(sendPending, wait);
    },
    flush: sendPending,
  };
}
