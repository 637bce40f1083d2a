/**
 * PBKDF2 (RFC 8018 §5.2) for LUKS key slots and the master key digest, through node:crypto, and
 * the iteration counts QEMU picks for a time budget (crypto/pbkdf.c, block-luks.c): measure the
 * rate for this hash and output length, scale it to iter-time, at least 1000. node:crypto's
 * pbkdf2Sync cannot be interrupted or report progress: a slot with QEMU's default 2 s budget
 * blocks its thread for ~2 s per try, so callers run it in a worker and cancel between slots.
 */
import { nodeCrypto } from './node-crypto.ts';
import { Qcow2Error } from '../errors.ts';
import { LUKS_MAX_ITERATIONS, type LuksHash } from '../format/luks-header.ts';

export const MIN_ITERATIONS = 1000;
/** QEMU's default iter-time. */
export const DEFAULT_ITER_TIME_MS = 2000;

export function pbkdf2(hash: LuksHash, secret: Uint8Array, salt: Uint8Array, iterations: number, length: number): Uint8Array {
  if (!Number.isInteger(iterations) || iterations < 1 || iterations > LUKS_MAX_ITERATIONS) {
    throw new Qcow2Error('INVALID_ARGUMENT', `${iterations} PBKDF2 iterations is out of range (1 to ${LUKS_MAX_ITERATIONS})`);
  }
  return new Uint8Array(nodeCrypto().pbkdf2Sync(secret, salt, iterations, length, hash));
}

/** This thread's CPU time in ms where Node tells it (24+, as QEMU times its thread), else wall time. */
const threadCpuUsage = (process as { threadCpuUsage?: () => { user: number; system: number } }).threadCpuUsage;
function clockMs(): number {
  if (threadCpuUsage === undefined) return performance.now();
  const usage = threadCpuUsage.call(process);
  return (usage.user + usage.system) / 1000;
}

/** PBKDF2 iterations per second of this thread's time for this hash and output length, timed over at least ~50 ms. */
export function pbkdf2IterationsPerSecond(hash: LuksHash, outputBytes: number): number {
  const secret = new Uint8Array(32);
  const salt = new Uint8Array(32);
  let iterations = 1 << 12;
  for (;;) {
    const start = clockMs();
    nodeCrypto().pbkdf2Sync(secret, salt, iterations, outputBytes, hash);
    const elapsedMs = clockMs() - start;
    if (elapsedMs >= 50 || iterations >= LUKS_MAX_ITERATIONS) return (iterations * 1000) / Math.max(elapsedMs, 0.001);
    iterations = Math.min(LUKS_MAX_ITERATIONS, iterations * (elapsedMs < 5 ? 10 : Math.ceil(60 / elapsedMs)));
  }
}

/** QEMU's choice: rate × iterTimeMs / divisor (8 for the master key digest), at least 1000. */
export function iterationsForTime(hash: LuksHash, outputBytes: number, iterTimeMs: number, divisor = 1): number {
  if (!Number.isFinite(iterTimeMs) || iterTimeMs <= 0) throw new Qcow2Error('INVALID_ARGUMENT', `iter-time must be a positive number of milliseconds, not ${iterTimeMs}`);
  const iterations = Math.floor((pbkdf2IterationsPerSecond(hash, outputBytes) * iterTimeMs) / 1000 / divisor);
  if (iterations > LUKS_MAX_ITERATIONS) throw new Qcow2Error('INVALID_ARGUMENT', `iter-time ${iterTimeMs} ms asks for ${iterations} PBKDF2 iterations, more than the ${LUKS_MAX_ITERATIONS} Cowbell accepts`);
  return Math.max(iterations, MIN_ITERATIONS);
}
