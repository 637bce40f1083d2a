/**
 * A crash or kill during a convert or create leaves a hidden temporary file beside the target. The
 * next write of the same target removes those nobody holds any more, and only those.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTemporaryNameFor, temporaryPathFor } from '../../../src/shared/qcow2/io/atomic-file.ts';
import { NodeBlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { convertImage } from '../../../src/shared/qcow2/convert/convert.ts';
import { createImage } from '../../../src/shared/qcow2/image/create.ts';
import { qemuImg, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

describe('temporary files left by an interrupted write', () => {
  it('are named so that only those of the same target match', () => {
    const target = folder.file('disk.qcow2');
    expect(isTemporaryNameFor(target, temporaryPathFor(target).split('/').pop() ?? '')).toBe(true);
    expect(isTemporaryNameFor(target, '.disk.qcow2.cowbell-0123456789ab.tmp')).toBe(true);
    expect(isTemporaryNameFor(target, '.other.qcow2.cowbell-0123456789ab.tmp')).toBe(false);
    expect(isTemporaryNameFor(target, '.disk.qcow2.cowbell-0123456789ab.tmp.keep')).toBe(false);
    expect(isTemporaryNameFor(target, '.disk.qcow2.cowbell-xyz.tmp')).toBe(false);
    expect(isTemporaryNameFor(target, 'disk.qcow2')).toBe(false);
  });

  it('go when the same target is written again; one still being written, and other files, stay', async () => {
    const source = folder.file('source.qcow2');
    await qemuImg(['create', '-f', 'qcow2', source, '4M']);
    await qemuIo(source, ['write -P 0x42 0 64k']);
    const target = folder.file('out.qcow2');
    const abandoned = [folder.file('.out.qcow2.cowbell-00000000000a.tmp'), folder.file('.out.qcow2.cowbell-00000000000b.tmp')];
    for (const file of abandoned) fs.writeFileSync(file, new Uint8Array(1024 * 1024).fill(7));
    const others = [folder.file('.other.qcow2.cowbell-00000000000c.tmp'), folder.file('.out.qcow2.cowbell-notours.tmp'), folder.file('out.qcow2.bak')];
    for (const file of others) fs.writeFileSync(file, 'keep');
    // Another writer (another Cowbell, here another open file in this process) is still writing this one.
    const live = folder.file('.out.qcow2.cowbell-00000000000d.tmp');
    const writer = NodeBlockFile.open(live, { create: true });
    try {
      convertImage({ source, target, targetFormat: 'qcow2' });
      for (const file of abandoned) expect(fs.existsSync(file), file).toBe(false);
      for (const file of [...others, live]) expect(fs.existsSync(file), file).toBe(true);
    } finally {
      writer.close();
    }
    // Once its writer is gone, it is abandoned too; create sweeps the same way.
    createImage({ path: target, size: 1024 * 1024, overwrite: true });
    expect(fs.existsSync(live)).toBe(false);
    expect(fs.readdirSync(folder.path).filter((name) => name.startsWith('.out.qcow2.cowbell-'))).toEqual(['.out.qcow2.cowbell-notours.tmp']);
  });

  it('a symbolic link with such a name is left alone, and so is what it points to', () => {
    const precious = folder.file('precious.img');
    fs.writeFileSync(precious, 'precious');
    const link = folder.file('.new.qcow2.cowbell-0000000000ee.tmp');
    fs.symlinkSync(precious, link);
    createImage({ path: folder.file('new.qcow2'), size: 1024 * 1024 });
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect(fs.readFileSync(precious, 'utf8')).toBe('precious');
  });
});
