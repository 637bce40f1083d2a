/**
 * `qemu-img commit`: the data an overlay (and, with a base further down, every file between)
 * allocates is written into the backing file, then — by default, and only when the base is the
 * overlay's own backing file — the overlay is emptied so it reads everything from the backing file,
 * and its file gives back the clusters that leaves free at its end (qemu-img's file shrinks too).
 * `keepOverlay` is qemu-img's -d; a base further down implies it, as in qemu-img (the files between
 * still hold their data). A base smaller than the overlay grows to the overlay's size first, as
 * qemu-img 7.2 grows it (its mirror job truncates the target up before copying); a grow qemu-img
 * would refuse (a v2 base with snapshots) is refused the same way.
 *
 * Crash safety: the backing file receives everything and is flushed before the overlay changes at
 * all, so a crash at any point leaves the overlay's guest data as it was: a grown base reads zeros
 * past its old end, as it did before (resize.ts grows it crash-safely, before any data is copied);
 * while the backing file is being written, the overlay still holds every byte it covers; while the
 * overlay is emptied, the backing file already holds the same bytes; its file is cut only after the
 * emptied tables and the refcount drops are durable, and only where refcounts are 0. Each file
 * keeps the engine's own write order (image.ts flush) for its metadata.
 */
import * as path from 'node:path';
import { Qcow2Error } from '../errors.ts';
import type { BlockFile } from '../io/block-file.ts';
import { alignedBytes } from '../io/aligned-bytes.ts';
import { coalescing } from '../io/coalescing-file.ts';
import { currentIdentity, sameFile } from '../io/file-identity.ts';
import { releaseEmptyTables } from '../image/empty-tables.ts';
import { truncateFreeEnd } from '../image/free-end.ts';
import { Qcow2Image, namingBackingPassphrase, resolveBackingPath } from '../image/image.ts';
import { visitLayerRuns } from '../image/layer-runs.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import type { Steps } from '../steps.ts';
import { nextAllocationFrom, visitAllocationAbove, type ChainRunKind } from './allocation-above.ts';
import { refuseChangingSnapshots, snapshotsThatWouldChange, type GuestRange } from './snapshot-exposure.ts';
import type { GuestReader } from '../image/guest-reader.ts';
import { backingLink, guardedOpenFile, openMissingAware, refuseLegacyAesTarget, refuseLocked, refuseLockedChain, refuseLoop, type ChainUnlock, type OpenFile } from './open-chain.ts';
import { resizeImage } from '../snapshots/resize.ts';

/**
 * `passphrase` opens every encrypted file the commit reads or writes (the overlay, the files
 * between, the base and the chain below it); without it an encrypted one is refused (LOCKED)
 * before anything is written. Data goes into an encrypted base under the base's own key.
 */
export interface CommitRequest extends ChainUnlock {
  /** The overlay whose data goes down. */
  image: string;
  /** The file to commit into (qemu-img -b): a file of the chain, by path; default the overlay's backing file. */
  base?: string;
  /** Leave the overlay as it is (qemu-img -d). */
  keepOverlay?: boolean;
  /**
   * The backing file the caller showed (the app's dialog named it): where the overlay names
   * another file now (another program rebased it meanwhile), nothing is written.
   */
  expectedBacking?: string;
  /** Tests: the files (fault-injecting ones for the crash tests). */
  openFile?: OpenFile;
}

export interface CommitResult {
  /** The file written into. */
  base: string;
  /** Guest bytes written into it (data and zeros). */
  committedBytes: number;
  /** Its size before, when it was smaller than the overlay and grew to the overlay's size; else null. */
  grownFrom: number | null;
  /** Whether the overlay was emptied. */
  emptied: boolean;
  /**
   * Free clusters the emptied overlay's file still holds below its last cluster in use (bytes):
   * refcount blocks spread through a big or small-clustered file keep its end in use, so the cut
   * gives back only the tail. A caller can compact the file (rewrite/) to give back the rest.
   */
  freeBytesLeft: number;
  /**
   * Whether that free space is worth a compaction: at least 1 MiB and a quarter of the file. An
   * overlay whose snapshots keep most of it would be copied whole to give back a little.
   */
  worthCompacting: boolean;
}

/** Free space left in an emptied overlay below which compacting it is not worth its while. */
const FREE_SPACE_WORTH_COMPACTING = 1024 * 1024;

