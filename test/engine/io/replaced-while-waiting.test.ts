/**
 * An open that waits for another Cowbell's lock must end up with the file the path names when it
 * gets it. A compact (or any rewrite) renames its new file over the disk and then lets go of the
 * old one: an open that had been waiting would otherwise lock and write the old, unlinked file, and
 * all it wrote would be lost (a commit into a base being compacted emptied the overlay into it).
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NodeBlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { tempDir, type TempDir } from '../../helpers/qemu.ts';

const blockFileModule = fileURLToPath(new URL('../../../src/shared/qcow2/io/block-file.ts', import.meta.url));

let folder: TempDir;
beforeEach(() => {
  folder = tempDir();
});
afterEach(() => folder.cleanup());

/** Another process: holds `path` (as a writer unless told), prints "held", then after `ms` renames `replacement` over it and lets go. */
function holderThatReplaces(path: string, replacement: string, ms: number, openOptions: object = {}): Promise<void> {
  const script = `
    const { NodeBlockFile } = await import(${JSON.stringify(blockFileModule)});
    const { renameSync } = await import('node:fs');
    const held = NodeBlockFile.open(${JSON.stringify(path)}, ${JSON.stringify(openOptions)});
    process.stdout.write('held\\n');
    setTimeout(() => { renameSync(${JSON.stringify(replacement)}, ${JSON.stringify(path)}); held.close(); }, ${ms});
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('held')) resolve();
    });
    child.on('exit', (code) => (code === 0 ? undefined : reject(new Error(`the holder exited with ${code}`))));
  });
}

describe('an open that waited for another Cowbell', () => {
  it('gets the file that replaced the one it waited for, and writes there', async () => {
    const disk = folder.file('disk.qcow2');
    const replacement = folder.file('.disk.qcow2.cowbell-new.tmp');
    fs.writeFileSync(disk, 'old');
    fs.writeFileSync(replacement, 'new');
    await holderThatReplaces(disk, replacement, 400);
    const opened = NodeBlockFile.open(disk);
    try {
      opened.write(new TextEncoder().encode('N'), 0);
      opened.flush();
    } finally {
      opened.close();
    }
    expect(fs.readFileSync(disk, 'utf8')).toBe('New');
  });

  it('a rewrite that will replace the file waits for another one that will (the second rename would undo the first), then reads what it left', async () => {
    const disk = folder.file('disk.qcow2');
    const replacement = folder.file('.disk.qcow2.cowbell-encrypted.tmp');
    fs.writeFileSync(disk, 'plain');
    fs.writeFileSync(replacement, 'encrypted');
    await holderThatReplaces(disk, replacement, 400, { guard: true, replacing: true });
    const second = NodeBlockFile.open(disk, { guard: true, replacing: true });
    try {
      const bytes = new Uint8Array(16);
      const count = second.read(bytes, 0);
      expect(new TextDecoder().decode(bytes.subarray(0, count))).toBe('encrypted');
    } finally {
      second.close();
    }
  });

  it('refuses a FIFO named where a disk should be at once, instead of waiting for a writer', () => {
    const fifo = folder.file('fifo.qcow2');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    for (const readOnly of [true, false]) expect(() => NodeBlockFile.open(fifo, { readOnly })).toThrow(expect.objectContaining({ code: 'NOT_A_FILE' }));
  });
});
