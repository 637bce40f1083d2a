/**
 * A test hook: a job that waits until a file exists (cancellable meanwhile), so that an end-to-end
 * test can see the app's state before the job's result without depending on how fast the machine is.
 * Only set from browser mode's COWBELL_TEST_TREE_GATE; nothing waits without it.
 */
import { existsSync } from 'node:fs';
import type { JobContext } from '../../shared/qcow2/job-context.ts';

const POLL_MS = 50;

export async function waitForGate(gateFile: string, context: JobContext): Promise<void> {
  while (!existsSync(gateFile)) {
    context.throwIfCancelled();
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
