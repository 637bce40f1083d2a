/**
 * `qemu-img rebase`: an overlay is given another backing file (or none). In safe mode (the
 * default) the guest keeps seeing the same data: wherever the overlay allocates nothing and the old
 * backing chain and the new one read differently, the old chain's bytes are first copied into the
 * overlay; only then does the header name the new file. Unsafe mode (-u) only rewrites the header,
 * for when the data has moved (a renamed or copied backing file).
 *
 * Crash safety: until the header switches, the overlay still reads through the old chain, and
 * what is copied in is exactly what that chain showed, so a crash leaves the guest data as before;
 * the switch itself is one write after the new name is durable (backing-header.ts), so a crash
 * leaves the old or the new backing file named, and either reads the same.
 */
import { Qcow2Error } from '../errors.ts';
import { alignedBytes } from '../io/aligned-bytes.ts';
import { coalescing } from '../io/coalescing-file.ts';
import { sameFile } from '../io/file-identity.ts';
import { bytesEqual, isAllZero } from '../format/zeroes.ts';
import type { GuestReader } from '../image/guest-reader.ts';
import { dataFileIsRaw } from '../image/data-file.ts';
import { RawImage } from '../image/raw-image.ts';
import { backingProtocolProblem, namingBackingPassphrase, Qcow2Image, resolveBackingPath } from '../image/image.ts';
import { detectFormat, openGuestReader, type ImageFormat } from '../image/image-format.ts';
import { visitLayerRuns } from '../image/layer-runs.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import type { Steps } from '../steps.ts';
import { nextAllocationFrom, visitAllocationAbove } from './allocation-above.ts';
import { assertBackingName, finishBackingSwitch, stageBackingName, switchBackingFile } from './backing-header.ts';
import { readBackingChain } from './chain.ts';
import { guardedOpenFile, refuseLegacyAesTarget, refuseLocked, refuseLockedChain, type ChainUnlock, type OpenFile } from './open-chain.ts';
import { possibleData } from './possible-data.ts';
import { refuseChangingSnapshots, snapshotsThatWouldChange, type GuestRange } from './snapshot-exposure.ts';

/**
 * `passphrase` opens every encrypted file a safe rebase reads or writes (the overlay, its old
 * backing chain, the new one); without it an encrypted one is refused (LOCKED) before anything is
 * written. Data copied into an encrypted overlay goes in under the overlay's own key. Unsafe mode
 * reads no data and takes none.
 */
export interface RebaseRequest extends ChainUnlock {
  image: string;
  /** The new backing file's name as the header will record it (relative to the image's folder, as QEMU resolves it), or null for none. */
  backingFile: string | null;
  /** Its format; detected from the file when absent (qemu-img 7.2 asks for -F instead). */
  backingFormat?: ImageFormat;
  /** qemu-img -u: the header only, no data compared or copied. */
  unsafe?: boolean;
  /** Tests: the overlay's file (a fault-injecting one for the crash tests). */
  openFile?: OpenFile;
}

export interface RebaseResult {
  /** Guest bytes copied into the overlay because the two chains read them differently. */
  copiedBytes: number;
  /** Guest bytes compared. */
  comparedBytes: number;
}

const CHUNK_BYTES = 4 * 1024 * 1024;

export function* rebaseSteps(request: RebaseRequest, job: JobContext = silentJob): Steps<RebaseResult> {
  const openFile = request.openFile ?? guardedOpenFile;
  // Safe mode reads the old chain through the overlay; a VM writing any file of it is refused.
  // Data copied into new clusters goes out in long writes (coalescing-file.ts).
  const unlock = request.unsafe === true ? {} : { passphrase: request.passphrase, trustLegacyPassphrase: request.trustLegacyPassphrase, job };
  const top = Qcow2Image.open(request.image, { openFile: (filePath, readOnly) => coalescing(openFile(filePath, readOnly), { startWriteback: true }), openBacking: request.unsafe !== true, refuseInUse: 'changing', ...unlock });
  try {
    return yield* rebaseOpenImage(top, request, job);
  } finally {
    top.close();
  }
}

