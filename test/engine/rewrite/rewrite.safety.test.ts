/**
 * What a rewrite must never do to the disk it is given, and what it must refuse: too little room,
 * a disk a VM writes, a cancel at any stage, encrypted or corrupt-flagged disks, bitmaps unless
 * dropped, an existing target unless asked; and what it must get right on awkward inputs: a dirty
 * image after a killed writer, wrong refcounts, a relative backing file from another folder.
 * Every image is made by qemu-img/qemu-io; every refusal leaves the original byte for byte and no
 * hidden `.NAME.cowbell-*.tmp` file.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Error, type ErrorCode } from '../../../src/shared/qcow2/errors.ts';
import { INCOMPAT_CORRUPT, INCOMPAT_DIRTY } from '../../../src/shared/qcow2/format/limits.ts';
import type { JobContext } from '../../../src/shared/qcow2/job-context.ts';
import { lockForWriting, refuseReplacingHeld } from '../../../src/shared/qcow2/io/image-lock.ts';
import { previewRewrite, rewriteImage, type RewriteRequest } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { readSnapshotTree } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { FaultFileSystem } from '../../helpers/fault-file.ts';
import { fileHash, holdWithQemuIo, holdWithQemuNbd, type Holder } from '../../helpers/image-locks.ts';
import { onceMidway } from '../../helpers/midway.ts';
import { appendCluster, getRefcount, hostClusterOf, setIncompatibleBits, setRefcount } from '../../helpers/qcow2-poke.ts';
import { firstDifference, qemuCheck, qemuImg, qemuImgTimingPbkdf2, qemuInfo, qemuIo, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';
import { expectCheckClean } from '../../helpers/snapshot-scenario.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

let imageCount = 0;

/** A fresh folder of its own (so "nothing else in the folder" can be asserted) holding one image. */
async function imageWithSnapshots(name = 'disk.qcow2', options = 'cluster_size=4096'): Promise<{ dir: string; image: string }> {
  const dir = folder.file(`case-${++imageCount}`);
  fs.mkdirSync(dir);
  const image = path.join(dir, name);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', options, image, '4M']);
  await qemuIo(image, ['write -P 0x11 0 1M', 'write -P 0x12 2M 256k']);
  await qemuImg(['snapshot', '-c', 's1', image]);
  await qemuIo(image, ['write -P 0x13 512k 1M', 'write -z 3M 64k']);
  await qemuImg(['snapshot', '-c', 's2', image]);
  await qemuIo(image, ['write -P 0x14 100k 50k']);
  return { dir, image };
}

function caught(work: () => unknown): unknown {
  try {
    work();
  } catch (error) {
    return error;
  }
  return null;
}

function expectRefused(work: () => unknown, code: ErrorCode, words?: RegExp): Qcow2Error {
  const error = caught(work);
  expect(error, `expected ${code}`).toBeInstanceOf(Qcow2Error);
  expect((error as Qcow2Error).code, (error as Error).message).toBe(code);
  if (words !== undefined) expect((error as Qcow2Error).message).toMatch(words);
  return error as Qcow2Error;
}

/** Guest bytes of the current state and of every snapshot, as qemu-img reads them. */
async function statesOf(image: string): Promise<Map<string, Uint8Array>> {
  const states = new Map<string, Uint8Array>([['(current)', await rawOf(image)]]);
  for (const snapshot of (await qemuInfo(image)).snapshots ?? []) states.set(snapshot.name, await rawOf(image, { snapshot: snapshot.name }));
  return states;
}

function expectSameStates(actual: Map<string, Uint8Array>, expected: Map<string, Uint8Array>, label: string): void {
  expect([...actual.keys()], `${label}: the states`).toEqual([...expected.keys()]);
  for (const [name, bytes] of expected) expect(firstDifference(actual.get(name) ?? new Uint8Array(0), bytes), `${label}: first wrong byte of ${name}`).toBe(-1);
}