/** Guest bytes read and written per step. */
const CHUNK_BYTES = 4 * 1024 * 1024;

/** Where commit writes: a qcow2 image (guest writes) or a raw file. */
interface BaseWriter extends GuestReader {
  readonly virtualSize: number;
  /** Grows the guest disk to `size` bytes, reading zeros past its old end, durably. */
  grow(size: number): void;
  write(data: Uint8Array, guestOffset: number): void;
  writeZeroes(guestOffset: number, length: number): void;
  flush(): void;
  close(): void;
}

export function* commitSteps(request: CommitRequest, job: JobContext = silentJob): Steps<CommitResult> {
  const openFile = request.openFile ?? guardedOpenFile;
  const opened: Qcow2Image[] = [];
  let base: BaseWriter | null = null;
  try {
    const unlock = { passphrase: request.passphrase, trustLegacyPassphrase: request.trustLegacyPassphrase, job };
    const top = Qcow2Image.open(request.image, { openFile, openBacking: false, refuseInUse: 'changing', readOnly: request.keepOverlay === true, ...unlock });
    opened.push(top);
    // The files above the base, top first, each linked to the next for reads.
    const layers: Qcow2Image[] = [top];
    const chain = [request.image];
    let link = backingLink(top, openFile);
    if (link === null) throw new Qcow2Error('INVALID_ARGUMENT', `${request.image} has no backing file to commit into`);
    if (request.expectedBacking !== undefined && !sameFile(link.path, request.expectedBacking)) {
      throw new Qcow2Error('INVALID_ARGUMENT', `${request.image} reads through ${link.path} now, not ${request.expectedBacking} as it did when the commit was asked for (another program changed it): nothing was committed; look at its backing chain again`);
    }
    const wanted = request.base ?? null;
    while (wanted !== null && !namesBase(link, wanted, layers.at(-1)?.file.path ?? request.image)) {
      refuseLoop(chain, link.path);
      if (link.format !== 'qcow2') throw new Qcow2Error('INVALID_ARGUMENT', `${request.base ?? ''} is not in the backing chain of ${request.image}`);
      const file = openMissingAware(link.path, true, openFile);
      const layer = openLayer(file, link.path, unlock);
      opened.push(layer);
      const above = layers.at(-1);
      if (above !== undefined) above.backing = layer;
      layers.push(layer);
      chain.push(link.path);
      const next = backingLink(layer, openFile);
      if (next === null) throw new Qcow2Error('INVALID_ARGUMENT', `${request.base ?? ''} is not in the backing chain of ${request.image}`);
      link = next;
    }
    refuseLoop(chain, link.path);
    base = openBase(link.path, link.format, openFile, chain, unlock);
    // What cannot be done at all (no backing file, a base not in the chain) is said before the passphrase is asked for.
    for (const layer of layers) refuseLocked(layer);
    const baseIdentity = currentIdentity(link.path);
    const emptying = request.keepOverlay !== true && layers.length === 1;
    // Before the base takes anything: an overlay that cannot be emptied (dirty bitmaps, a dirty bit,
    // damaged tables) refuses the whole commit, as any refusal leaves every file as it was.
    if (emptying) {
      top.assertWritable();
      top.validateForChange();
    }
    // Past a smaller base's end the snapshots read zeros before and after it grows: the check holds either way.
    refuseChangingSnapshots(snapshotsThatWouldChange(top, base, committedView(top), (hole) => committedRanges(layers, hole), job), 'This commit');
    const grownFrom = top.virtualSize > base.virtualSize ? base.virtualSize : null;
    if (grownFrom !== null) base.grow(top.virtualSize);
    const committedBytes = yield* copyDown(layers, base, job);
    base.flush();
    refuseReplacedBase(link.path, baseIdentity);
    let freeBytesLeft = 0;
    if (emptying) {
      yield* emptyOverlay(top, job);
      truncateFreeEnd(top);
      freeBytesLeft = freeClusterBytes(top);
    }
    const worthCompacting = freeBytesLeft >= FREE_SPACE_WORTH_COMPACTING && freeBytesLeft * 4 >= top.file.size();
    return { base: link.path, committedBytes, grownFrom, emptied: emptying, freeBytesLeft, worthCompacting };
  } finally {
    // Each layer closes alone: the links between them were this operation's, not theirs.
    for (const layer of opened) layer.backing = null;
    for (const layer of opened.reverse()) layer.close();
    base?.close();
  }
}

