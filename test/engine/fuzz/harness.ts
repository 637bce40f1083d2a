/**
 * Runs fuzz cases in resource-limited worker threads with a deadline per target. A worker is
 * reused from case to case and replaced only when a target hangs, exhausts its heap or kills it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { CaseRequest, HarnessMessage, TargetOutcome, WorkerMessage, WorkerSettings } from './protocol.ts';

export interface HarnessOptions {
  /** A folder the harness owns: one subfolder per worker, with the companions copied in. */
  folder: string;
  workers: number;
  /**
   * CPU time one target may use on one image (the worker thread's own, so a machine busy with
   * other work does not turn a slow target into a "hang").
   */
  deadlineMs: number;
  /** Wall-clock time one target may take whatever its CPU use: a target blocked on I/O hangs too. */
  wallDeadlineMs: number;
  /** A target past its deadline gets one more try in a fresh worker (a busy machine is not a hang). */
  retryHangs: boolean;
  heapLimitMb: number;
  allocationLimitBytes: number;
  /** Files the images refer to by relative name (backing files), placed beside each image. */
  companions: { name: string; bytes: Uint8Array }[];
}

export const DEFAULT_HARNESS: Omit<HarnessOptions, 'folder' | 'companions'> = {
  workers: 2,
  deadlineMs: 2000,
  wallDeadlineMs: 60_000,
  retryHangs: true,
  heapLimitMb: 256,
  allocationLimitBytes: 64 * 1024 * 1024,
};

/** How long close() waits for an idle worker to end on its own before terminating it. */
const STOP_GRACE_MS = 5_000;

const WORKER_URL = new URL('./fuzz-worker.ts', import.meta.url);

/** CPU time the worker thread has used so far (0 once it is gone). */
async function threadCpuMs(worker: Worker): Promise<number> {
  try {
    const usage = await worker.cpuUsage();
    return (usage.user + usage.system) / 1000;
  } catch {
    return 0;
  }
}
const IMAGE = 'image.qcow2';

/** Bytes written over an image at an offset (a damage). */
export interface BytePatch {
  offset: number;
  bytes: ArrayLike<number>;
}

/** One worker thread and the folder its images go to. */
class Slot {
  private worker: Worker | null = null;
  private ready: Promise<Worker> | null = null;
  readonly folder: string;
  private readonly options: HarnessOptions;
  /** The pristine image this slot's file holds as it is (runPatched), or null. */
  private onFile: Uint8Array | null = null;

  constructor(folder: string, options: HarnessOptions) {
    this.folder = folder;
    this.options = options;
  }

  private spawn(): Promise<Worker> {
    if (this.ready !== null) return this.ready;
    const settings: WorkerSettings = { allocationLimitBytes: this.options.allocationLimitBytes };
    const worker = new Worker(WORKER_URL, {
      workerData: settings,
      resourceLimits: { maxOldGenerationSizeMb: this.options.heapLimitMb, maxYoungGenerationSizeMb: 32, stackSizeMb: 4 },
      stdout: false,
      stderr: false,
    });
    this.worker = worker;
    this.ready = new Promise((resolve, reject) => {
      const onMessage = (message: WorkerMessage): void => {
        if (message.type !== 'ready') return;
        worker.off('message', onMessage);
        worker.off('error', reject);
        resolve(worker);
      };
      worker.on('message', onMessage);
      worker.once('error', reject);
    });
    return this.ready;
  }

