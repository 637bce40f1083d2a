import { Qcow2Error } from './errors.ts';

/** What a long engine operation may report and must honour. Workers and the CLI supply one. */
export interface JobContext {
  /** Progress in bytes or steps; cheap enough to call often (callers throttle delivery). */
  progress(stage: string, done: number, total: number, unit?: 'bytes' | 'steps'): void;
  /** Throws Qcow2Error('CANCELLED') if the job was cancelled; call between units of work. */
  throwIfCancelled(): void;
}

export const silentJob: JobContext = {
  progress() {},
  throwIfCancelled() {},
};

/** A JobContext backed by a shared flag: another thread sets flag[0] to 1 to cancel. */
export function jobContextFromFlag(
  cancelFlag: Int32Array | null,
  onProgress: (stage: string, done: number, total: number, unit: 'bytes' | 'steps') => void,
): JobContext {
  return {
    progress(stage, done, total, unit = 'bytes') {
      onProgress(stage, done, total, unit);
    },
    throwIfCancelled() {
      if (cancelFlag !== null && Atomics.load(cancelFlag, 0) !== 0) {
        throw new Qcow2Error('CANCELLED', 'Cancelled; the image was left as it was');
      }
    },
  };
}
