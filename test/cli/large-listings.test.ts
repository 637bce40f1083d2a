/**
 * Tables as long as a guest folder can be: ext4 and XFS folders hold millions of names, and a
 * files-diff after an OS upgrade lists hundreds of thousands. A column's width taken as
 * Math.max(...lengths) threw "Maximum call stack size exceeded" past ~120,000 rows (V8's limit on
 * a call's arguments), so `cowbell ls` of such a folder failed.
 */
import { describe, expect, it } from 'vitest';
import { describeFilesDiff } from '../../src/cli/commands/files-diff.ts';
import { describeEntries } from '../../src/cli/commands/ls.ts';
import type { GuestFileDifference, GuestFileEntry, GuestFilesDiff } from '../../src/shared/qcow2/model.ts';

const ROWS = 300_000;

describe('CLI tables of a very large folder', () => {
  it('ls lists 300,000 entries, each on its own row, the widest name setting the column', () => {
    const entries: GuestFileEntry[] = Array.from({ length: ROWS }, (_, index) => ({ name: `f${index}`, path: `/big/f${index}`, kind: 'file', size: index, mtimeMs: 0, permissions: 0o644 }));
    const lines = describeEntries(entries).trimEnd().split('\n');
    expect(lines).toHaveLength(ROWS + 2);
    expect(lines.at(-1)).toBe(`${ROWS} entries`);
    // The SIZE column is right-aligned to its widest cell, the names follow it.
    expect(lines[1]).toMatch(/^file +0 B {2}1970-01-01 00:00 {2}f0$/);
    expect(lines[1]?.length).toBe(lines[2]?.length);
  });

  it('files-diff lists 300,000 differences', () => {
    const differences: GuestFileDifference[] = Array.from({ length: ROWS }, (_, index) => ({ change: 'added', volume: '', path: `/new/f${index}`, kind: 'file', sizeAfter: index }));
    const text = describeFilesDiff({ from: 'before', to: 'current', bytes: ROWS, skipped: [], differences } as GuestFilesDiff);
    const lines = text.trimEnd().split('\n');
    expect(lines).toHaveLength(ROWS + 1);
    expect(lines[0]).toMatch(/^\+ \/new\/f0 +0 B$/);
    expect(lines.at(-1)).toContain(`${ROWS} added, 0 removed, 0 changed`);
  });
});
