/** A POSIX inode's listing entry (ext, XFS, btrfs): its kind from its mode, and a time a Date can hold or none. */
import { describe, expect, it } from 'vitest';
import { posixEntry } from '../../../src/shared/qcow2/files/posix-entry.ts';

describe('posixEntry', () => {
  it('gives a time past what a Date holds (btrfs keeps 64-bit seconds: touch -d @9000000000000) as none, so listings and the app do not fail on it', () => {
    const entry = (mtimeMs: number | null) => posixEntry('f', '/f', { number: 5, mode: 0o100644, size: 1, mtimeMs }).mtimeMs;
    expect(entry(9_000_000_000_000_000)).toBeNull();
    expect(entry(-9_000_000_000_000_000)).toBeNull();
    expect(entry(8.64e15)).toBe(8.64e15);
    expect(entry(-300_000_000_988)).toBe(-300_000_000_988);
    expect(entry(null)).toBeNull();
    // Every time it gives, a Date formats.
    expect(() => new Date(entry(8.64e15)!).toISOString()).not.toThrow();
  });

  it('takes the kind from the mode, and a folder its identity', () => {
    expect(posixEntry('d', '/d', { number: 7, mode: 0o040755, size: 4096, mtimeMs: 0 })).toEqual({ name: 'd', path: '/d', kind: 'directory', size: 0, mtimeMs: 0, permissions: 0o755, folderId: '7' });
    expect(posixEntry('l', '/l', { number: 8, mode: 0o120777, size: 3, mtimeMs: 0 }).kind).toBe('symlink');
    expect(posixEntry('p', '/p', { number: 9, mode: 0o010644, size: 0, mtimeMs: 0 }).kind).toBe('other');
  });
});