/**
 * The rebase of an image already open for writing (with its old backing chain open for reads,
 * unless unsafe): what rebaseSteps does once it has opened it; the crash tests call it on a
 * fault-injecting file.
 */
export function* rebaseOpenImage(top: Qcow2Image, request: Omit<RebaseRequest, 'image' | 'openFile'>, job: JobContext = silentJob): Steps<RebaseResult> {
  if (request.backingFile !== null) assertBackingName(request.backingFile);
  // A name QEMU reads as a protocol address cannot be read here to compare (-u writes it, as qemu-img's -u does).
  const protocol = request.backingFile === null || request.unsafe === true ? null : backingProtocolProblem(request.backingFile);
  if (protocol !== null) throw new Qcow2Error('UNSUPPORTED_FEATURE', `${protocol}; a safe rebase reads it (rebase -u only writes the name)`);
  const imagePath = top.file.path;
  // Its data file promises to read alone as the whole guest disk; a backing file would break that (QEMU refuses too).
  if (request.backingFile !== null && dataFileIsRaw(top.header)) {
    throw new Qcow2Error('INVALID_ARGUMENT', `${imagePath} keeps its guest data in a raw data file (data_file_raw), which cannot have a backing file`);
  }
  const newPath = request.backingFile === null ? null : resolveBackingPath(imagePath, request.backingFile);
  // A new backing file that the old chain (open below the overlay) already reads in the format
  // asked for has that chain's tail for its own, which the open followed and found free of loops:
  // it is read through the old chain, and only another file's chain is read for the loop check.
  const between = newPath === null ? null : layersAbove(top, newPath);
  if (newPath !== null && between === null) refuseChainThrough(newPath, imagePath);
  const format = newPath === null ? null : (request.backingFormat ?? detectNewFormat(newPath, request.unsafe === true));
  const sharedReader = format === null ? null : oldChainReader(top, between, format);
  if (newPath !== null && between !== null && sharedReader === null) refuseChainThrough(newPath, imagePath);
  top.assertWritable();
  if (request.unsafe === true) {
    switchBackingFile(top, request.backingFile, format);
    return { copiedBytes: 0, comparedBytes: 0 };
  }
  refuseLegacyAesTarget(top);
  refuseLocked(top);
  if (top.header.backingFile !== null && top.backing === null) throw new Qcow2Error('INTERNAL', 'a safe rebase needs the old backing chain open');
  // Both chains are read to compare them: an encrypted file in either that is still locked is refused before anything is copied.
  refuseLockedChain(top.backing);
  const newChain = newPath !== null && format !== null ? (sharedReader ?? openNewChain(newPath, format, { passphrase: request.passphrase, trustLegacyPassphrase: request.trustLegacyPassphrase, job })) : null;
  let result: RebaseResult;
  try {
    refuseLockedChain(newChain);
    // Wherever a snapshot allocates nothing it reads the old chain too, and the switch would change it.
    // The files between count alone only when the new file is read as the old chain reads it: the
    // same file in another format (-F raw for a qcow2 file) reads differently anywhere.
    const differences = whereChainsMayDiffer(sharedReader === null ? null : between, top.backing, newChain);
    refuseChangingSnapshots(snapshotsThatWouldChange(top, top.backing, newChain, (hole) => differences.ranges(hole.start, hole.length), job), 'This rebase');
    result = yield* copyDifferences(top, newChain, differences, job);
  } finally {
    newChain?.close();
  }
  // The new name goes out with the copied data (to bytes no header names yet), so the flush that
  // makes the data durable makes the name durable too: one fdatasync fewer, the order the same.
  const staged = stageBackingName(top, request.backingFile, format);
  top.flush();
  // Already durable by then (the flush's first step always flushes the file); a file with nothing
  // written since its last fdatasync skips the call, so saying so costs nothing.
  top.file.flush();
  finishBackingSwitch(top, staged);
  return result;
}

function detectNewFormat(newPath: string, unsafe: boolean): ImageFormat {
  try {
    return detectFormat(newPath);
  } catch (error) {
    if (error instanceof Qcow2Error && error.code === 'NOT_FOUND') {
      if (unsafe) throw new Qcow2Error('INVALID_ARGUMENT', `${newPath} does not exist: give its format (-F qcow2 or -F raw) to name it anyway`, { cause: error });
      throw new Qcow2Error('BACKING_NOT_FOUND', `The new backing file ${newPath} does not exist`, { cause: error });
    }
    throw error;
  }
}