describe('refused up front, nothing written', () => {
  it('NO_SPACE when the new disk will not fit: no temporary file was ever created, the disk byte for byte', async () => {
    const { dir, image } = await imageWithSnapshots();
    const hash = fileHash(image);
    const preview = previewRewrite({ source: image, compression: 'uncompress' });
    expect(preview.expectedBytes).toBeGreaterThan(MiB);
    const fileSystem = new FaultFileSystem();
    const error = expectRefused(() => rewriteImage({ source: image, target: '/elsewhere/out.qcow2', compression: 'uncompress', fileSystem, freeBytes: () => preview.expectedBytes - 1 }), 'NO_SPACE', /nothing was changed/);
    expect(error.message).toMatch(/free some space/);
    expect(fileSystem.log).toEqual([]);
    // In place, on the real file system.
    expectRefused(() => rewriteImage({ source: image, compression: 'compress', freeBytes: () => 4096 }), 'NO_SPACE');
    expect(fileHash(image)).toBe(hash);
    expect(fs.readdirSync(dir)).toEqual(['disk.qcow2']);
    // Enough room, or a file system that cannot tell: the rewrite goes ahead.
    expect(rewriteImage({ source: image, target: path.join(dir, 'roomy.qcow2'), compression: 'uncompress', freeBytes: () => preview.expectedBytes + 64 * MiB }).verified).toBe(true);
    expect(rewriteImage({ source: image, target: path.join(dir, 'unknown.qcow2'), compression: 'uncompress', freeBytes: () => null }).verified).toBe(true);
  });

  it('NO_SPACE is judged by the bound from the tables where that fits, and by a sample of the data where it does not', async () => {
    const { dir, image } = await imageWithSnapshots();
    const preview = previewRewrite({ source: image, compression: 'compress' });
    // Compressible data: the sampled estimate lies well below the bound.
    expect(preview.maxBytes - preview.expectedBytes).toBeGreaterThan(64 * KiB);
    const margin = 16 * MiB;
    const between = Math.floor(preview.expectedBytes + margin + (preview.maxBytes - preview.expectedBytes) / 2);
    expect(rewriteImage({ source: image, target: path.join(dir, 'between.qcow2'), compression: 'compress', freeBytes: () => between }).verified).toBe(true);
    expect(rewriteImage({ source: image, target: path.join(dir, 'bound.qcow2'), compression: 'compress', freeBytes: () => preview.maxBytes + margin }).verified).toBe(true);
    expectRefused(() => rewriteImage({ source: image, target: path.join(dir, 'short.qcow2'), compression: 'compress', freeBytes: () => preview.expectedBytes + margin - 1 }), 'NO_SPACE');
    expect(fs.readdirSync(dir).sort()).toEqual(['between.qcow2', 'bound.qcow2', 'disk.qcow2']);
  });

  it('an existing target is refused unless overwrite, and left byte for byte; with overwrite it is replaced by a clean copy', async () => {
    const { dir, image } = await imageWithSnapshots();
    const target = path.join(dir, 'target.qcow2');
    fs.writeFileSync(target, 'precious');
    const sourceHash = fileHash(image);
    expectRefused(() => rewriteImage({ source: image, target, compression: 'keep' }), 'INVALID_ARGUMENT', /already exists/);
    expect(fs.readFileSync(target, 'utf8')).toBe('precious');
    expect(fs.readdirSync(dir).sort()).toEqual(['disk.qcow2', 'target.qcow2']);
    const result = rewriteImage({ source: image, target, compression: 'keep', overwrite: true });
    expect(result).toMatchObject({ target, inPlace: false, snapshots: 2, verified: true });
    expect(fileHash(image)).toBe(sourceHash);
    await expectCheckClean(expect, target, 'the replaced target');
    expectSameStates(await statesOf(target), await statesOf(image), 'the replaced target');
  });

  it('an image marked corrupt is refused CORRUPT, untouched', async () => {
    const { dir, image } = await imageWithSnapshots();
    setIncompatibleBits(image, INCOMPAT_CORRUPT);
    expect((await qemuInfo(image))['format-specific']?.data.corrupt).toBe(true);
    const hash = fileHash(image);
    expectRefused(() => rewriteImage({ source: image, compression: 'compress' }), 'CORRUPT', /marked corrupt/);
    expectRefused(() => rewriteImage({ source: image, target: path.join(dir, 'out.qcow2'), compression: 'keep' }), 'CORRUPT');
    expect(fileHash(image)).toBe(hash);
    expect(fs.readdirSync(dir)).toEqual(['disk.qcow2']);
  });

  it('a LUKS-encrypted image cannot be compressed, needs its passphrase to be compacted, and is left untouched either way', async () => {
    const dir = folder.file(`case-${++imageCount}`);
    fs.mkdirSync(dir);
    const image = path.join(dir, 'secret.qcow2');
    const secret = ['--object', 'secret,id=sec0,data=cowbell'];
    await qemuImgTimingPbkdf2(['create', '-q', '-f', 'qcow2', ...secret, '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', image, '2M']);
    execFileSync('qemu-io', [...secret, '--image-opts', `driver=qcow2,file.filename=${image},encrypt.key-secret=sec0`, '-c', 'write -P 1 0 128k']);
    await qemuImg(['snapshot', ...secret, '-c', 'sealed', '--image-opts', `driver=qcow2,file.filename=${image},encrypt.key-secret=sec0`]);
    const hash = fileHash(image);
    // QEMU stores an encrypted image's compressed clusters unencrypted: never done, whatever the passphrase.
    expectRefused(() => rewriteImage({ source: image, compression: 'compress' }), 'INVALID_ARGUMENT', /encrypted/);
    expectRefused(() => rewriteImage({ source: image, target: path.join(dir, 'plain.qcow2'), compression: 'keep' }), 'LOCKED');
    // The preview needs no passphrase (metadata and a sample of clusters).
    expect(previewRewrite({ source: image, compression: 'keep' }).snapshots).toBe(1);
    expect(fileHash(image)).toBe(hash);
    expect(fs.readdirSync(dir)).toEqual(['secret.qcow2']);
  }, 60_000);

  it('persistent bitmaps are refused unless dropped; dropped, the copy has none, every state intact, and qemu-img check is clean', async () => {
    const { dir, image } = await imageWithSnapshots();
    await qemuImg(['bitmap', '--add', image, 'backup0']);
    await qemuImg(['bitmap', '--add', image, 'backup1']);
    expect((await qemuInfo(image))['format-specific']?.data).toMatchObject({ bitmaps: [expect.objectContaining({ name: 'backup0' }), expect.objectContaining({ name: 'backup1' })] });
    const hash = fileHash(image);
    const before = await statesOf(image);
    expectRefused(() => rewriteImage({ source: image, compression: 'compress' }), 'HAS_BITMAPS', /dirty bitmaps.*nothing was changed/);
    expect(fileHash(image)).toBe(hash);
    expect(fs.readdirSync(dir)).toEqual(['disk.qcow2']);

    const copy = path.join(dir, 'copy.qcow2');
    rewriteImage({ source: image, target: copy, compression: 'keep', dropBitmaps: true });
    expect(fileHash(image)).toBe(hash);
    rewriteImage({ source: image, compression: 'compress', dropBitmaps: true });
    for (const [label, rewritten] of [['into a new file', copy], ['in place', image]] as const) {
      const data = (await qemuInfo(rewritten))['format-specific']?.data as Record<string, unknown>;
      expect(data.bitmaps, `${label}: bitmaps left`).toBeUndefined();
      await expectCheckClean(expect, rewritten, label);
      expectSameStates(await statesOf(rewritten), before, label);
      // QEMU writes the copy as it would any image without bitmaps.
      await qemuIo(rewritten, ['write -P 0x66 0 4k']);
      await expectCheckClean(expect, rewritten, `${label}, after a write by qemu-io`);
    }
  });

  it('stale bitmaps (their autoclear bit cleared by a program that did not keep them) do not hold a rewrite back: QEMU ignores them, the copy leaves them out', async () => {
    const { image } = await imageWithSnapshots();
    await qemuImg(['bitmap', '--add', image, 'stale']);
    const fd = fs.openSync(image, 'r+');
    fs.writeSync(fd, Buffer.alloc(8), 0, 8, 88);
    fs.closeSync(fd);
    const before = await statesOf(image);
    rewriteImage({ source: image, compression: 'keep' });
    expect(((await qemuInfo(image))['format-specific']?.data as Record<string, unknown>).bitmaps).toBeUndefined();
    await expectCheckClean(expect, image, 'compacted');
    expectSameStates(await statesOf(image), before, 'compacted');
  });
});

