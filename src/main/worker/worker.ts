/** The pool's worker entry: piscina calls the default export once per task. */
import { workerData } from 'node:worker_threads';
import { createJobRunner } from './job-runner.ts';
import { createJobTable, defaultWorkerSettings } from './job-table.ts';
import { workerSettings } from './protocol.ts';

export default createJobRunner(createJobTable(workerSettings(workerData, defaultWorkerSettings())));
