/**
 * A disk whose file cannot be written (a read-only mount, its permissions) says so in its info,
 * as a disk held by another program does: the app then shows it read-only and disables changes
 * up front, where every change used to fail only once asked for (UI audit 1).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readImageInfo, unwritableReason } from '../../../src/shared/qcow2/image/info.ts';
import { qemuImg } from '../../helpers/qemu.ts';

let folder = '';
beforeAll(() => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'cowbell-unwritable-'));
});
afterAll(() => fs.rmSync(folder, { recursive: true, force: true }));

const failingWith = (code: string) => (): void => {
  throw Object.assign(new Error(code), { code });
};

describe('a file that cannot be written', () => {
  it('gives the reason as a phrase: a read-only file system, its permissions; nothing for a writable or vanished file', async () => {
    expect(unwritableReason('/x', failingWith('EROFS'))).toBe('its file system is read-only');
    expect(unwritableReason('/x', failingWith('EACCES'))).toBe('you may not write this file (its permissions)');
    expect(unwritableReason('/x', failingWith('EPERM'))).toBe('you may not write this file (its permissions)');
    expect(unwritableReason('/x', failingWith('ENOENT'))).toBeNull();
    const image = path.join(folder, 'disk.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '16M']);
    expect(unwritableReason(image)).toBeNull();
    expect(readImageInfo(image)['read-only-reason']).toBeUndefined();
  });
});
