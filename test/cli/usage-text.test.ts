import { describe, expect, it } from 'vitest';
import { describeUsage } from '../../src/cli/commands/usage.ts';
import type { UsageReport } from '../../src/shared/qcow2/model.ts';
import { snapshotSpaceRows } from '../../src/renderer/src/lib/space-charts.ts';

const MiB = 1024 * 1024;
const report: UsageReport = {
  virtualSize: 64 * 1024 * MiB,
  fileSize: 4000 * MiB,
  allocatedBytes: 4000 * MiB,
  metadataBytes: 14 * MiB,
  leakedBytes: 0,
  current: { exclusiveBytes: 0, sharedBytes: 4000 * MiB },
  // In the image's order; own bytes tie between s2 and s3, as they did for a real disk with five snapshots.
  snapshots: [
    { id: '1', name: 's1', exclusiveBytes: 2 * MiB, sharedBytes: 800 * MiB },
    { id: '2', name: 's2', exclusiveBytes: 3 * MiB, sharedBytes: 1600 * MiB },
    { id: '3', name: 's3', exclusiveBytes: 3 * MiB, sharedBytes: 2400 * MiB },
    { id: '4', name: 's4', exclusiveBytes: 64 * 1024, sharedBytes: 4000 * MiB },
  ],
};

describe('cowbell usage as text', () => {
  it('lists the snapshots biggest own data first, ties by shared data: the order of the app\'s chart', () => {
    const names = [...describeUsage(report).matchAll(/^snapshot (\S+): own/gm)].map((match) => match[1]);
    expect(names).toEqual(['s3', 's2', 's1', 's4']);
    expect(snapshotSpaceRows(report).filter((row) => row.kind === 'snapshot').map((row) => row.label)).toEqual(names);
  });
});