describe('never under a running VM', { timeout: 30_000 }, () => {
  const holders: [string, (image: string, dir: string) => Promise<Holder>][] = [
    ['qemu-io (read-write)', (image) => holdWithQemuIo(image)],
    ['qemu-nbd (read-write)', (image, dir) => holdWithQemuNbd(image, { socketDir: dir })],
  ];
  for (const [name, hold] of holders) {
    it(`a disk ${name} holds for writing is refused IN_USE, in place and as a source; nothing written`, async () => {
      const { dir, image } = await imageWithSnapshots();
      const hash = fileHash(image);
      const holder = await hold(image, dir);
      try {
        expectRefused(() => rewriteImage({ source: image, compression: 'compress' }), 'IN_USE', /another program/);
        expectRefused(() => rewriteImage({ source: image, target: path.join(dir, 'copy.qcow2'), compression: 'keep' }), 'IN_USE');
      } finally {
        await holder.release();
      }
      expect(fileHash(image)).toBe(hash);
      expect(fs.readdirSync(dir).filter((file) => !file.startsWith('nbd-'))).toEqual(['disk.qcow2']);
    });
  }

  it('an existing target a VM is running is not replaced (IN_USE), even with overwrite', async () => {
    const { dir, image } = await imageWithSnapshots();
    const running = path.join(dir, 'running.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', running, '1M']);
    const targetHash = fileHash(running);
    const holder = await holdWithQemuIo(running);
    try {
      expectRefused(() => rewriteImage({ source: image, target: running, compression: 'keep', overwrite: true }), 'IN_USE');
    } finally {
      await holder.release();
    }
    expect(fileHash(running)).toBe(targetHash);
    expect(fs.readdirSync(dir).sort()).toEqual(['disk.qcow2', 'running.qcow2']);
  });

  it('while the copy runs, qemu cannot open the source for writing ("Failed to get \\"write\\" lock") but can read it (-r, -U); afterwards it can write the new disk', async () => {
    const { image } = await imageWithSnapshots();
    const probes: { stage: string; write: string; readOnly: number | null; forceShare: number | null }[] = [];
    const probe = (stage: string): void => {
      const write = spawnSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x77 0 512', image], { encoding: 'utf8' });
      const readOnly = spawnSync('qemu-io', ['-r', '-f', 'qcow2', '-c', 'read -P 0x14 100k 4k', image], { encoding: 'utf8' });
      const forceShare = spawnSync('qemu-io', ['-r', '-U', '-f', 'qcow2', '-c', 'read -P 0x14 100k 4k', image], { encoding: 'utf8' });
      expect(readOnly.stdout + readOnly.stderr).not.toMatch(/fail|error/i);
      expect(forceShare.stdout + forceShare.stderr).not.toMatch(/fail|error/i);
      probes.push({ stage, write: write.stdout + write.stderr, readOnly: readOnly.status, forceShare: forceShare.status });
    };
    let copyingProbed = false;
    let verifyingProbed = false;
    const job: JobContext = {
      progress(stage, done, total) {
        // Mid-copy: some clusters written, more to come.
        if (stage === 'copying' && !copyingProbed && done > 0 && done < total) {
          copyingProbed = true;
          probe(stage);
        }
        if (stage === 'verifying' && !verifyingProbed) {
          verifyingProbed = true;
          probe(stage);
        }
      },
      throwIfCancelled() {},
    };
    const hash = fileHash(image);
    rewriteImage({ source: image, compression: 'compress', batchClusters: 8 }, job);
    expect(probes.map((entry) => entry.stage)).toEqual(['copying', 'verifying']);
    for (const entry of probes) {
      expect(entry.write, `qemu-io writing while ${entry.stage}`).toMatch(/Failed to get "write" lock/);
      expect(entry.readOnly, `qemu-io -r while ${entry.stage}`).toBe(0);
      expect(entry.forceShare, `qemu-io -r -U while ${entry.stage}`).toBe(0);
    }
    expect(fileHash(image)).not.toBe(hash);
    await qemuIo(image, ['write -P 0x78 0 4k']);
    await expectCheckClean(expect, image, 'written by qemu-io after the rewrite');
  });
});