  private async kill(): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    this.ready = null;
    if (worker !== null) await worker.terminate();
  }

  /**
   * Runs `targets` in order on the image in this slot's folder. Returns the outcomes so far and
   * the target that killed the worker (hang, heap, crash), if one did; the caller carries on
   * after it in a fresh worker.
   */
  private async attempt(targets: string[]): Promise<TargetOutcome[]> {
    const worker = await this.spawn();
    const outcomes: TargetOutcome[] = [];
    const request: CaseRequest = { type: 'case', imagePath: path.join(this.folder, IMAGE), targets };
    return await new Promise<TargetOutcome[]>((resolve) => {
      let current: string | null = null;
      let timer: NodeJS.Timeout | null = null;
      const { deadlineMs, wallDeadlineMs } = this.options;
      // Re-checks the running target's CPU time until it finishes or runs out of time.
      let runs = 0;
      const watch = (target: string, run: number, startedAt: number, cpuAtStart: Promise<number>, waitMs: number): void => {
        timer = setTimeout(() => {
          void Promise.all([cpuAtStart, threadCpuMs(worker)]).then(([before, now]) => {
            if (run !== runs || current === null) return;
            const cpuMs = now - before;
            const wallMs = Date.now() - startedAt;
            if (cpuMs >= deadlineMs || wallMs >= wallDeadlineMs) {
              finish({ target, status: 'hang', message: `still running after ${cpuMs.toFixed(0)} ms of CPU time (${wallMs} ms)` });
            } else watch(target, run, startedAt, cpuAtStart, Math.max(50, Math.min(deadlineMs - cpuMs, wallDeadlineMs - wallMs)));
          });
        }, waitMs);
      };
      let settled = false;
      const finish = (death: TargetOutcome | null): void => {
        if (settled) return;
        settled = true;
        if (timer !== null) clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
        if (death !== null) {
          outcomes.push(death);
          void this.kill().then(() => resolve(outcomes));
        } else resolve(outcomes);
      };
      const onMessage = (message: WorkerMessage): void => {
        if (message.type === 'start') {
          current = message.target;
          watch(message.target, ++runs, Date.now(), threadCpuMs(worker), deadlineMs);
        } else if (message.type === 'result') {
          if (timer !== null) clearTimeout(timer);
          timer = null;
          current = null;
          outcomes.push(message.outcome);
        } else if (message.type === 'done') finish(null);
      };
      const onError = (error: Error): void => {
        const code = (error as { code?: unknown }).code;
        const status = code === 'ERR_WORKER_OUT_OF_MEMORY' ? 'oom' : 'crash';
        finish({ target: current ?? targets[outcomes.length] ?? '?', status, code: String(code ?? error.name), message: error.message });
      };
      const onExit = (exitCode: number): void => {
        finish({ target: current ?? targets[outcomes.length] ?? '?', status: 'crash', message: `the worker exited with code ${exitCode}` });
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      worker.postMessage(request);
    });
  }

  async run(image: Uint8Array, targets: string[]): Promise<TargetOutcome[]> {
    fs.writeFileSync(path.join(this.folder, IMAGE), image);
    this.onFile = null;
    return this.runTargets(targets);
  }

  /**
   * `pristine` with `patches` applied, written as only the patched bytes over the pristine image
   * this slot's file already holds (written whole the first time), which are put back afterwards:
   * a campaign over a 96 MiB volume otherwise writes the whole volume for every case.
   */
  async runPatched(pristine: Uint8Array, patches: readonly BytePatch[], targets: string[]): Promise<TargetOutcome[]> {
    const file = path.join(this.folder, IMAGE);
    if (this.onFile !== pristine) {
      fs.writeFileSync(file, pristine);
      this.onFile = pristine;
    }
    const handle = fs.openSync(file, 'r+');
    try {
      for (const patch of patches) fs.writeSync(handle, Uint8Array.from(patch.bytes), 0, patch.bytes.length, patch.offset);
      return await this.runTargets(targets);
    } finally {
      for (const patch of patches) {
        const end = Math.min(patch.offset + patch.bytes.length, pristine.length);
        fs.writeSync(handle, pristine, patch.offset, Math.max(0, end - patch.offset), patch.offset);
        // A patch past the pristine image's end grew the file: cut it back.
        if (patch.offset + patch.bytes.length > pristine.length) fs.ftruncateSync(handle, pristine.length);
      }
      fs.closeSync(handle);
    }
  }

  private async runTargets(targets: string[]): Promise<TargetOutcome[]> {
    const outcomes: TargetOutcome[] = [];
    let remaining = targets;
    while (remaining.length > 0) {
      const done = await this.attempt(remaining);
      const last = done[done.length - 1];
      if (last !== undefined && last.status === 'hang' && this.options.retryHangs) {
        const [again] = await this.attempt([last.target]);
        if (again !== undefined && again.status !== 'hang') done[done.length - 1] = again;
      }
      outcomes.push(...done);
      remaining = targets.slice(outcomes.length);
    }
    return outcomes;
  }

  /** Asks an idle worker to end (its port closes and its thread leaves); terminates it if it has not after a while. */
  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    this.ready = null;
    if (worker === null) return;
    const ended = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), STOP_GRACE_MS);
      worker.once('exit', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    worker.postMessage({ type: 'stop' } satisfies HarnessMessage);
    if (!(await ended)) await worker.terminate();
  }
}

export class FuzzHarness {
  private readonly idle: Slot[];
  private readonly slots: Slot[];
  private readonly waiting: ((slot: Slot) => void)[] = [];

  constructor(options: HarnessOptions) {
    this.slots = [];
    for (let index = 0; index < options.workers; index++) {
      const folder = path.join(options.folder, `worker-${index}`);
      fs.mkdirSync(folder, { recursive: true });
      for (const companion of options.companions) fs.writeFileSync(path.join(folder, companion.name), companion.bytes);
      this.slots.push(new Slot(folder, options));
    }
    this.idle = [...this.slots];
  }

  /** Runs the targets on one image as soon as a worker is free. */
  async run(image: Uint8Array, targets: string[]): Promise<TargetOutcome[]> {
    const slot = this.idle.pop() ?? (await new Promise<Slot>((resolve) => this.waiting.push(resolve)));
    try {
      return await slot.run(image, targets);
    } finally {
      const next = this.waiting.shift();
      if (next !== undefined) next(slot);
      else this.idle.push(slot);
    }
  }

  /** `pristine` with `patches` applied, as soon as a worker is free (see Slot.runPatched). */
  async runPatched(pristine: Uint8Array, patches: readonly BytePatch[], targets: string[]): Promise<TargetOutcome[]> {
    const slot = this.idle.pop() ?? (await new Promise<Slot>((resolve) => this.waiting.push(resolve)));
    try {
      return await slot.runPatched(pristine, patches, targets);
    } finally {
      const next = this.waiting.shift();
      if (next !== undefined) next(slot);
      else this.idle.push(slot);
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.slots.map((slot) => slot.close()));
  }
}