/**
 * Whether -b BASE names the file `link` leads to (the backing file of the image at `above`): as
 * qemu-img matches it — the name as the header stores it, or a relative name resolved from that
 * image's folder — or as a path from the working directory.
 */
function namesBase(link: { path: string; name: string }, base: string, above: string): boolean {
  if (link.name === base || sameFile(link.path, base)) return true;
  return !path.isAbsolute(base) && sameFile(link.path, resolveBackingPath(above, base));
}

/** How the files of the chain are unlocked: the request's passphrase, with the job for PBKDF2's progress and cancel. */
type Unlock = ChainUnlock & { job: JobContext };

function openLayer(file: BlockFile, layerPath: string, unlock: Unlock): Qcow2Image {
  try {
    return Qcow2Image.openFile(file, { readOnly: true, openBacking: false, refuseInUse: 'changing', ...unlock });
  } catch (error) {
    file.close();
    throw namingBackingPassphrase(error, layerPath);
  }
}

function openBase(basePath: string, format: 'qcow2' | 'raw', openFile: OpenFile, chainAbove: readonly string[], unlock: Unlock): BaseWriter {
  if (format === 'raw') {
    const file = coalescing(openMissingAware(basePath, false, openFile), { startWriteback: true });
    let virtualSize = file.size();
    return {
      get virtualSize() {
        return virtualSize;
      },
      grow: (size) => {
        // A raw file reads zeros where it grows (a hole).
        file.truncate(size);
        file.flush();
        virtualSize = size;
      },
      readInto: (target, guestOffset) => {
        const count = guestOffset < virtualSize ? file.read(target, guestOffset) : 0;
        if (count < target.length) target.fill(0, count);
      },
      write: (data, guestOffset) => file.write(data, guestOffset),
      writeZeroes: (guestOffset, length) => {
        const zeros = new Uint8Array(Math.min(length, CHUNK_BYTES));
        for (let done = 0; done < length; done += zeros.length) file.write(zeros.subarray(0, Math.min(zeros.length, length - done)), guestOffset + done);
      },
      flush: () => file.flush(),
      close: () => file.close(),
    };
  }
  const file = coalescing(openMissingAware(basePath, false, openFile), { startWriteback: true });
  let image: Qcow2Image;
  try {
    // Its own backing chain opens for reads (a partial cluster written into it is completed from
    // below), with the files above it counted in, so that a chain looping back up fails as a loop.
    // An encrypted base takes the data under its own key; its encrypted backing files open with the same passphrase.
    image = Qcow2Image.openFile(file, { openFile, refuseInUse: 'changing', chain: [...chainAbove, basePath], ...unlock });
  } catch (error) {
    file.close();
    throw namingBackingPassphrase(error, basePath);
  }
  try {
    refuseLegacyAesTarget(image);
    // The base's own backing chain completes the clusters it takes in part.
    refuseLockedChain(image);
    image.assertWritable();
  } catch (error) {
    image.close();
    throw error;
  }
  const opened = image;
  return {
    get virtualSize() {
      return opened.virtualSize;
    },
    grow: (size) => {
      resizeImage(opened, size);
    },
    readInto: (target, guestOffset) => opened.readInto(target, guestOffset),
    write: (data, guestOffset) => opened.write(data, guestOffset),
    writeZeroes: (guestOffset, length) => opened.writeZeroes(guestOffset, length),
    flush: () => opened.flush(),
    close: () => opened.close(),
  };
}

/** What the base will read once the commit is done (the top's current disk): a reader over the top that does not close it. */
function committedView(top: Qcow2Image): GuestReader {
  return { virtualSize: top.virtualSize, readInto: (target, guestOffset) => top.readInto(target, guestOffset), close: () => {} };
}

/**
 * The parts of a snapshot's hole (of the top) that the commit changes below it: where the files
 * between the top and the base allocate nothing (the snapshot reads the base there) and some file
 * above the base allocates something (the commit writes there).
 */
function committedRanges(layers: readonly Qcow2Image[], hole: GuestRange): GuestRange[] {
  const ranges: GuestRange[] = [];
  visitAllocationAbove(layers.slice(1), hole.start, hole.start + hole.length, (start, length, kind) => {
    if (kind !== 'unallocated') return;
    visitAllocationAbove(layers.slice(0, 1), start, start + length, (from, size, above) => {
      if (above !== 'unallocated') ranges.push({ start: from, length: size });
    });
  });
  return ranges;
}