describe('the name still leads to the disk when the new file takes it', { timeout: 30_000 }, () => {
  it('in place: another disk moved into the name meanwhile (a VM may be started on it) is not replaced; IN_USE, and it stays as it is', async () => {
    const { dir, image } = await imageWithSnapshots();
    const newer = path.join(dir, 'newer.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', newer, '2M']);
    await qemuIo(newer, ['write -P 0x5a 0 64k']);
    const newerHash = fileHash(newer);
    expectRefused(() => rewriteImage({ source: image, compression: 'compress', batchClusters: 8 }, onceMidway('copying', () => fs.renameSync(newer, image))), 'IN_USE', /was replaced by another file while Cowbell was writing its new version; nothing was replaced/);
    expect(fileHash(image)).toBe(newerHash);
    expect(fs.readdirSync(dir)).toEqual(['disk.qcow2']);
  });

  it('in place: the disk moved away meanwhile is not brought back under its old name', async () => {
    const { dir, image } = await imageWithSnapshots();
    const hash = fileHash(image);
    const moved = path.join(dir, 'moved.qcow2');
    expectRefused(() => rewriteImage({ source: image, compression: 'keep', batchClusters: 8 }, onceMidway('copying', () => fs.renameSync(image, moved))), 'IN_USE', /was moved or removed/);
    expect(fileHash(moved)).toBe(hash);
    expect(fs.readdirSync(dir)).toEqual(['moved.qcow2']);
  });

  it('in place: a program that began meanwhile to read it and keep writers off (a VM on an overlay of it) is not pulled from under: IN_USE, the disk as it was', async () => {
    const { dir, image } = await imageWithSnapshots();
    const hash = fileHash(image);
    let reader: ChildProcess | null = null;
    try {
      // qemu-io -r holds it as QEMU holds a backing file (read, write and resize unshared); waited for until its locks show.
      const job = onceMidway('copying', () => {
        reader = spawn('qemu-io', ['-r', '-f', 'qcow2', '-c', 'sleep 20000', image], { stdio: 'ignore' });
        const probe = fs.openSync(image, 'r');
        try {
          const deadline = Date.now() + 10_000;
          for (;;) {
            try {
              refuseReplacingHeld(probe);
            } catch {
              break;
            }
            if (Date.now() > deadline) throw new Error('qemu-io -r never took its locks');
            Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
          }
        } finally {
          fs.closeSync(probe);
        }
      });
      expectRefused(() => rewriteImage({ source: image, compression: 'keep', batchClusters: 8 }, job), 'IN_USE', /lets nobody write it/);
    } finally {
      (reader as ChildProcess | null)?.kill('SIGKILL');
    }
    expect(reader).not.toBeNull();
    expect(fileHash(image)).toBe(hash);
    expect(fs.readdirSync(dir)).toEqual(['disk.qcow2']);
  });

  it('to an existing OUTPUT (overwrite): a program that began meanwhile to write it keeps it; IN_USE', async () => {
    const { dir, image } = await imageWithSnapshots();
    const output = path.join(dir, 'output.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', output, '1M']);
    const outputHash = fileHash(output);
    let writer: number | null = null;
    try {
      const job = onceMidway('copying', () => {
        writer = fs.openSync(output, 'r+');
        lockForWriting(writer);
      });
      expectRefused(() => rewriteImage({ source: image, target: output, overwrite: true, compression: 'keep', batchClusters: 8 }, job), 'IN_USE', /another program/);
    } finally {
      if (writer !== null) fs.closeSync(writer);
    }
    expect(fileHash(output)).toBe(outputHash);
    expect(fs.readdirSync(dir).sort()).toEqual(['disk.qcow2', 'output.qcow2']);
  });
});