/** A new backing file whose own chain leads back to the image would make a loop. */
function refuseChainThrough(newPath: string, imagePath: string): void {
  // The image itself is not opened again: it is open for writing here, and a reader would wait for it.
  const chain = readBackingChain(newPath, { stopAt: imagePath });
  if (chain.files.some((file) => sameFile(file.path, imagePath))) {
    throw new Qcow2Error('INVALID_ARGUMENT', `${newPath} is ${imagePath} or has it in its own backing chain: the chain would loop`);
  }
}

function openNewChain(newPath: string, format: ImageFormat, unlock: ChainUnlock & { job: JobContext }): GuestReader {
  try {
    return openGuestReader(newPath, format, { refuseInUse: 'changing', guard: true, ...unlock });
  } catch (error) {
    if (error instanceof Qcow2Error && error.code === 'NOT_FOUND') throw new Qcow2Error('BACKING_NOT_FOUND', `The new backing file ${newPath} does not exist`, { cause: error });
    throw namingBackingPassphrase(error, newPath);
  }
}

/**
 * When the new backing file is in the old chain, the files between it and the overlay (top
 * first); null when it is not (or a layer is not a qcow2 image). Only what those files allocate
 * can read differently, so only that needs comparing — qemu-img's shortcut too.
 */
function layersAbove(top: Qcow2Image, newPath: string): Qcow2Image[] | null {
  const layers: Qcow2Image[] = [];
  let reader = top.backing;
  while (reader instanceof Qcow2Image) {
    if (sameFile(reader.file.path, newPath)) return layers;
    layers.push(reader);
    reader = reader.backing;
  }
  if (reader instanceof RawImage && sameFile(reader.file.path, newPath)) return layers;
  return null;
}

/**
 * The new backing file as the old chain already reads it (below `between`), when that chain opened
 * it in the format asked for: the same reads through the same tables, with no second open. Its
 * close is left to the overlay, which holds the old chain.
 */
function oldChainReader(top: Qcow2Image, between: readonly Qcow2Image[] | null, format: ImageFormat): GuestReader | null {
  if (between === null) return null;
  const reader = (between.at(-1) ?? top).backing;
  const sameFormat = format === 'qcow2' ? reader instanceof Qcow2Image : reader instanceof RawImage;
  if (reader === null || !sameFormat) return null;
  return { virtualSize: reader.virtualSize, readInto: (target, guestOffset) => reader.readInto(target, guestOffset), close: () => {} };
}

/** Where the old chain and the new one may read differently. */
interface ChainDifferences {
  /** The parts of [start, start + length) that may differ, in order. */
  ranges(start: number, length: number): GuestRange[];
  /** The first offset at or past `offset` (below `end`, else `end`) that may. */
  next(offset: number, end: number): number;
}

/**
 * Where the chains may read differently: with the new backing file in the old chain, only where
 * the files between (`between`) allocate anything; else where either chain may read other than
 * zeros (both read zeros everywhere else), or everywhere when a chain cannot tell.
 */
function whereChainsMayDiffer(between: readonly Qcow2Image[] | null, oldChain: GuestReader | null, newChain: GuestReader | null): ChainDifferences {
  if (between !== null) {
    return {
      ranges(start, length) {
        const ranges: GuestRange[] = [];
        visitAllocationAbove(between, start, start + length, (from, size, kind) => {
          if (kind !== 'unallocated') appendRange(ranges, from, size);
        });
        return ranges;
      },
      next: (offset, end) => (between.length === 0 ? end : nextAllocationFrom(between, offset, end)),
    };
  }
  const old = possibleData(oldChain);
  const next = possibleData(newChain);
  if (old === null || next === null) return { ranges: (start, length) => [{ start, length }], next: (offset) => offset };
  return {
    ranges(start, length) {
      const pieces: GuestRange[] = [];
      const add = (from: number, size: number): void => {
        pieces.push({ start: from, length: size });
      };
      old.visit(start, start + length, add);
      next.visit(start, start + length, add);
      pieces.sort((a, b) => a.start - b.start);
      const ranges: GuestRange[] = [];
      for (const piece of pieces) {
        const last = ranges.at(-1);
        if (last !== undefined && piece.start <= last.start + last.length) last.length = Math.max(last.length, piece.start + piece.length - last.start);
        else ranges.push({ ...piece });
      }
      return ranges;
    },
    next: (offset, end) => Math.min(old.next(offset, end), next.next(offset, end)),
  };
}

