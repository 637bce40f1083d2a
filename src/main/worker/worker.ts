/** The pool's worker entry: piscina calls the default export once per task. */
import { workerData } from 'node:worker_threads';
import { useSharedKeyStore } from '../../shared/qcow2/files/luks-key-cache.ts';
import { createJobRunner } from './job-runner.ts';
import { createJobTable, defaultWorkerSettings } from './job-table.ts';
import { workerSettings } from './protocol.ts';

const settings = workerSettings(workerData, defaultWorkerSettings());
if (settings.volumeKeys !== undefined) useSharedKeyStore(settings.volumeKeys);

export default createJobRunner(createJobTable(settings));