describe('a cancel at any stage leaves the original as it was', { timeout: 60_000 }, () => {
  interface Call {
    /** The stage the last progress report before the call named. */
    stage: string;
  }

  /** Every throwIfCancelled of a run, with the stage its last progress report named. */
  function cancelPoints(request: RewriteRequest): Call[] {
    const calls: Call[] = [];
    let stage = 'before any progress';
    rewriteImage(request, {
      progress(next) {
        stage = next;
      },
      throwIfCancelled() {
        calls.push({ stage });
      },
    });
    return calls;
  }

  for (const where of ['in place', 'into a new file'] as const) {
    it(`${where}: planning, copying, checking, verifying and just before the commit: CANCELLED, the disk byte for byte, no temporary file`, async () => {
      const { dir, image } = await imageWithSnapshots();
      const target = where === 'in place' ? undefined : path.join(dir, 'out.qcow2');
      const request: RewriteRequest = { source: image, target, compression: 'compress', batchClusters: 16 };
      const reference = path.join(dir, 'reference.qcow2');
      fs.copyFileSync(image, reference);
      const calls = cancelPoints({ ...request, source: reference, target: target === undefined ? undefined : path.join(dir, 'reference-out.qcow2') });
      fs.rmSync(reference);
      fs.rmSync(path.join(dir, 'reference-out.qcow2'), { force: true });
      const stages = [...new Set(calls.map((call) => call.stage))];
      expect(stages).toEqual(expect.arrayContaining(['reading the mapping tables', 'copying', 'verifying']));
      expect(stages.some((stage) => stage.startsWith('check'))).toBe(true);
      // Per stage its first and last call; then a seeded sample of the rest; the very last call is the commit point.
      const picked = new Set<number>([calls.length - 1]);
      for (const stage of stages) {
        picked.add(calls.findIndex((call) => call.stage === stage));
        picked.add(calls.findLastIndex((call) => call.stage === stage));
      }
      const random = new SeededRandom(0x5eed + calls.length);
      for (let extra = 0; extra < 6; extra++) picked.add(random.int(0, calls.length));
      const hash = fileHash(image);
      let sawTemporaryAtCommit = false;
      for (const index of [...picked].sort((a, b) => a - b)) {
        let call = 0;
        const label = `cancelled at call ${index + 1}/${calls.length} (${index === calls.length - 1 ? 'just before the commit' : calls[index]?.stage})`;
        const error = caught(() =>
          rewriteImage(request, {
            progress() {},
            throwIfCancelled() {
              if (call++ !== index) return;
              if (index === calls.length - 1) sawTemporaryAtCommit = fs.readdirSync(dir).some((file) => /^\.disk\.qcow2\.cowbell-[0-9a-f]{12}\.tmp$/.test(file) || /^\.out\.qcow2\.cowbell-[0-9a-f]{12}\.tmp$/.test(file));
              throw new Qcow2Error('CANCELLED', 'Cancelled by the test');
            },
          }),
        );
        expect(error, label).toMatchObject({ code: 'CANCELLED' });
        expect(fileHash(image), label).toBe(hash);
        expect(fs.readdirSync(dir), label).toEqual(['disk.qcow2']);
      }
      // The last cancel came with the new file complete under its temporary name: the commit point itself.
      expect(sawTemporaryAtCommit).toBe(true);
      // One call later there is no cancel left to honour: the rewrite goes through.
      rewriteImage(request);
      await expectCheckClean(expect, target ?? image, `${where}, not cancelled`);
    });
  }
});

