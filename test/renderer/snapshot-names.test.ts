import { describe, expect, it } from 'vitest';
import { snapshotNameProblem } from '../../src/renderer/src/lib/snapshot-names.ts';

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
