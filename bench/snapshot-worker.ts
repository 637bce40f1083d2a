/**
 * A warm engine for bench/snapshots.bench.ts: a worker thread that has loaded the engine once and
 * runs one snapshot operation per message, timing the operation itself (open, work, flush, close).
 */
import { parentPort } from 'node:worker_threads';
import { readSnapshotTree, readUsage, removeSnapshot, revertToSnapshot, takeSnapshot } from '../src/shared/qcow2/snapshots/operations.ts';

export type WorkerOp = 'create' | 'apply' | 'delete' | 'usage' | 'list';

export interface WorkerRequest {
  op: WorkerOp;
  image: string;
  name: string;
}

export interface WorkerReply {
  seconds: number;
  /** This thread's CPU time for the operation (user + system). */
  cpuSeconds: number;
  error?: string;
}

function run(request: WorkerRequest): void {
  if (request.op === 'create') takeSnapshot(request.image, request.name);
  else if (request.op === 'apply') revertToSnapshot(request.image, request.name);
  else if (request.op === 'delete') removeSnapshot(request.image, request.name);
  else if (request.op === 'usage') readUsage(request.image);
  else readSnapshotTree(request.image);
}

parentPort?.on('message', (request: WorkerRequest) => {
  const started = performance.now();
  const cpuBefore = process.threadCpuUsage();
  try {
    run(request);
    const cpu = process.threadCpuUsage(cpuBefore);
    parentPort?.postMessage({ seconds: (performance.now() - started) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6 } satisfies WorkerReply);
  } catch (error) {
    parentPort?.postMessage({ seconds: 0, cpuSeconds: 0, error: error instanceof Error ? error.message : String(error) } satisfies WorkerReply);
  }
});
