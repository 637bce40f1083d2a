/**
 * Power cuts during rebase and commit.
 *  - rebase changes one file (the overlay): the crash table's runner cuts its log everywhere; the
 *    guest must read exactly as before at every cut (copying in what the old chain showed, then
 *    switching the header to a name already durable).
 *  - commit changes two files: the backing file must be written and flushed before the overlay's
 *    first write (checked on the combined order), so every crash state is a cut of the backing
 *    file's log with the overlay untouched, or the finished backing file with a cut of the
 *    overlay's log. In each: the overlay reads exactly as before (through the engine, and through
 *    qemu-img for a sample), the backing file per cluster as before or after, the walk finds
 *    nothing harmful in either file, and qemu-img check nothing harmful.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { commitSteps } from '../../../src/shared/qcow2/chain/commit.ts';
import { rebaseOpenImage } from '../../../src/shared/qcow2/chain/rebase.ts';
import type { BlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { NodeBlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { rewriteImage } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { runSteps } from '../../../src/shared/qcow2/steps.ts';
import { crashPoints, crashState, describeCrashPoint, FaultFile, type CrashPoint, type FileEvent } from '../../helpers/fault-file.ts';
import { secret } from '../../helpers/encrypted-images.ts';
import { firstDifference, qemuImg, rawOf, runTool, tempDir } from '../../helpers/qemu.ts';
import { contractViolation, readGuestState, type GuestState } from './guest-state.ts';
import type { ImageOperation } from './harness.ts';
import { walkImage } from './image-walk.ts';
import { isClean, qemuVerdict, qemuVerdictOf, type QemuVerdict } from './qemu-verdict.ts';
import { crashSettings, runCrashCase, summary } from './runner.ts';
import { buildImage, KiB, V2_512, V3_512, type Step } from './setups.ts';

/**
 * base ← mid ← image (the overlay), each with data of its own, in the image's folder. With
 * `midBytes`, mid is that much smaller than the others (a commit into it grows it first; the base
 * below it then shows data past mid's old end, which the grow must hide).
 */
async function overlayOnTwo(imagePath: string, options: string, imageSteps: Step[], midBytes = 128 * KiB): Promise<void> {
  const folder = path.dirname(imagePath);
  await buildImage(path.join(folder, 'base.qcow2'), options, 128 * KiB, [{ io: 'write -P 0x61 0 64k' }, { io: 'write -P 0x62 100k 8k' }]);
  const midSteps: Step[] = midBytes >= 106 * KiB ? [{ io: 'write -P 0x63 20k 30k' }, { io: 'write -z 104k 2k' }] : [{ io: 'write -P 0x63 20k 30k' }];
  await buildImage(path.join(folder, 'mid.qcow2'), `${options},backing_file=base.qcow2,backing_fmt=qcow2`, midBytes, midSteps);
  await buildImage(imagePath, `${options},backing_file=mid.qcow2,backing_fmt=qcow2`, 128 * KiB, imageSteps);
}

/** The encrypted overlay's passphrase (a LUKS key with few PBKDF2 iterations: every crash state is opened with it). */
const LUKS_PASSPHRASE = 'crash-chain-moo';

function rebaseCase(name: string, options: string, backingFile: string | null, extra: { unsafe?: boolean; encrypted?: boolean; setupMore?: (folder: string) => void } = {}): ImageOperation {
  return {
    name,
    contract: 'per-cluster',
    changesGuestState: false,
    open: { openBacking: extra.unsafe !== true },
    // Every crash state is unlocked a few times (engine reads, walk, repair): ~60 s beside ~18 s in the clear, so `npm run crash` only.
    ...(extra.encrypted === true ? { passphrase: LUKS_PASSPHRASE, fullOnly: true } : {}),
    setup: async (imagePath) => {
      // A snapshot here would read the new chain through its holes: rebase refuses that (commit-rebase.test.ts).
      await overlayOnTwo(imagePath, options, [{ io: 'write -P 0x64 4k 3k' }, { io: 'write -P 0x65 40k 1k' }]);
      // Encrypted in place, its backing file kept: what the rebase copies in goes under the overlay's key.
      if (extra.encrypted === true) encryptInPlace(imagePath);
      extra.setupMore?.(path.dirname(imagePath));
    },
    run: (image) => void runSteps(rebaseOpenImage(image, { backingFile, backingFormat: 'qcow2', unsafe: extra.unsafe === true })),
  };
}