/**
 * The base's name must still lead to the file the commit opened and wrote into: moved or replaced
 * meanwhile (another copy put in its place), the data went into a file the chain no longer reads,
 * and emptying the overlay then would lose it. Refused before the overlay changes, so its data
 * stays where it was.
 */
function refuseReplacedBase(basePath: string, identityAtOpen: string | null): void {
  if (identityAtOpen === null || currentIdentity(basePath) === identityAtOpen) return;
  throw new Qcow2Error('IN_USE', `${basePath} was moved or replaced while the commit wrote into it; the overlay was left as it was (its data is still there): commit again`);
}

/** Phase 1: everything the layers allocate, written into the base, chunk by chunk. */
function* copyDown(layers: readonly Qcow2Image[], base: BaseWriter, job: JobContext): Steps<number> {
  const top = layers[0];
  if (top === undefined) return 0;
  const virtualSize = top.virtualSize;
  const buffer = alignedBytes(CHUNK_BYTES);
  let committed = 0;
  for (let chunkStart = 0; chunkStart < virtualSize; chunkStart += CHUNK_BYTES) {
    job.throwIfCancelled();
    chunkStart = leapToAllocation(layers, chunkStart, virtualSize);
    if (chunkStart >= virtualSize) break;
    const chunkEnd = Math.min(virtualSize, chunkStart + CHUNK_BYTES);
    const runs: { start: number; length: number; kind: ChainRunKind }[] = [];
    visitAllocationAbove(layers, chunkStart, chunkEnd, (start, length, kind) => runs.push({ start, length, kind }));
    for (const run of runs) {
      if (run.kind === 'unallocated') continue;
      if (run.kind === 'zero') base.writeZeroes(run.start, run.length);
      else {
        const data = buffer.subarray(0, run.length);
        top.readInto(data, run.start);
        base.write(data, run.start);
      }
      committed += run.length;
    }
    job.progress('commit', chunkEnd, virtualSize);
    yield;
  }
  job.progress('commit', virtualSize, virtualSize);
  return committed;
}

/** The chunk to visit next: `chunkStart`, or the one holding the next place a layer maps (the end when none does). */
function leapToAllocation(layers: readonly Qcow2Image[], chunkStart: number, end: number): number {
  const next = nextAllocationFrom(layers, chunkStart, end);
  if (next >= end) return end;
  return next - (next % CHUNK_BYTES);
}

/** Phase 2: every cluster the overlay allocates becomes unallocated (QEMU's full discard). */
function freeClusterBytes(image: Qcow2Image): number {
  const clusters = Math.ceil(image.file.size() / image.clusterBytes);
  let free = 0;
  for (let cluster = 0; cluster < clusters; cluster++) if (image.refcounts.get(cluster) === 0) free++;
  return free * image.clusterBytes;
}

function* emptyOverlay(top: Qcow2Image, job: JobContext): Steps<void> {
  const clusterBytes = top.clusterBytes;
  for (let chunkStart = 0; chunkStart < top.virtualSize; chunkStart += CHUNK_BYTES) {
    chunkStart = leapToAllocation([top], chunkStart, top.virtualSize);
    if (chunkStart >= top.virtualSize) break;
    const chunkEnd = Math.min(top.virtualSize, chunkStart + CHUNK_BYTES);
    const allocated: { start: number; end: number }[] = [];
    visitLayerRuns(top, top.l1, chunkStart, chunkEnd, (start, length, kind) => {
      if (kind === 'unallocated') return;
      const from = Math.floor(start / clusterBytes) * clusterBytes;
      const to = Math.min(top.virtualSize, Math.ceil((start + length) / clusterBytes) * clusterBytes);
      const last = allocated.at(-1);
      if (last !== undefined && last.end >= from) last.end = Math.max(last.end, to);
      else allocated.push({ start: from, end: to });
    });
    for (const range of allocated) top.deallocate(range.start, range.end - range.start);
    job.progress('empty overlay', chunkEnd, top.virtualSize);
    yield;
  }
  job.progress('empty overlay', top.virtualSize, top.virtualSize);
  // Its tables go too, so that the clusters they held leave the file's end free to be cut.
  const released = releaseEmptyTables(top);
  top.flush();
  if (released > 0) top.rebuildMetadataClusters();
}
