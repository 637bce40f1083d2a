/** Restore (copy out) of a state's file or folder to the host: the bytes, the times, and nothing left half-done or overwritten. */
import { lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { restoreFromState } from '../../../src/shared/qcow2/files/restore.ts';
import { memoryState } from '../../helpers/memory-state-files.ts';

const bigContent = 'abcdefghij'.repeat(500_000);
const state = memoryState({
  '': {
    etc: {
      hostname: { content: 'box\n', mtimeMs: 1_700_000_000_000 },
      // A time with milliseconds (ext and NTFS keep finer): the host kept .122999906 s for .123 (files audit 8).
      'motd': { content: 'hi\n', mtimeMs: 1_683_263_105_123 },
      'old': { content: 'o\n', mtimeMs: -1_500 },
      'ssh-link': { target: '../ssh/sshd_config' },
      deep: { nested: { 'big.bin': { content: bigContent } } },
      '..': { content: 'climbing out' },
      fifo: { special: true },
    },
  },
});

describe('restore', () => {
  let folder = '';
  beforeEach(() => {
    folder = mkdtempSync(join(tmpdir(), 'cowbell-restore-'));
  });
  afterEach(() => rmSync(folder, { recursive: true, force: true }));

  it('copies a file byte for byte, with its modification time', async () => {
    const target = join(folder, 'hostname');
    const result = await restoreFromState(state, '/etc/hostname', target);
    expect(readFileSync(target, 'utf8')).toBe('box\n');
    expect(statSync(target).mtimeMs).toBe(1_700_000_000_000);
    expect(result).toMatchObject({ target, kind: 'file', files: 1, bytes: 4, skipped: [] });
    expect(readdirSync(folder)).toEqual(['hostname']);
  });

  it('keeps a time with milliseconds within its millisecond, never before it (before 1970 too)', async () => {
    for (const [name, mtimeMs] of [['motd', 1_683_263_105_123], ['old', -1_500]] as const) {
      const target = join(folder, name);
      await restoreFromState(state, `/etc/${name}`, target);
      const restored = statSync(target, { bigint: true }).mtimeNs;
      expect([name, restored >= BigInt(mtimeMs) * 1_000_000n, restored < (BigInt(mtimeMs) + 1n) * 1_000_000n]).toEqual([name, true, true]);
    }
  });

  it('copies a folder with everything under it, links as links, and skips what cannot be copied', async () => {
    const target = join(folder, 'etc-copy');
    const result = await restoreFromState(state, '/etc', target);
    expect(readFileSync(join(target, 'deep/nested/big.bin'), 'utf8')).toBe(bigContent);
    expect(lstatSync(join(target, 'ssh-link')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(target, 'ssh-link'))).toBe('../ssh/sshd_config');
    expect(readdirSync(target).sort()).toEqual(['deep', 'hostname', 'motd', 'old', 'ssh-link']);
    expect(result).toMatchObject({ kind: 'directory', files: 4, folders: 3, symlinks: 1, bytes: 4 + 3 + 2 + bigContent.length });
    expect(result.skipped.map((skipped) => skipped.path).sort()).toEqual(['/etc/..', '/etc/fifo']);
    expect(readdirSync(folder)).toEqual(['etc-copy']);
  });

  it('never replaces what is already there', async () => {
    const target = join(folder, 'taken');
    writeFileSync(target, 'mine');
    await expect(restoreFromState(state, '/etc/hostname', target)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(readFileSync(target, 'utf8')).toBe('mine');
    expect(readdirSync(folder)).toEqual(['taken']);
  });

  it('leaves nothing behind when cancelled part way', async () => {
    // Cancelled once some bytes were written: the folder's first files are already on disk then.
    let written = 0;
    const job = {
      progress(_stage: string, done: number) {
        written = done;
      },
      throwIfCancelled() {
        if (written > 0) throw new Qcow2Error('CANCELLED', 'Cancelled');
      },
    };
    const failure = await restoreFromState(state, '/etc', join(folder, 'etc-copy'), job).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'CANCELLED' });
    expect(readdirSync(folder)).toEqual([]);
    // Nothing is left, so the message says nothing was (it told of files left, and of a --force the app has not).
    expect((failure as Error).message).not.toMatch(/leaving|--force/);
  });
});