const rebaseCases: ImageOperation[] = [
  rebaseCase('rebase (safe) onto the bottom file: the middle file copied in where it differs, then the header switched', V3_512, 'base.qcow2'),
  rebaseCase('rebase (safe) onto nothing: everything the chain showed copied in, then the backing name cleared (its format extension stays: without a name it means nothing)', V3_512, null),
  rebaseCase('rebase (safe), v2 image: no zero clusters, zeros written as data', V2_512, 'base.qcow2'),
  rebaseCase('rebase (safe) of a LUKS-encrypted overlay onto nothing: the old chain copied in, encrypted under the overlay key, then the backing name cleared', V3_512, null, { encrypted: true }),
  rebaseCase('rebase -u onto a copy of the backing file (a longer name: the header only)', V3_512, 'a-copy-of-the-middle-file-with-a-longer-name.qcow2', {
    unsafe: true,
    setupMore: (folder) => fs.copyFileSync(path.join(folder, 'mid.qcow2'), path.join(folder, 'a-copy-of-the-middle-file-with-a-longer-name.qcow2')),
  }),
];

describe('rebase: a power cut anywhere leaves the guest data as it was', () => {
  for (const operation of rebaseCases.filter((each) => crashSettings.full || each.fullOnly !== true)) {
    it(operation.name, async () => {
      const report = await runCrashCase(operation);
      console.log(summary(report));
      expect(report.failures).toEqual([]);
      expect(report.distinct).toBeGreaterThanOrEqual(2);
      // The encrypted case in full mode reads ~3,200 distinct crash images with a passphrase, each checked by qemu-img: over 15 minutes on a busy machine.
    }, operation.fullOnly === true ? 3_600_000 : 900_000);
  }
});

