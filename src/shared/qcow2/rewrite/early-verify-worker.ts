/** The helper thread of a rewrite's early comparison (early-verify.ts). */
import { workerData } from 'node:worker_threads';
import { compareEarly, type EarlyVerifyWorkerData } from './early-verify.ts';

compareEarly(workerData as EarlyVerifyWorkerData);