/** Where the overlay allocates nothing, the old chain's bytes go into it wherever the new chain's differ. */
function* copyDifferences(top: Qcow2Image, newChain: GuestReader | null, differences: ChainDifferences, job: JobContext): Steps<RebaseResult> {
  const oldChain = top.backing;
  const virtualSize = top.virtualSize;
  const oldBuffer = alignedBytes(CHUNK_BYTES);
  const newBuffer = alignedBytes(CHUNK_BYTES);
  const result: RebaseResult = { copiedBytes: 0, comparedBytes: 0 };
  const clusterBytes = top.clusterBytes;
  for (let chunkStart = 0; chunkStart < virtualSize; chunkStart += CHUNK_BYTES) {
    job.throwIfCancelled();
    // Stretches where the chains cannot differ are leapt over, not walked a chunk at a time.
    const next = differences.next(chunkStart, virtualSize);
    if (next >= virtualSize) break;
    chunkStart = next - (next % CHUNK_BYTES);
    const chunkEnd = Math.min(virtualSize, chunkStart + CHUNK_BYTES);
    // The overlay's holes, whole (its walk gives them a cluster at a time), then what of them may differ.
    const unallocated: { start: number; length: number }[] = [];
    visitLayerRuns(top, top.l1, chunkStart, chunkEnd, (start, length, kind) => {
      if (kind === 'unallocated') appendRange(unallocated, start, length);
    });
    const holes: { start: number; length: number }[] = [];
    for (const run of unallocated) for (const range of differences.ranges(run.start, run.length)) appendRange(holes, range.start, range.length);
    for (const hole of holes) {
      const oldBytes = oldBuffer.subarray(0, hole.length);
      const newBytes = newBuffer.subarray(0, hole.length);
      readOrZeros(oldChain, oldBytes, hole.start);
      readOrZeros(newChain, newBytes, hole.start);
      result.comparedBytes += hole.length;
      // Cluster by cluster (the overlay's unit of allocation): a cluster that differs anywhere is copied whole.
      for (let pieceStart = hole.start; pieceStart < hole.start + hole.length; ) {
        const pieceEnd = Math.min(hole.start + hole.length, (Math.floor(pieceStart / clusterBytes) + 1) * clusterBytes);
        const from = pieceStart - hole.start;
        const to = pieceEnd - hole.start;
        const oldPiece = oldBytes.subarray(from, to);
        if (!bytesEqual(oldPiece, newBytes.subarray(from, to))) {
          const whole = pieceStart % clusterBytes === 0 && (to - from === clusterBytes || pieceEnd === virtualSize);
          if (whole && top.version === 3 && isAllZero(oldPiece)) top.writeZeroes(pieceStart, pieceEnd - pieceStart);
          else top.write(oldPiece, pieceStart);
          result.copiedBytes += pieceEnd - pieceStart;
        }
        pieceStart = pieceEnd;
      }
    }
    job.progress('rebase', chunkEnd, virtualSize);
    yield;
  }
  job.progress('rebase', virtualSize, virtualSize);
  return result;
}

/** Adds [start, start + length) to ranges kept in order, joined to the last one where it continues it. */
function appendRange(ranges: { start: number; length: number }[], start: number, length: number): void {
  const last = ranges.at(-1);
  if (last !== undefined && last.start + last.length === start) last.length += length;
  else ranges.push({ start, length });
}

function readOrZeros(reader: GuestReader | null, target: Uint8Array, guestOffset: number): void {
  if (reader === null || guestOffset >= reader.virtualSize) target.fill(0);
  else reader.readInto(target, guestOffset);
}
