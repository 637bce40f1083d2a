/**
 * A fuzz worker thread: runs targets on an image and reports each outcome. The harness gives it
 * resourceLimits (heap) and a deadline per target; the allocation guard bounds buffers.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Qcow2Error, isErrorCode } from '../../../src/shared/qcow2/errors.ts';
import { installAllocationGuard } from './allocation-guard.ts';
import type { FuzzTarget, HarnessMessage, TargetOutcome, WorkerMessage, WorkerSettings } from './protocol.ts';
import { SELF_TEST_TARGETS } from './self-test-targets.ts';
import { CHANGE_TARGETS, REWRITE_TARGETS } from './change-targets.ts';
import { QEMU_ORACLE_TARGETS } from './qemu-oracle-targets.ts';
import { TARGETS } from './targets.ts';
import { FAT_TARGETS } from './fat-targets.ts';
import { NTFS_TARGETS } from './ntfs-targets.ts';
import { XFS_TARGETS } from './xfs-targets.ts';
import { BTRFS_TARGETS } from './btrfs-targets.ts';
import { LUKS_TARGETS } from './luks-targets.ts';

const settings = workerData as WorkerSettings;
const guard = installAllocationGuard(settings.allocationLimitBytes);
const byName = new Map<string, FuzzTarget>([...TARGETS, ...CHANGE_TARGETS, ...REWRITE_TARGETS, ...QEMU_ORACLE_TARGETS, ...SELF_TEST_TARGETS, ...FAT_TARGETS, ...NTFS_TARGETS, ...XFS_TARGETS, ...BTRFS_TARGETS, ...LUKS_TARGETS].map((entry) => [entry.name, entry]));
const port = parentPort;
if (port === null) throw new Error('fuzz-worker.ts runs only as a worker thread');

function post(message: WorkerMessage): void {
  port?.postMessage(message);
}

async function runTarget(name: string, imagePath: string): Promise<TargetOutcome> {
  const entry = byName.get(name);
  if (entry === undefined) return { target: name, status: 'crash', message: `no fuzz target named ${name}` };
  let outcome: TargetOutcome;
  try {
    await entry.run(imagePath);
    outcome = { target: name, status: 'ok' };
  } catch (error) {
    if (error instanceof Qcow2Error && isErrorCode(error.code)) {
      outcome = { target: name, status: 'typed', code: error.code, message: error.message };
    } else {
      const described = error instanceof Error ? error : new Error(String(error));
      outcome = { target: name, status: 'raw', code: described.name, message: described.message, stack: described.stack };
    }
  }
  const violation = guard.take();
  if (violation !== null) return { target: name, status: 'memory', message: violation, code: outcome.code };
  return outcome;
}

port.on('message', async (request: HarnessMessage) => {
  if (request.type === 'stop') {
    port.close();
    return;
  }
  for (const name of request.targets) {
    post({ type: 'start', target: name });
    const started = process.threadCpuUsage();
    const outcome = await runTarget(name, request.imagePath);
    const used = process.threadCpuUsage(started);
    post({ type: 'result', outcome: { ...outcome, ms: (used.user + used.system) / 1000 } });
  }
  post({ type: 'done' });
});
post({ type: 'ready' });
