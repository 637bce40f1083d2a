/** Messages between the fuzz harness and its worker threads. */

export interface WorkerSettings {
  allocationLimitBytes: number;
}

/** One mutated image and the targets to run on it, in order. */
export interface CaseRequest {
  type: 'case';
  imagePath: string;
  targets: string[];
}

/**
 * What the harness sends a worker: a case, or `stop` to an idle worker, which then closes its port
 * and ends on its own. terminate() is kept for a worker that hangs: stopping an idle worker with
 * it has crashed Node 24's V8 once ("Check failed: jit_page.has_value()" while the thread ended).
 */
export type HarnessMessage = CaseRequest | { type: 'stop' };

export type OutcomeStatus =
  /** Returned normally. */
  | 'ok'
  /** Threw a Qcow2Error (its code may still be unacceptable: see the oracle). */
  | 'typed'
  /** Threw anything else: TypeError, RangeError, a bare Error… */
  | 'raw'
  /** Asked for a buffer over the allocation limit. */
  | 'memory'
  /** Ran past the deadline (twice): the worker was terminated. */
  | 'hang'
  /** Exhausted the worker's heap limit. */
  | 'oom'
  /** The worker died some other way. */
  | 'crash';

export interface TargetOutcome {
  target: string;
  status: OutcomeStatus;
  code?: string;
  message?: string;
  stack?: string;
  /** CPU time the target used (its worker thread's). */
  ms?: number;
}

export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'start'; target: string }
  | { type: 'result'; outcome: TargetOutcome }
  | { type: 'done' };

/** One engine entry point a user reaches, run on an image by path. */
export interface FuzzTarget {
  name: string;
  run(imagePath: string): unknown;
}
