/**
 * Runs one convert in a worker thread for the CLI, so that the main thread stays free to turn
 * Ctrl-C into a clean cancel (the engine's copy loop is synchronous): main sets the shared flag,
 * the engine stops between chunks and removes its temporary file.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { convertImage, type ConvertRequest } from '../shared/qcow2/convert.ts';
import { Qcow2Error } from '../shared/qcow2/errors.ts';
import { jobContextFromFlag } from '../shared/qcow2/job-context.ts';

export interface ConvertWorkerData {
  request: ConvertRequest;
  cancelFlag: Int32Array;
}

export type ConvertWorkerMessage =
  | { type: 'progress'; done: number; total: number }
  | { type: 'done' }
  | { type: 'error'; code: string; message: string };

const { request, cancelFlag } = workerData as ConvertWorkerData;
const post = (message: ConvertWorkerMessage): void => parentPort?.postMessage(message);
try {
  convertImage(request, jobContextFromFlag(cancelFlag, (_stage, done, total) => post({ type: 'progress', done, total })));
  post({ type: 'done' });
} catch (error) {
  if (error instanceof Qcow2Error) post({ type: 'error', code: error.code, message: error.message });
  else post({ type: 'error', code: 'INTERNAL', message: error instanceof Error ? error.message : String(error) });
}
