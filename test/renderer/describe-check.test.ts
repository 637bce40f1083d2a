import { describe, expect, it } from 'vitest';
import { describeCheck, describeLosses } from '../../src/renderer/src/lib/describe-check.ts';
import type { CheckResult } from '../../src/shared/ipc/contract.ts';

const repairedClean: CheckResult = { filename: 'disk.qcow2', format: 'qcow2', 'check-errors': 0, 'corruptions-fixed': 3, 'leaks-fixed': 5, messages: [] };

describe('describeCheck: an encrypted disk with data in the clear', () => {
  it('adds a warning to the verdict, whatever it is', () => {
    const clean: CheckResult = { filename: 'disk.qcow2', format: 'qcow2', 'check-errors': 0, corruptions: 0, leaks: 0, 'unencrypted-bytes': 64 * 1024, messages: [] };
    expect(describeCheck(clean, false)).toBe('No errors found. Warning: 64 KiB of this encrypted disk is stored unencrypted: compressed clusters, which QEMU writes in the clear. Compact… encrypts them.');
    expect(describeCheck({ ...clean, 'unencrypted-bytes': 0 }, false)).toBe('No errors found.');
    expect(describeCheck(clean, false, 'luks')).toMatch(/Compact… encrypts them\.$/);
    expect(describeCheck(clean, false, 'aes')).toMatch(/Encrypt… encrypts them, moving the disk to LUKS\.$/);
  });
});

describe('describeCheck: what a repair lost, in plain words', () => {
  it('a repair that lost nothing says nothing of losses', () => {
    const text = describeCheck(repairedClean, true);
    expect(text).toBe('Repaired 3 corruptions and 5 leaked clusters. The image is now clean.');
  });

  it('names the snapshot and the range of its disk that now reads as zeros, and why', () => {
    const result: CheckResult = {
      ...repairedClean,
      lost: [{ what: 'range', 'snapshot-id': '1', 'snapshot-name': 'before upgrade', 'guest-offset': 0, length: 512 * 1024 * 1024, reason: 'guest data overwrote the table that mapped it' }],
    };
    const text = describeCheck(result, true);
    expect(text).toContain('Repaired 3 corruptions and 5 leaked clusters.');
    expect(text).toContain('Snapshot “before upgrade” (ID 1) lost 512 MiB of its disk from 0 B on, which now reads as zeros, because guest data overwrote the table that mapped it.');
    expect(text).toContain('broken beyond repair');
    expect(text.endsWith('The image is now clean.')).toBe(true);
  });

  it('names a removed snapshot, and counts the ones whose names were unreadable in one sentence', () => {
    const sentences = describeLosses([
      { what: 'snapshot', 'snapshot-id': null, 'snapshot-name': null, reason: 'its snapshot table entry lies past the end of the file' },
      { what: 'snapshot', 'snapshot-id': null, 'snapshot-name': null, reason: 'its snapshot table entry lies past the end of the file' },
      { what: 'snapshot', 'snapshot-id': '4', 'snapshot-name': 'nightly', reason: 'its snapshot table entry runs past the end of the file' },
    ]);
    expect(sentences).toEqual([
      '2 snapshots whose names could not be read were removed, because their entries in the snapshot table were broken (the first: its snapshot table entry lies past the end of the file).',
      'Snapshot “nightly” (ID 4) was removed, because its snapshot table entry runs past the end of the file.',
    ]);
  });

  it('a repair whose only change was a loss still reports it', () => {
    const result: CheckResult = { ...repairedClean, 'corruptions-fixed': 0, 'leaks-fixed': 0, lost: [{ what: 'snapshot', 'snapshot-id': '2', 'snapshot-name': 'b', reason: 'x' }] };
    expect(describeCheck(result, true)).toContain('Snapshot “b” (ID 2) was removed, because x.');
  });
});
