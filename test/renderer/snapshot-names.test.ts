import { describe, expect, it } from 'vitest';
import { snapshotNameIdCaution, snapshotNameProblem } from '../../src/renderer/src/lib/snapshot-names.ts';

describe('snapshot names the dialogs refuse before sending (as the engine would, after)', () => {
  it('"current" and names that read as references are refused; a snapshot keeping its own such name is not', () => {
    expect(snapshotNameProblem('current', [])).toMatch(/current state/);
    expect(snapshotNameProblem('snapshot.id=1', ['precious'])).toMatch(/reference/);
    expect(snapshotNameProblem('snapshot.name=precious', ['precious'])).toMatch(/reference/);
    expect(snapshotNameProblem('current', ['current'], 'current')).toBeNull();
    expect(snapshotNameProblem('current state', [])).toBeNull();
    expect(snapshotNameProblem('my snapshot.id=1', [])).toBeNull();
    expect(snapshotNameProblem('taken', ['taken'])).toMatch(/already exists/);
  });
});

describe('a name that is another snapshot\'s id', () => {
  const snapshots = [
    { id: '1', name: 'A' },
    { id: '2', name: 'B' },
  ];
  it('is allowed, with a caution that qemu-img reads it as that id first (UI audit: renaming B to "1" made qemu-img snapshot -a 1 revert to A)', () => {
    expect(snapshotNameIdCaution('1', snapshots)).toBe('“1” is the id of snapshot “A”: qemu-img and QEMU read it as that id first (qemu-img snapshot -a 1 would revert to “A”). Cowbell tells them apart.');
    expect(snapshotNameIdCaution(' 2 ', snapshots)).toContain('snapshot “B”');
    expect(snapshotNameIdCaution('1', snapshots, '1')).toBeNull();
    expect(snapshotNameIdCaution('A', snapshots)).toBeNull();
    expect(snapshotNameIdCaution('3', snapshots)).toBeNull();
    expect(snapshotNameProblem('1', snapshots.map((snapshot) => snapshot.name))).toBeNull();
  });
});
