/** `cowbell files-diff`: the files that differ between two states of an ext4 guest, in words and as JSON. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { GuestFilesDiff } from '../../src/shared/qcow2/model.ts';
import { run } from '../helpers/cli.ts';
import { qemuImg } from '../helpers/qemu.ts';
import { BEFORE_FILES, MOTD, useChangedExtDisk } from '../helpers/changed-ext-disk.ts';

let disk = '';
useChangedExtDisk((made) => (disk = made.disk.path));

describe('cowbell files-diff', () => {
  it('prints + - M lines with sizes and reasons, then a summary', async () => {
    const result = await run('files-diff', disk, 'before', 'current');
    expect(result.code).toBe(0);
    const lines = result.out.trimEnd().split('\n');
    expect(lines.map((line) => line.replace(/\s+/g, ' '))).toEqual([
      `+ /etc/motd ${MOTD.length} B`,
      `M /home/me/keep.txt ${BEFORE_FILES['home/me/keep.txt']!.length} B (content)`,
      expect.stringMatching(/^M \/home\/me\/notes\.txt 12 B -> 36 B \(size(, mtime)?\)$/) as string,
      '- /old/',
      '- /old/gone.txt 4 B',
      expect.stringMatching(/^1 added, 2 removed, 2 changed; .* involved \(before -> current\)$/) as string,
    ]);
  });

  it('prints the same differences as JSON with --json', async () => {
    const result = await run('files-diff', '--json', disk, 'before', 'current');
    const diff = JSON.parse(result.out) as GuestFilesDiff;
    expect(diff).toMatchObject({ from: 'before', to: 'current', skipped: [] });
    expect(diff.differences.map((difference) => [difference.change, difference.path])).toEqual([
      ['added', '/etc/motd'],
      ['changed', '/home/me/keep.txt'],
      ['changed', '/home/me/notes.txt'],
      ['removed', '/old'],
      ['removed', '/old/gone.txt'],
    ]);
  });

  it('on a disk with no filesystem it reads, says nothing could be compared (exit 1), not "0 changed"', async () => {
    const empty = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'cowbell-files-diff-')), 'empty.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', empty, '4M']);
    await qemuImg(['snapshot', '-c', 's1', empty]);
    for (const json of [[], ['--json']]) {
      const result = await run('files-diff', ...json, empty, 's1', 'current');
      expect(result.code).toBe(1);
      expect(result.out).toBe('');
      expect(result.err).toMatch(/^cowbell: Nothing could be compared: no filesystem Cowbell can read/);
    }
    fs.rmSync(path.dirname(empty), { recursive: true, force: true });
  });

  it('names an unknown snapshot', async () => {
    const result = await run('files-diff', disk, 'before', 'nope');
    expect(result.code).not.toBe(0);
    expect(result.err).toMatch(/nope/);
  });
});
