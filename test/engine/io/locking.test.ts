import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeBlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { COWBELL_BYTE, lockTiming } from '../../../src/shared/qcow2/io/image-lock.ts';
import { readImageInfo } from '../../../src/shared/qcow2/image/info.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { createSnapshot } from '../../../src/shared/qcow2/snapshots/snapshots.ts';
import { checkImagePath } from '../../../src/shared/qcow2/check/check.ts';
import { convertImage } from '../../../src/shared/qcow2/convert/convert.ts';
import { createImage } from '../../../src/shared/qcow2/image/create.ts';
import { rewriteImage } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { removeSnapshot, takeSnapshot } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { fileHash, holdWithQemuIo, holdWithQemuNbd, lockedBytes, locksOn, qemuImgSnapshotCreate, type Holder } from '../../helpers/image-locks.ts';
import { qemuImg, qemuInfo, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';

const cowbell = fileURLToPath(new URL('../../../bin/cowbell', import.meta.url));
const IN_USE_MESSAGE = 'The disk is in use by another program (a running VM or qemu-nbd); close it first';
const WRITE_LOCK_REFUSAL = /Failed to get "write" lock/;

let folder: TempDir;
let counter = 0;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

async function newImage(): Promise<string> {
  const image = folder.file(`disk-${counter++}.qcow2`);
  await qemuImg(['create', '-q', '-f', 'qcow2', image, '4M']);
  await qemuIo(image, ['write -P 0x11 0 64k']);
  return image;
}

async function holding<T>(holder: Promise<Holder>, work: () => Promise<T> | T): Promise<T> {
  const held = await holder;
  try {
    return await work();
  } finally {
    await held.release();
  }
}

function runCowbell(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(cowbell, args, { encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function failure(work: () => unknown): { code?: unknown; message?: unknown } {
  try {
    work();
  } catch (error) {
    return error as { code?: unknown; message?: unknown };
  }
  throw new Error('expected a failure');
}

describe('QEMU lock bytes, as qemu 7.2 takes them and Cowbell takes them', { timeout: 60_000 }, () => {
  it('a Cowbell writer locks what a read-write qemu-io locks, a reader what qemu-io -r -U locks', async () => {
    const image = await newImage();
    const qemuWriter = await holding(holdWithQemuIo(image), () => lockedBytes(image));
    const qemuForceShareReader = await holding(holdWithQemuIo(image, ['-r', '-U']), () => lockedBytes(image));
    const qemuReader = await holding(holdWithQemuIo(image, ['-r']), () => lockedBytes(image));
    // The facts, as seen on this machine: permission bytes 100 + bit, unshared bytes 200 + bit.
    expect(qemuWriter).toEqual([100, 101, 103, 201, 203]);
    expect(qemuReader).toEqual([100, 201, 203]);
    expect(qemuForceShareReader).toEqual([100]);

    // QEMU's bytes exactly as QEMU takes them (shared locks), and Cowbell's own byte 300 beside them.
    const qemuRange = (bytes: number[]): number[] => bytes.filter((byte) => byte < COWBELL_BYTE);
    const writer = Qcow2Image.open(image);
    try {
      expect(qemuRange(lockedBytes(image))).toEqual(qemuWriter);
      expect(locksOn(image).filter((lock) => lock.start < COWBELL_BYTE).every((lock) => lock.kind === 'OFDLCK' && lock.type === 'READ')).toBe(true);
      expect(locksOn(image).filter((lock) => lock.start === COWBELL_BYTE)).toEqual([{ kind: 'OFDLCK', type: 'WRITE', start: COWBELL_BYTE, end: COWBELL_BYTE }]);
    } finally {
      writer.close();
    }
    expect(lockedBytes(image)).toEqual([]);
    const reader = Qcow2Image.open(image, { readOnly: true });
    try {
      expect(qemuRange(lockedBytes(image))).toEqual(qemuForceShareReader);
      expect(locksOn(image).filter((lock) => lock.start === COWBELL_BYTE)).toEqual([{ kind: 'OFDLCK', type: 'READ', start: COWBELL_BYTE, end: COWBELL_BYTE }]);
    } finally {
      reader.close();
    }
    expect(lockedBytes(image)).toEqual([]);
  });
});

describe('QEMU is kept out while Cowbell writes', { timeout: 60_000 }, () => {
  it('qemu-img snapshot -c and qemu-io write are refused with the write-lock message, and work again after', async () => {
    const image = await newImage();
    const writer = Qcow2Image.open(image);
    try {
      writer.write(new Uint8Array(512).fill(0x22), 0);
      writer.flush();
      const refused = await qemuImgSnapshotCreate(image, 'sneaky');
      expect(refused.code).toBe(1);
      expect(refused.output).toMatch(WRITE_LOCK_REFUSAL);
      const seen = await qemuImg(['info', '-U', '--output=json', image]);
      expect(JSON.parse(seen.stdout)).not.toHaveProperty('snapshots');
      await expect(qemuIo(image, ['write -P 0x33 0 512'])).rejects.toThrow(WRITE_LOCK_REFUSAL);
      // Like qemu-img info without -U: it does not share writing, so it is refused too; -U reads.
      await expect(qemuImg(['info', image])).rejects.toThrow(/Failed to get shared "write" lock/);
    } finally {
      writer.close();
    }
    expect((await qemuImgSnapshotCreate(image, 'after')).code).toBe(0);
    expect((await qemuInfo(image)).snapshots?.map((snapshot) => snapshot.name)).toEqual(['after']);
  });

  it('a Cowbell reader never refuses QEMU, as qemu-img -U does not', async () => {
    const image = await newImage();
    const reader = Qcow2Image.open(image, { readOnly: true });
    try {
      expect((await qemuImgSnapshotCreate(image, 'while-read')).code).toBe(0);
      await qemuIo(image, ['write -P 0x44 0 512']);
    } finally {
      reader.close();
    }
  });

  it('a new image is locked for writing while Cowbell creates it', async () => {
    const image = folder.file(`created-${counter++}.qcow2`);
    const file = NodeBlockFile.open(image, { create: true });
    try {
      expect(lockedBytes(image)).toEqual([100, 101, 103, 201, 203, COWBELL_BYTE]);
    } finally {
      file.close();
    }
    expect(lockedBytes(image)).toEqual([]);
  });
});

describe('Cowbell is kept out while QEMU holds the image', { timeout: 60_000 }, () => {
  it('qemu-nbd read-write: snapshot create, guest writes and repair fail with IN_USE, nothing changes; info is read-only with the reason', async () => {
    const image = await newImage();
    const before = fileHash(image);
    await holding(holdWithQemuNbd(image, { socketDir: folder.path }), () => {
      expect(failure(() => takeSnapshot(image, 'refused'))).toMatchObject({ code: 'IN_USE', message: IN_USE_MESSAGE });
      expect(failure(() => removeSnapshot(image, 'whatever'))).toMatchObject({ code: 'IN_USE' });
      expect(failure(() => Qcow2Image.open(image))).toMatchObject({ code: 'IN_USE', message: IN_USE_MESSAGE });
      expect(failure(() => checkImagePath(image, { repair: 'all' }))).toMatchObject({ code: 'IN_USE' });

      const info = readImageInfo(image);
      expect(info['read-only-reason']).toBe('in use by another program');
      expect(info['virtual-size']).toBe(4 * 1024 * 1024);

      const view = Qcow2Image.open(image, { readOnly: true });
      try {
        expect(view.readOnlyReason).toBe('in use by another program');
        expect(view.read(0, 4)).toEqual(new Uint8Array(4).fill(0x11));
        expect(failure(() => view.write(new Uint8Array(512), 0))).toMatchObject({ code: 'IN_USE', message: IN_USE_MESSAGE });
        expect(failure(() => view.writeZeroes(0, 65536))).toMatchObject({ code: 'IN_USE' });
        expect(failure(() => view.discard(0, 65536))).toMatchObject({ code: 'IN_USE' });
        expect(failure(() => createSnapshot(view, { name: 'refused' }))).toMatchObject({ code: 'IN_USE' });
      } finally {
        view.close();
      }
      expect(fileHash(image)).toBe(before);
    });
    expect(fileHash(image)).toBe(before);
    expect(takeSnapshot(image, 'after').name).toBe('after');
    expect(readImageInfo(image)['read-only-reason']).toBeUndefined();
  });

  it('create and convert refuse to replace it (as qemu-img create does); once idle, create may, convert onto its own input never', async () => {
    const image = await newImage();
    const before = fileHash(image);
    await holding(holdWithQemuNbd(image, { socketDir: folder.path }), () => {
      expect(failure(() => createImage({ path: image, size: 1 << 20, overwrite: true }))).toMatchObject({ code: 'IN_USE', message: IN_USE_MESSAGE });
      expect(failure(() => convertImage({ source: image, target: image, targetFormat: 'qcow2', overwrite: true }))).toMatchObject({ code: 'IN_USE' });
    });
    expect(fileHash(image)).toBe(before);
    expect(fs.readdirSync(folder.path).filter((name) => name.endsWith('.tmp'))).toEqual([]);
    // Nobody else holds it now: a convert onto its own input is still refused (qemu-img's locks refuse it too).
    expect(failure(() => convertImage({ source: image, target: image, targetFormat: 'qcow2', overwrite: true, options: { clusterSize: 4096 } }))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(fileHash(image)).toBe(before);
    createImage({ path: image, size: 1 << 20, overwrite: true });
    expect((await qemuInfo(image))['virtual-size']).toBe(1 << 20);
  });

  it('qemu-io -r (which does not share writing) refuses Cowbell\'s writes but leaves info writable-looking', async () => {
    const image = await newImage();
    const before = fileHash(image);
    await holding(holdWithQemuIo(image, ['-r']), () => {
      expect(failure(() => takeSnapshot(image, 'refused'))).toMatchObject({ code: 'IN_USE' });
      // Nobody writes it, so a read-only view has nothing to warn about.
      expect(readImageInfo(image)['read-only-reason']).toBeUndefined();
    });
    expect(fileHash(image)).toBe(before);
  });

  it('qemu-io -r -U (sharing everything) does not stop Cowbell from writing', async () => {
    const image = await newImage();
    await holding(holdWithQemuIo(image, ['-r', '-U']), () => {
      expect(takeSnapshot(image, 'allowed').name).toBe('allowed');
    });
  });

  it('bin/cowbell: snapshot create exits 1 with the in-use message, info notes it, while qemu-nbd serves the image', async () => {
    const image = await newImage();
    const before = fileHash(image);
    await holding(holdWithQemuNbd(image, { socketDir: folder.path }), () => {
      const create = runCowbell(['snapshot', 'create', image, 'refused']);
      expect(create.status).toBe(1);
      expect(create.stderr).toBe(`cowbell: ${IN_USE_MESSAGE}\n`);
      const info = runCowbell(['info', image]);
      expect(info.status).toBe(0);
      expect(info.stdout).toContain('Note: read-only: in use by another program');
    });
    expect(fileHash(image)).toBe(before);
  });
});

describe('a file QEMU holds against writers (a VM\'s backing file, qemu-io -r) is never replaced', { timeout: 60_000 }, () => {
  // Found by an audit: compact in place renamed a new file over a VM's backing file; a live
  // block-commit, reopening it by name, then wrote into the new file with the old file's tables.
  it('compact in place, and compact or convert --force onto it, are IN_USE; the file byte for byte as it was', async () => {
    const image = await newImage();
    const source = await newImage();
    const before = fileHash(image);
    const inode = fs.statSync(image).ino;
    await holding(holdWithQemuIo(image, ['-r']), () => {
      expect(failure(() => rewriteImage({ source: image, compression: 'keep' }))).toMatchObject({ code: 'IN_USE', message: expect.stringContaining('lets nobody write it') });
      expect(failure(() => rewriteImage({ source, target: image, overwrite: true, compression: 'keep' }))).toMatchObject({ code: 'IN_USE' });
      expect(failure(() => convertImage({ source, target: image, targetFormat: 'qcow2', overwrite: true }))).toMatchObject({ code: 'IN_USE' });
    });
    expect(fileHash(image)).toBe(before);
    expect(fs.statSync(image).ino).toBe(inode);
    expect(fs.readdirSync(folder.path).filter((name) => name.endsWith('.tmp'))).toEqual([]);
    // Let go of: the same compact goes through.
    expect(rewriteImage({ source: image, compression: 'keep' }).inPlace).toBe(true);
  });
});

describe('two Cowbell holders of one image (two descriptors behave like two processes)', { timeout: 60_000 }, () => {
  it('a second writer and a reader wait their turn, then give up with IN_USE while the first still writes', async () => {
    const image = await newImage();
    const saved = { ...lockTiming };
    lockTiming.busyWaitMs = 150;
    const writer = Qcow2Image.open(image);
    try {
      const started = Date.now();
      expect(failure(() => Qcow2Image.open(image))).toMatchObject({ code: 'IN_USE', message: 'The disk is busy in another Cowbell window or command; try again when it has finished' });
      expect(failure(() => readImageInfo(image))).toMatchObject({ code: 'IN_USE' });
      expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    } finally {
      writer.close();
      Object.assign(lockTiming, saved);
    }
    expect(readImageInfo(image)['read-only-reason']).toBeUndefined();
  });

  it('readers share the image; a writer waits for them', async () => {
    const image = await newImage();
    const saved = { ...lockTiming };
    lockTiming.busyWaitMs = 100;
    const first = Qcow2Image.open(image, { readOnly: true });
    const second = Qcow2Image.open(image, { readOnly: true });
    try {
      expect(second.read(0, 4)).toEqual(first.read(0, 4));
      expect(failure(() => takeSnapshot(image, 'while-read'))).toMatchObject({ code: 'IN_USE' });
    } finally {
      first.close();
      second.close();
      Object.assign(lockTiming, saved);
    }
    expect(takeSnapshot(image, 'after-reads').name).toBe('after-reads');
  });
});
