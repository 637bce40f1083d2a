/**
 * A warm engine for bench/convert.bench.ts: a worker thread that has loaded the engine once and
 * runs one convert per message, as the app's worker pool does, timing the convert itself.
 */
import { parentPort } from 'node:worker_threads';
import { convertImage, type ConvertRequest } from '../src/shared/qcow2/convert/convert.ts';

export interface ConvertReply {
  seconds: number;
  error?: string;
}

parentPort?.on('message', (request: ConvertRequest) => {
  const started = performance.now();
  try {
    convertImage(request);
    parentPort?.postMessage({ seconds: (performance.now() - started) / 1000 } satisfies ConvertReply);
  } catch (error) {
    parentPort?.postMessage({ seconds: 0, error: error instanceof Error ? error.message : String(error) } satisfies ConvertReply);
  }
});
