/** The pool's worker entry: piscina calls the default export once per task. */
import { createJobRunner } from './job-runner.ts';
import { jobTable } from './job-table.ts';

export default createJobRunner(jobTable);