describe('awkward inputs rewritten right', () => {
  it('a dirty image left by a killed writer with lazy refcounts: the copy has exact refcounts, no dirty bit, and every state qemu reads', { timeout: 30_000 }, async () => {
    const dir = folder.file(`case-${++imageCount}`);
    fs.mkdirSync(dir);
    const image = path.join(dir, 'lazy.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096,lazy_refcounts=on', image, '2M']);
    await qemuIo(image, ['write -P 0x21 0 256k']);
    await qemuImg(['snapshot', '-c', 'before', image]);
    // A writer that allocates (refcount updates deferred), flushes its tables, and is killed: the refcounts on disk lag behind.
    const writer = spawn('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x22 64k 128k', '-c', 'write -P 0x23 1M 300k', '-c', 'flush', '-c', 'sleep 60000', image], { stdio: 'ignore' });
    const exited = new Promise((resolve) => writer.on('exit', resolve));
    try {
      // Flushed once another reader (sharing, like qemu -U) sees the data through the tables on disk.
      for (let attempt = 0; ; attempt++) {
        const seen = spawnSync('qemu-io', ['-r', '-U', '-f', 'qcow2', '-c', 'read -P 0x22 64k 128k', '-c', 'read -P 0x23 1M 300k', image], { encoding: 'utf8' });
        if (!/fail|error|mismatch/i.test(seen.stdout + seen.stderr)) break;
        if (attempt === 200) throw new Error(`qemu-io's writes never reached the file:\n${seen.stdout}${seen.stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    } finally {
      writer.kill('SIGKILL');
      await exited;
    }
    const info = await qemuInfo(image);
    expect(info['dirty-flag']).toBe(true);
    const sourceCheck = await qemuCheck(image);
    expect(sourceCheck.report?.corruptions ?? 0, 'the killed writer left wrong refcounts (else the case tests nothing)').toBeGreaterThan(0);
    const states = await statesOf(image);
    expect(firstDifference((states.get('(current)') ?? new Uint8Array()).subarray(MiB, MiB + 300 * KiB), new Uint8Array(300 * KiB).fill(0x23))).toBe(-1);

    const copy = path.join(dir, 'copy.qcow2');
    rewriteImage({ source: image, target: copy, compression: 'keep' });
    rewriteImage({ source: image, compression: 'compress' });
    for (const [label, rewritten] of [['into a new file', copy], ['in place', image]] as const) {
      const after = await qemuInfo(rewritten);
      expect(after['dirty-flag'], label).toBe(false);
      expect(after['format-specific']?.data['lazy-refcounts'], `${label}: lazy refcounts stay on`).toBe(true);
      await expectCheckClean(expect, rewritten, label);
      expectSameStates(await statesOf(rewritten), states, label);
    }
  });

  it('a dirty bit set by hand (v3): the rewrite clears it and the copy is clean', async () => {
    const { dir, image } = await imageWithSnapshots('disk.qcow2', 'cluster_size=512,refcount_bits=8');
    setIncompatibleBits(image, INCOMPAT_DIRTY);
    expect((await qemuInfo(image))['dirty-flag']).toBe(true);
    const copy = path.join(dir, 'copy.qcow2');
    rewriteImage({ source: image, target: copy, compression: 'keep' });
    expect((await qemuInfo(copy))['dirty-flag']).toBe(false);
    await expectCheckClean(expect, copy, 'the copy of a dirty image');
    expectSameStates(await statesOf(copy), await statesOf(image), 'the copy of a dirty image');
  });

  it('leaked clusters, a refcount too high and a refcount too low (on a cluster a snapshot shares): the copy is clean, with the same guest data', async () => {
    const { dir, image } = await imageWithSnapshots('disk.qcow2', 'cluster_size=4096,refcount_bits=16');
    const states = await statesOf(image);
    // 0x11 at 300k, untouched since s1: shared by s1, s2 and the current state.
    const shared = hostClusterOf(image, 300 * KiB);
    expect(getRefcount(image, shared)).toBe(3);
    setRefcount(image, shared, 1);
    // 0x14 at 100k: written after s2, the current state's own.
    const own = hostClusterOf(image, 100 * KiB);
    expect(getRefcount(image, own)).toBe(1);
    setRefcount(image, own, 7);
    const leaked = appendCluster(image);
    setRefcount(image, leaked, 1);
    const broken = await qemuCheck(image);
    expect(broken.report?.corruptions ?? 0, broken.output).toBeGreaterThan(0);
    expect(broken.report?.leaks ?? 0, broken.output).toBeGreaterThan(0);

    const copy = path.join(dir, 'copy.qcow2');
    rewriteImage({ source: image, target: copy, compression: 'keep' });
    await expectCheckClean(expect, copy, 'the copy');
    expectSameStates(await statesOf(copy), states, 'the copy');
    // The copy's refcounts are the true ones: a shared cluster counts every state that maps it.
    expect(getRefcount(copy, hostClusterOf(copy, 300 * KiB))).toBe(3);
    expect(getRefcount(copy, hostClusterOf(copy, 100 * KiB))).toBe(1);
    expect(fs.statSync(copy).size).toBeLessThan(fs.statSync(image).size);
  });

  it('a relative backing file name still resolves when the output goes to another folder (and is kept as it was in the same folder)', async () => {
    const dir = folder.file(`case-${++imageCount}`);
    fs.mkdirSync(path.join(dir, 'vms', 'sub'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'elsewhere'));
    const base = path.join(dir, 'vms', 'base.raw');
    fs.writeFileSync(base, new SeededRandom(5).bytes(2 * MiB));
    const qcowBase = path.join(dir, 'vms', 'base.qcow2');
    await qemuImg(['convert', '-q', '-f', 'raw', '-O', 'qcow2', base, qcowBase]);
    for (const [backing, format] of [['base.raw', 'raw'], ['base.qcow2', 'qcow2']] as const) {
      const overlay = path.join(dir, 'vms', `over-${format}.qcow2`);
      await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', backing, '-F', format, overlay]);
      await qemuIo(overlay, ['write -P 0x31 64k 64k', 'write -z 1M 8k']);
      await qemuImg(['snapshot', '-c', 'over', overlay]);
      await qemuIo(overlay, ['write -P 0x32 100k 300k', 'discard 512k 64k']);
      const states = await statesOf(overlay);
      const targets = [path.join(dir, 'vms', `same-${format}.qcow2`), path.join(dir, 'vms', 'sub', `deeper-${format}.qcow2`), path.join(dir, 'elsewhere', `aside-${format}.qcow2`)];
      for (const target of targets) {
        rewriteImage({ source: overlay, target, compression: 'compress' });
        const info = await qemuInfo(target);
        const label = `${format} backing, output in ${path.relative(dir, path.dirname(target))}`;
        const name = info['backing-filename'] ?? '';
        expect(path.isAbsolute(name), `${label}: the name stays relative (${name})`).toBe(false);
        expect(path.resolve(path.dirname(target), name), label).toBe(path.join(dir, 'vms', backing));
        if (path.dirname(target) === path.dirname(overlay)) expect(name, label).toBe(backing);
        expect(info['backing-filename-format'], label).toBe(format);
        await expectCheckClean(expect, target, label);
        expectSameStates(await statesOf(target), states, label);
      }
    }
  });

  it("a backing name that climbs out of a linked folder ('cur/../base.qcow2') names the file the kernel reaches, not the one its text folds to", async () => {
    const dir = folder.file(`case-${++imageCount}`);
    for (const sub of ['ov', 'real/v1', 'out']) fs.mkdirSync(path.join(dir, sub), { recursive: true });
    await qemuImg(['create', '-q', '-f', 'qcow2', path.join(dir, 'real', 'base.qcow2'), '1M']);
    await qemuIo(path.join(dir, 'real', 'base.qcow2'), ['write -P 0x11 0 1M']);
    // A decoy where the text 'ov/cur/../base.qcow2' folds to.
    await qemuImg(['create', '-q', '-f', 'qcow2', path.join(dir, 'ov', 'base.qcow2'), '1M']);
    await qemuIo(path.join(dir, 'ov', 'base.qcow2'), ['write -P 0x99 0 1M']);
    fs.symlinkSync('../real/v1', path.join(dir, 'ov', 'cur'));
    const overlay = path.join(dir, 'ov', 'overlay.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'cur/../base.qcow2', '-F', 'qcow2', overlay]);
    await qemuIo(overlay, ['write -P 0x77 64k 64k']);
    const target = path.join(dir, 'out', 'copy.qcow2');
    rewriteImage({ source: overlay, target, compression: 'keep' });
    expect((await qemuInfo(target))['backing-filename']).toBe('../real/base.qcow2');
    expect((await qemuImg(['compare', '-q', overlay, target])).code).toBe(0);
    await expectCheckClean(expect, target, 'the copy');
  });
});

describe('what the user has keeps its shape', () => {
  it('in place through a symbolic link: the link stays a link, and the disk it names is the one rewritten', async () => {
    const { dir, image } = await imageWithSnapshots();
    const states = await statesOf(image);
    const links = path.join(dir, 'links');
    fs.mkdirSync(links);
    const link = path.join(links, 'disk.qcow2');
    fs.symlinkSync(path.relative(links, image), link);
    const before = fs.statSync(image).size;
    const result = rewriteImage({ source: link, compression: 'compress' });
    expect(result.inPlace).toBe(true);
    expect(fs.lstatSync(link).isSymbolicLink(), 'the link is still a link').toBe(true);
    expect(fs.statSync(image).size, 'the disk the link names was compressed').toBeLessThan(before);
    expectSameStates(await statesOf(image), states, 'the disk behind the link');
    await expectCheckClean(expect, image, 'the disk behind the link');
  });

  it('in place refuses a disk with other names (hard links), before anything is written: the others would keep the old disk (after encrypt, in the clear); to an OUTPUT it goes ahead', async () => {
    const { dir, image } = await imageWithSnapshots();
    const other = path.join(dir, 'other-name.qcow2');
    fs.linkSync(image, other);
    const hash = fileHash(image);
    for (const compression of ['compress', 'keep'] as const) {
      expect(() => rewriteImage({ source: image, compression }), compression).toThrow(/has another name \(a hard link\)/);
      expect(() => rewriteImage({ source: other, target: image, compression }), `${compression} onto the other name`).toThrow(/hard link/);
    }
    expect(fileHash(image)).toBe(hash);
    expect(fs.readdirSync(dir).sort()).toEqual(['disk.qcow2', 'other-name.qcow2']);
    const output = path.join(dir, 'out.qcow2');
    expect(rewriteImage({ source: image, target: output, compression: 'keep' }).inPlace).toBe(false);
    expect(fs.statSync(image).nlink).toBe(2);
  });

  it('in place keeps who may read the disk: a private disk (0600, owned by another user) stays so, and its copy is never readable by others while it is written', async () => {
    const { dir, image } = await imageWithSnapshots();
    fs.chmodSync(image, 0o600);
    fs.chownSync(image, 1234, 1234);
    const states = await statesOf(image);
    const temporaryModes: number[] = [];
    rewriteImage({ source: image, compression: 'compress', batchClusters: 8 }, {
      progress(stage, done) {
        if (stage !== 'copying' || done === 0) return;
        for (const file of fs.readdirSync(dir)) if (file.endsWith('.tmp')) temporaryModes.push(fs.statSync(path.join(dir, file)).mode & 0o777);
      },
      throwIfCancelled() {},
    });
    const after = fs.statSync(image);
    expect((after.mode & 0o777).toString(8), 'the rewritten disk').toBe('600');
    expect([after.uid, after.gid], 'the rewritten disk').toEqual([1234, 1234]);
    expect(temporaryModes.length).toBeGreaterThan(0);
    expect([...new Set(temporaryModes.filter((mode) => (mode & 0o077) !== 0).map((mode) => mode.toString(8)))], 'the temporary file, readable by others').toEqual([]);
    expectSameStates(await statesOf(image), states, 'the private disk');
  });

  it("replacing the source's own backing file is refused, nothing written (the overlay would lose its data and the copy would name itself as its backing file)", async () => {
    const dir = folder.file(`case-${++imageCount}`);
    fs.mkdirSync(dir);
    const base = path.join(dir, 'base.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', base, '1M']);
    await qemuIo(base, ['write -P 0x41 0 512k']);
    const overlay = path.join(dir, 'overlay.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', overlay]);
    await qemuIo(overlay, ['write -P 0x42 0 64k']);
    await qemuImg(['snapshot', '-c', 's', overlay]);
    const baseHash = fileHash(base);
    const overlayHash = fileHash(overlay);
    expectRefused(() => rewriteImage({ source: overlay, target: base, compression: 'keep', overwrite: true }), 'INVALID_ARGUMENT', /backing file/);
    expect(fileHash(base)).toBe(baseHash);
    expect(fileHash(overlay)).toBe(overlayHash);
    expect(fs.readdirSync(dir).sort()).toEqual(['base.qcow2', 'overlay.qcow2']);
  });

  it('the snapshot tree Cowbell shows is the same after the rewrite, also where all-zero clusters stop being allocated', async () => {
    // v2, no backing file: an all-zero data cluster becomes unallocated in the copy. s2 is s1 with
    // three clusters of zeros written (allocated) and one of data; the current state is s2 with
    // that one discarded: one cluster from s2, three from s1, so "you are here" hangs under s2.
    const dir = folder.file(`case-${++imageCount}`);
    fs.mkdirSync(dir);
    const image = path.join(dir, 'disk.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'compat=0.10,cluster_size=4096', image, '1M']);
    await qemuIo(image, ['write -P 0x11 0 16k']);
    await qemuImg(['snapshot', '-c', 's1', image]);
    await qemuIo(image, ['write -P 0 128k 12k', 'write -P 0x15 64k 4k']);
    await qemuImg(['snapshot', '-c', 's2', image]);
    await qemuIo(image, ['discard 64k 4k']);
    const tree = readSnapshotTree(image);
    expect(tree.currentParentId).toBe((await qemuInfo(image)).snapshots?.find((snapshot) => snapshot.name === 's2')?.id);
    const copy = path.join(dir, 'copy.qcow2');
    rewriteImage({ source: image, target: copy, compression: 'keep' });
    expectSameStates(await statesOf(copy), await statesOf(image), 'the copy');
    const after = readSnapshotTree(copy);
    const shape = (snapshotTree: typeof tree): unknown => ({
      parents: snapshotTree.snapshots.map((node) => [node.id, node.name, node.parentId]),
      current: snapshotTree.currentParentId,
    });
    expect(shape(after)).toEqual(shape(tree));
  });
});