/** A file that tells a shared sequence about each change, so the order across two files can be checked. */
class SequencedFile implements BlockFile {
  private readonly inner: FaultFile;
  private readonly name: string;
  private readonly sequence: string[];
  constructor(inner: FaultFile, name: string, sequence: string[]) {
    this.inner = inner;
    this.name = name;
    this.sequence = sequence;
  }
  get path(): string {
    return this.inner.path;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  read(buffer: Uint8Array, position: number): number {
    return this.inner.read(buffer, position);
  }
  write(buffer: Uint8Array, position: number): void {
    this.sequence.push(`${this.name}:write`);
    this.inner.write(buffer, position);
  }
  flush(): void {
    this.sequence.push(`${this.name}:flush`);
    this.inner.flush();
  }
  size(): number {
    return this.inner.size();
  }
  truncate(size: number): void {
    this.sequence.push(`${this.name}:truncate`);
    this.inner.truncate(size);
  }
  close(): void {
    this.inner.close();
  }
}

interface CommitCase {
  name: string;
  options: string;
  overlaySteps: Step[];
  /** The backing file's size, when smaller than the overlay's 128 KiB. */
  backingBytes?: number;
  /** The emptied overlay's file must be cut back (its data clusters lay at its end). */
  cutsOverlay?: boolean;
  /** The overlay and its backing file LUKS-encrypted under one passphrase, each with its own master key (`npm run crash` only, as the encrypted rebase). */
  encrypted?: boolean;
}

const commitCases: CommitCase[] = [
  { name: 'commit into a v3 backing file, then the overlay emptied', options: V3_512, overlaySteps: [{ io: 'write -P 0x71 3k 5k' }, { io: 'write -z 60k 4k' }, { io: 'write -P 0x72 90k 20k' }] },
  // Taken last, so that the commit changes nothing it reads (otherwise commit refuses).
  { name: 'commit with a snapshot in the overlay (shared L2 tables copied while emptying)', options: V3_512, overlaySteps: [{ io: 'write -P 0x73 0 12k' }, { io: 'write -P 0x74 6k 30k' }, { snapshot: 's1' }] },
  { name: 'commit, v2 files (zeros written as data)', options: V2_512, overlaySteps: [{ io: 'write -P 0x75 10k 9k' }, { io: 'write -z 30k 2k' }] },
  // The grow (a larger L1, zero clusters over the base's data past the old end, then the size) comes first.
  {
    name: 'commit into a smaller backing file (grown first, its own backing file hidden past its old end), then the overlay emptied and cut back',
    options: V3_512,
    overlaySteps: [{ io: 'write -P 0x76 3k 5k' }, { io: 'write -P 0x77 70k 20k' }, { io: 'write -P 0x78 120k 8k' }],
    backingBytes: 65 * KiB,
    cutsOverlay: true,
  },
  {
    name: 'commit of a LUKS-encrypted overlay into a LUKS-encrypted backing file (each its own master key: the data decrypted, then encrypted under the backing file key), then the overlay emptied',
    options: V3_512,
    overlaySteps: [{ io: 'write -P 0x79 3k 5k' }, { io: 'write -z 60k 4k' }, { io: 'write -P 0x7a 90k 20k' }],
    encrypted: true,
  },
];

/** Encrypts the image in place under LUKS_PASSPHRASE (a new master key each time), keeping its backing file. */
function encryptInPlace(imagePath: string): void {
  rewriteImage({ source: imagePath, compression: 'keep', encryption: { kind: 'luks', passphrase: LUKS_PASSPHRASE, iterations: 1000, digestIterations: 1000 } });
}

/** `--image-opts` for qemu-img: the file, and a secret for it and each encrypted file below it (`encryptedDepths`: 0 the file itself, 1 its backing file). */
function chainOpts(imagePath: string, encryptedDepths: number[]): string {
  return [`driver=qcow2`, `file.filename=${imagePath}`, ...encryptedDepths.map((depth) => `${'backing.'.repeat(depth)}encrypt.key-secret=sec0`)].join(',');
}

/** qemu-img's arguments that open `imagePath` of the test chain (image ← mid ← base), with secrets where the case encrypts. */
function qemuOpened(imagePath: string, encrypted: boolean): string[] {
  if (!encrypted) return ['-f', 'qcow2', imagePath];
  return [...secret('sec0', LUKS_PASSPHRASE), '--image-opts', chainOpts(imagePath, path.basename(imagePath) === 'image.qcow2' ? [0, 1] : [0])];
}

/** The image's current guest disk as qemu-img reads it through its chain. */
async function qemuRaw(imagePath: string, encrypted: boolean): Promise<Uint8Array> {
  if (!encrypted) return rawOf(imagePath);
  const folder = tempDir();
  try {
    await runTool('qemu-img', ['convert', ...qemuOpened(imagePath, true), '-O', 'raw', folder.file('raw')]);
    return new Uint8Array(fs.readFileSync(folder.file('raw')));
  } finally {
    folder.cleanup();
  }
}

/** qemu-img check of a file of the test chain; its verdict as qemuVerdict gives it. */
async function chainVerdict(imagePath: string, encrypted: boolean): Promise<QemuVerdict> {
  return encrypted ? qemuVerdictOf(qemuOpened(imagePath, true)) : qemuVerdict(imagePath);
}

async function runCommitCrashCase(testCase: CommitCase): Promise<{ failures: string[]; states: number }> {
  const folder = tempDir();
  const failures: string[] = [];
  const fail = (message: string): void => {
    if (failures.length < 12) failures.push(message);
  };
  try {
    const top = folder.file('image.qcow2');
    const backing = folder.file('mid.qcow2');
    await overlayOnTwo(top, testCase.options, testCase.overlaySteps, testCase.backingBytes);
    const encrypted = testCase.encrypted === true;
    const passphrase = encrypted ? LUKS_PASSPHRASE : undefined;
    // The overlay first: encrypting it reads nothing of the file below.
    if (encrypted) for (const file of [top, backing]) encryptInPlace(file);
    const topInitial = new Uint8Array(fs.readFileSync(top));
    const backingInitial = new Uint8Array(fs.readFileSync(backing));
    const model = readChainGuest(top, backing, topInitial, backingInitial, passphrase);
    const backingBefore = readGuestState(new FaultFile(backing, backingInitial, { readOnly: true }), passphrase);

    const sequence: string[] = [];
    const topFault = new FaultFile(top, topInitial);
    const backingFault = new FaultFile(backing, backingInitial);
    const openFile = (filePath: string, readOnly: boolean): BlockFile => {
      if (filePath === top) return new SequencedFile(topFault, 'top', sequence);
      if (filePath === backing) return new SequencedFile(backingFault, 'backing', sequence);
      return NodeBlockFile.open(filePath, { readOnly });
    };
    const result = runSteps(commitSteps({ image: top, openFile, passphrase }));
    expect(result.emptied).toBe(true);
    const topLog: readonly FileEvent[] = topFault.log;
    const backingLog: readonly FileEvent[] = backingFault.log;
    const topFinal = topFault.contents();
    const backingFinal = backingFault.contents();
    const backingAfter = readGuestState(new FaultFile(backing, backingFinal, { readOnly: true }), passphrase);

    // The promised order: the backing file's last change and a flush after it, before the overlay's first write.
    const firstTopChange = sequence.findIndex((event) => event === 'top:write' || event === 'top:truncate');
    const lastBackingChange = sequence.findLastIndex((event) => event === 'backing:write' || event === 'backing:truncate');
    const backingFlushAfter = sequence.findIndex((event, index) => index > lastBackingChange && event === 'backing:flush');
    if (firstTopChange === -1) fail('the overlay was never written: the case tests nothing');
    if (lastBackingChange === -1) fail('the backing file was never written: the case tests nothing');
    if (backingFlushAfter === -1 || backingFlushAfter > firstTopChange) fail(`the overlay is written (event ${firstTopChange}) before the backing file is flushed after its last write (event ${lastBackingChange})`);
    if (testCase.cutsOverlay === true && !sequence.includes('top:truncate')) fail('the emptied overlay was not cut back: the case tests less than it says');

    const states: { where: string; top: Uint8Array | FaultFileState; backing: Uint8Array | FaultFileState }[] = [];
    for (const point of crashPoints(backingLog, crashSettings.randomSubsets(backingLog.length), 17, crashSettings.tornSubsets(backingLog.length))) {
      states.push({ where: `backing ${describeCrashPoint(backingLog, point)}`, top: topInitial, backing: { initial: backingInitial, log: backingLog, point } });
    }
    for (const point of crashPoints(topLog, crashSettings.randomSubsets(topLog.length), 29, crashSettings.tornSubsets(topLog.length))) {
      states.push({ where: `overlay ${describeCrashPoint(topLog, point)}`, top: { initial: topInitial, log: topLog, point }, backing: backingFinal });
    }
    const seen = new Set<string>();
    let sampled = 0;
    for (const state of states) {
      const topBytes = materialise(top, state.top);
      const backingBytes = materialise(backing, state.backing);
      const signature = `${hash(topBytes)}:${hash(backingBytes)}`;
      if (seen.has(signature)) continue;
      seen.add(signature);
      for (const [file, bytes] of [[top, topBytes], [backing, backingBytes]] as const) {
        for (const finding of walkImage(new FaultFile(file, bytes, { readOnly: true })).harmful) fail(`${state.where}: ${path.basename(file)}: ${finding.kind}: ${finding.message}`);
      }
      try {
        const seenByGuest = readChainGuest(top, backing, topBytes, backingBytes, passphrase);
        const at = firstDifference(seenByGuest, model);
        if (at !== -1) fail(`${state.where}: the overlay's guest data changed at byte ${at}`);
        const backingObserved = readGuestState(new FaultFile(backing, backingBytes, { readOnly: true }), passphrase);
        const violation = backingViolation(backingBefore, backingAfter, backingObserved);
        if (violation !== null) fail(`${state.where}: the backing file: ${violation}`);
      } catch (error) {
        fail(`${state.where}: cannot be read: ${(error as Error).message}`);
      }
      // qemu-img's view of a sample (every state in small cases).
      if (seen.size % crashSettings.qemuCheckEvery === 0 || seen.size <= 8) {
        sampled++;
        const stateFolder = tempDir();
        try {
          fs.copyFileSync(folder.file('base.qcow2'), stateFolder.file('base.qcow2'));
          fs.writeFileSync(stateFolder.file('mid.qcow2'), backingBytes);
          fs.writeFileSync(stateFolder.file('image.qcow2'), topBytes);
          for (const name of ['mid.qcow2', 'image.qcow2']) {
            const verdict = await chainVerdict(stateFolder.file(name), encrypted);
            for (const message of verdict.harmful) fail(`${state.where}: qemu-img check ${name}: ${message}`);
          }
          const at = firstDifference(await qemuRaw(stateFolder.file('image.qcow2'), encrypted), model);
          if (at !== -1) fail(`${state.where}: qemu-img reads the overlay differently at byte ${at}`);
        } finally {
          stateFolder.cleanup();
        }
      }
    }
    // The finished chain beside qemu-img's own commit of the same chain.
    const qemuFolder = tempDir();
    try {
      fs.copyFileSync(folder.file('base.qcow2'), qemuFolder.file('base.qcow2'));
      fs.writeFileSync(qemuFolder.file('mid.qcow2'), backingInitial);
      fs.writeFileSync(qemuFolder.file('image.qcow2'), topInitial);
      await qemuImg(['commit', '-q', ...qemuOpened(qemuFolder.file('image.qcow2'), encrypted)]);
      const finished = tempDir();
      try {
        fs.copyFileSync(folder.file('base.qcow2'), finished.file('base.qcow2'));
        fs.writeFileSync(finished.file('mid.qcow2'), backingFinal);
        fs.writeFileSync(finished.file('image.qcow2'), topFinal);
        for (const name of ['mid.qcow2', 'image.qcow2']) {
          const verdict = await chainVerdict(finished.file(name), encrypted);
          if (!isClean(verdict)) fail(`after the whole commit qemu-img check ${name} is not clean:\n${verdict.output}`);
        }
        const at = firstDifference(await qemuRaw(finished.file('mid.qcow2'), encrypted), await qemuRaw(qemuFolder.file('mid.qcow2'), encrypted));
        if (at !== -1) fail(`the finished backing file differs from qemu-img commit's at byte ${at}`);
      } finally {
        finished.cleanup();
      }
    } finally {
      qemuFolder.cleanup();
    }
    console.log(`crash: ${testCase.name}: ${states.length} crash states tried (${seen.size} distinct pairs of files; ${sampled} read by qemu-img)`);
    return { failures, states: seen.size };
  } finally {
    folder.cleanup();
  }
}

/**
 * Per cluster, the backing file reads as before the commit or as after it. A grown one has the old
 * size (the grow not yet switched: as before) or the new one (past the old end reading zeros, as the
 * grow leaves it, or the committed data).
 */
function backingViolation(before: GuestState, after: GuestState, observed: GuestState): string | null {
  const size = observed.current.length;
  if (size === before.current.length) return contractViolation('per-cluster', 512, before, { ...after, current: after.current.subarray(0, size) }, observed);
  if (size !== after.current.length) return `its size is ${size}, neither ${before.current.length} nor ${after.current.length}`;
  const grown = new Uint8Array(size);
  grown.set(before.current);
  return contractViolation('per-cluster', 512, { ...before, current: grown }, after, observed);
}

interface FaultFileState {
  initial: Uint8Array;
  log: readonly FileEvent[];
  point: CrashPoint;
}

function materialise(filePath: string, state: Uint8Array | FaultFileState): Uint8Array {
  if (state instanceof Uint8Array) return state;
  return crashState(filePath, state.initial, state.log, state.point).bytes();
}

function hash(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The overlay's current guest disk, read through the engine from these bytes of the overlay and its backing file. */
function readChainGuest(top: string, backing: string, topBytes: Uint8Array, backingBytes: Uint8Array, passphrase?: string): Uint8Array {
  const image = Qcow2Image.openFile(new FaultFile(top, topBytes, { readOnly: true }), {
    readOnly: true,
    passphrase,
    openFile: (filePath, readOnly) => (filePath === backing ? new FaultFile(backing, backingBytes, { readOnly: true }) : NodeBlockFile.open(filePath, { readOnly })),
  });
  try {
    return image.read(0, image.virtualSize);
  } finally {
    image.close();
  }
}

describe('commit: a power cut anywhere leaves the overlay reading as before, each file valid', () => {
  for (const testCase of commitCases.filter((each) => crashSettings.full || each.encrypted !== true)) {
    it(testCase.name, async () => {
      const report = await runCommitCrashCase(testCase);
      expect(report.failures).toEqual([]);
      expect(report.states).toBeGreaterThanOrEqual(4);
    }, 900_000);
  }
});
