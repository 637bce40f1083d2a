/**
 * `qemu-img convert`: copies the guest disk of a raw or qcow2 image (its backing chain flattened)
 * into a new raw or qcow2 image, in chunks of a few MiB so memory stays bounded whatever the disk
 * size. All-zero clusters are not stored (the output is sparse); with a backing file for the
 * output, clusters equal to the backing file's are not stored either (like `qemu-img convert -B`,
 * but by comparing data, so it is right whatever the source's own chain is).
 *
 * The output is written under a temporary name and renamed into place when complete, so a cancel
 * or a crash never leaves a partial file under the target name.
 *
 * Like qemu-img convert, this drops internal snapshots: the output holds the current state only.
 * (Cowbell's own rewrites — compress, compact — keep them; that is rewrite.ts's job, not this.)
 */
import * as fs from 'node:fs';
import { alignedBytes } from '../io/aligned-bytes.ts';
import { writeFileAtomicallySteps, type AtomicFileSystem } from '../io/atomic-file.ts';
import type { BlockFile } from '../io/block-file.ts';
import { inlineCompressor, threadedCompressor, type ClusterCompressor } from '../codec/cluster-compressor.ts';
import { resolveCreateOptions, type CreateOptions, type ResolvedCreateOptions } from '../image/create.ts';
import { Qcow2Error } from '../errors.ts';
import { alignUp } from '../format/bytes.ts';
import type { GuestReader } from '../image/guest-reader.ts';
import { detectFormat, openGuestReader, type ImageFormat } from '../image/image-format.ts';
import { findSnapshot, Qcow2Image, Qcow2StateView, resolveBackingPath, type SnapshotRef } from '../image/image.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import type { Passphrase } from '../crypto/luks-keys.ts';
import { mapRange } from '../image/map.ts';
import { Qcow2StreamWriter } from './qcow2-stream-writer.ts';
import { RawImage } from '../image/raw-image.ts';
import { readsThrough } from '../image/backing-files.ts';
import { sameFile } from '../io/file-identity.ts';
import { runSteps, runStepsYielding, type Steps } from '../steps.ts';
import { bytesEqual, isAllZero } from '../format/zeroes.ts';
import type { UnreadableRange } from '../model.ts';
import { RescueReader } from './rescue-reader.ts';
import type { Damage } from '../image/damage-scan.ts';

export const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;
export const WRITE_BEHIND_MIN_BYTES = 64 * 1024 * 1024;
/** Granularity of zero detection for raw output (qemu-img's default -S is 4 KiB; larger means fewer writes). */
const RAW_BLOCK_BYTES = 64 * 1024;

export interface ConvertRequest {
  source: string;
  target: string;
  /** Detected from the file's first bytes when absent. */
  sourceFormat?: ImageFormat;
  /** Copy this internal snapshot's state (by name or id; the app's by id and name) instead of the current one: qcow2 sources only. */
  sourceSnapshot?: SnapshotRef;
  targetFormat: ImageFormat;
  /** Options for a qcow2 target; the size is the source's. */
  options?: Omit<CreateOptions, 'size'>;
  /** Store clusters compressed where that saves space (qcow2 target only). */
  compress?: boolean;
  /**
   * Threads compressing (with compress): 1 compresses on the calling thread; more start helper
   * threads from compress-worker.ts (for the CLI, which runs the sources directly).
   */
  compressionThreads?: number;
  /** Where the compressing helper thread's module is, for bundles that move it (the CLI's, the app's). */
  compressWorker?: URL | string;
  /**
   * Read a source (or output backing file) that another program is writing, as qemu-img -U does;
   * by default that is an IN_USE error, for the copy would be of no moment in particular.
   */
  forceShare?: boolean;
  /** An encrypted source's passphrase (LOCKED without it); an encrypted backing file's too. */
  passphrase?: Passphrase;
  /** Go on with a legacy AES passphrase under which the disk's start decrypts to noise (image.ts OpenImageOptions). */
  trustLegacyPassphrase?: boolean;
  /** Replace an existing target file (qemu-img's behaviour); by default it is an error. */
  overwrite?: boolean;
  /**
   * Flush the output to disk before it takes its name (default true). false is qemu-img's default
   * cache mode (unsafe): faster, but a power failure may leave the named output incomplete.
   */
  durable?: boolean;
  /**
   * Write the output through a helper thread (write-behind-file.ts). By default only for disks of
   * WRITE_BEHIND_MIN_BYTES or more: a smaller one is done before the thread would have started.
   */
  writeBehind?: boolean;
  /**
   * Copy what can be read and write zeros where the source's tables or data are broken, instead of
   * stopping at the first broken place (rescue-reader.ts); the result lists what was not read.
   */
  rescue?: boolean;
  /** Test seams. */
  chunkBytes?: number;
  fileSystem?: AtomicFileSystem;
}

export interface ConvertResult {
  virtualSize: number;
  /** Guest bytes stored as plain data. */
  dataBytes: number;
  /** Guest bytes stored in compressed clusters. */
  compressedBytes: number;
  /** Guest bytes that read as zeros and were not stored (or were marked zero). */
  zeroBytes: number;
  /** Guest bytes equal to the output's backing file, left to it. */
  backingBytes: number;
  /** With rescue: the guest ranges that could not be read (zeros in the output), in guest order. */
  unreadable?: UnreadableRange[];
}

interface SourceExtent {
  start: number;
  length: number;
  data: boolean;
  compressed?: boolean;
  damage?: Damage;
}

/** What each block of a chunk becomes. */
const SKIP = 0;
const DATA = 1;
/** Must read as zeros although the output's backing file has data there. */
const ZERO = 2;

/** Where converted chunks go: a raw file or a qcow2 stream. Chunks arrive in guest order. */
interface OutputSink {
  readonly blockBytes: number;
  /** Blocks stored compressed so far. */
  readonly compressedBlocks: number;
  /** A buffer to read the next chunk into, which the output can write from without a copy; null when it has none. */
  lendBuffer(length: number): Uint8Array | null;
  /** The first `blocks` blocks of `chunk`, the first of them guest block `firstBlock`; `kinds[i]` is SKIP, DATA or ZERO. */
  writeChunk(firstBlock: number, chunk: Uint8Array, kinds: Uint8Array, blocks: number): void;
  finish(): void;
  /** Releases helpers (compression threads); called whether or not the copy succeeded. */
  close(): void;
}

export function convertImage(request: ConvertRequest, job: JobContext = silentJob): ConvertResult {
  return runSteps(convertSteps(request, job));
}

/**
 * convertImage on a thread whose event loop must keep turning (the CLI's, so that Ctrl-C reaches
 * its handler, which cancels through `job`): the copy lets the loop run every few milliseconds.
 */
export function convertImageYielding(request: ConvertRequest, job: JobContext = silentJob): Promise<ConvertResult> {
  return runStepsYielding(convertSteps(request, job));
}

/** The convert, yielding after each chunk (steps.ts). */
export function* convertSteps(request: ConvertRequest, job: JobContext): Steps<ConvertResult> {
  validateRequest(request);
  const refuseInUse = request.forceShare !== true;
  const source = openSource(request, refuseInUse, job);
  let backing: GuestReader | null = null;
  try {
    refuseReplacingInput(source, request.source, request.target);
    // QEMU counts a raw file's size in whole sectors.
    const virtualSize = source instanceof RawImage ? alignUp(source.virtualSize, 512) : source.virtualSize;
    let resolved: ResolvedCreateOptions | null = null;
    if (request.targetFormat === 'qcow2') {
      const options = { ...request.options };
      if (options.backingFile !== undefined) {
        const backingPath = resolveBackingPath(request.target, options.backingFile);
        if (sameFile(backingPath, request.target)) throw new Qcow2Error('INVALID_ARGUMENT', 'The output cannot be its own backing file');
        options.backingFormat ??= detectBackingFormat(backingPath);
        backing = openBackingReader(backingPath, options.backingFormat, refuseInUse);
      }
      resolved = resolveCreateOptions({ ...options, size: virtualSize }, null);
    }
    const outputOptions = resolved;
    return yield* writeFileAtomicallySteps(
      request.target,
      function* (file) {
        const chunkBytes = chunkSize(request, outputOptions === null ? RAW_BLOCK_BYTES : 2 ** outputOptions.clusterBits);
        const sink = outputOptions === null ? rawSink(file, virtualSize) : qcow2Sink(file, outputOptions, request, chunkBytes);
        try {
          return yield* copyGuestData(source, request.rescue === true ? new RescueReader(source) : null, backing, sink, virtualSize, chunkBytes, job);
        } finally {
          sink.close();
        }
      },
      // The helper thread writes each chunk while the next is read and inspected.
      {
        overwrite: request.overwrite ?? false,
        fileSystem: request.fileSystem,
        durable: request.durable ?? true,
        // The copy opens to no one a file it reads was closed to (a private base's data above all).
        sourceMode: strictestModeOf(chainPaths(source, request.source)),
        writeBehind: request.writeBehind ?? virtualSize >= WRITE_BEHIND_MIN_BYTES,
        // A cancel that came while the last chunks were flushed still stops the convert: nothing has taken the name yet.
        beforeCommit: () => job.throwIfCancelled(),
      },
    );
  } finally {
    backing?.close();
    source.close();
  }
}

/** The files whose data the source reads: the disk and its backing chain, top first. */
function chainPaths(source: GuestReader, sourcePath: string): string[] {
  const paths = [sourcePath];
  let image: Qcow2Image | null = source instanceof Qcow2StateView ? source.image : source instanceof Qcow2Image ? source : null;
  while (image !== null && image.backingPath !== null && paths.length < 1000) {
    paths.push(image.backingPath);
    const below: GuestReader | null = image.backing;
    image = below instanceof Qcow2StateView ? below.image : below instanceof Qcow2Image ? below : null;
  }
  return paths;
}

/** The permission bits every one of `paths` allows (the strictest), undefined where none names a file. */
function strictestModeOf(paths: string[]): number | undefined {
  let mode: number | undefined;
  for (const each of paths) {
    try {
      mode = (mode ?? 0o7777) & fs.statSync(each).mode & 0o7777;
    } catch {
      // Not a file to take a mode from (a name only the image knows): the others decide.
    }
  }
  return mode;
}

/** The output would replace the disk read, or a file it reads through (qemu-img's locks refuse it): nothing is written. */
function refuseReplacingInput(source: GuestReader, sourcePath: string, target: string): void {
  if (!fs.existsSync(target)) return;
  const image = source instanceof Qcow2StateView ? source.image : source;
  if (sameFile(sourcePath, target)) throw new Qcow2Error('INVALID_ARGUMENT', `The output ${target} is the disk being converted; write the copy to another file`);
  if (image instanceof Qcow2Image && readsThrough(image, target)) {
    throw new Qcow2Error('INVALID_ARGUMENT', `The output ${target} is a file ${sourcePath} reads through (its backing file, or one below it); replacing it would lose the data the disk reads there, so write the copy to another file`);
  }
}

function validateRequest(request: ConvertRequest): void {
  if (request.targetFormat === 'raw') {
    if (request.compress === true) throw new Qcow2Error('INVALID_ARGUMENT', 'Compression needs a qcow2 output (-O qcow2)');
    if (request.options !== undefined && Object.values(request.options).some((value) => value !== undefined)) {
      throw new Qcow2Error('INVALID_ARGUMENT', 'Creation options (-o) apply to a qcow2 output only');
    }
  }
  if (request.options?.preallocation !== undefined && request.options.preallocation !== 'off') {
    throw new Qcow2Error('INVALID_ARGUMENT', 'convert writes sparse images; preallocation is not supported here');
  }
}

/** The source as guest bytes: the current state, or a snapshot's when one is asked for. */
function openSource(request: ConvertRequest, refuseInUse: boolean, job: JobContext): GuestReader {
  // A rescue reads past what only a repair would fix: a snapshot table or refcount table the file no longer holds.
  const reader = openGuestReader(request.source, request.sourceFormat, { refuseInUse, passphrase: request.passphrase, trustLegacyPassphrase: request.trustLegacyPassphrase, job, forCheck: request.rescue === true });
  if (request.sourceSnapshot === undefined) return reader;
  if (!(reader instanceof Qcow2Image)) {
    reader.close();
    throw new Qcow2Error('INVALID_ARGUMENT', `${request.source} is not a qcow2 image: it has no snapshots`);
  }
  try {
    const snapshot = findSnapshot(reader, request.sourceSnapshot);
    const state = reader.snapshotReader(snapshot);
    return new Qcow2StateView(reader, state.l1, state.virtualSize, () => reader.close());
  } catch (error) {
    reader.close();
    throw error;
  }
}

function detectBackingFormat(backingPath: string): ImageFormat {
  try {
    return detectFormat(backingPath);
  } catch (error) {
    if (error instanceof Qcow2Error && error.code === 'NOT_FOUND') throw new Qcow2Error('BACKING_NOT_FOUND', `The backing file ${backingPath} does not exist`, { cause: error });
    throw error;
  }
}

function openBackingReader(backingPath: string, format: ImageFormat, refuseInUse: boolean): GuestReader {
  try {
    return openGuestReader(backingPath, format, { refuseInUse });
  } catch (error) {
    if (error instanceof Qcow2Error && error.code === 'NOT_FOUND') throw new Qcow2Error('BACKING_NOT_FOUND', `The backing file ${backingPath} does not exist`, { cause: error });
    throw error;
  }
}

function chunkSize(request: ConvertRequest, blockBytes: number): number {
  return alignUp(Math.max(request.chunkBytes ?? DEFAULT_CHUNK_BYTES, blockBytes), blockBytes);
}

function* copyGuestData(source: GuestReader, rescue: RescueReader | null, backing: GuestReader | null, sink: OutputSink, virtualSize: number, chunkBytes: number, job: JobContext): Steps<ConvertResult> {
  const blockBytes = sink.blockBytes;
  let ownBuffer: Uint8Array | null = null;
  const backingBuffer = backing === null ? null : alignedBytes(chunkBytes);
  const mayHoldData = new Uint8Array(chunkBytes / blockBytes);
  const kinds = new Uint8Array(chunkBytes / blockBytes);
  const result: ConvertResult = { virtualSize, dataBytes: 0, compressedBytes: 0, zeroBytes: 0, backingBytes: 0 };
  job.progress('converting', 0, virtualSize, 'bytes');
  for (let chunkStart = 0; chunkStart < virtualSize; chunkStart += chunkBytes) {
    job.throwIfCancelled();
    const chunkLength = Math.min(chunkBytes, virtualSize - chunkStart);
    const blocks = Math.ceil(chunkLength / blockBytes);
    const buffer = sink.lendBuffer(chunkBytes) ?? (ownBuffer ??= alignedBytes(chunkBytes));
    const chunk = buffer.subarray(0, blocks * blockBytes);
    if (!readSourceChunk(source, rescue, chunk, chunkStart, blockBytes, mayHoldData, backing !== null)) {
      // Nothing stored in this stretch of the source: nothing to write, up to the next stored data (a sparse disk goes fast).
      const next = nextStoredChunk(source, rescue, chunkStart + chunkLength, virtualSize, chunkBytes);
      result.zeroBytes += next - chunkStart;
      job.progress('converting', next, virtualSize, 'bytes');
      chunkStart = next - chunkBytes;
      yield;
      continue;
    }
    const backingChunk = backingBuffer?.subarray(0, chunk.length) ?? null;
    if (backing !== null && backingChunk !== null) backing.readInto(backingChunk, chunkStart);
    for (let index = 0; index < blocks; index++) {
      const bytes = chunk.subarray(index * blockBytes, (index + 1) * blockBytes);
      const guestBytes = Math.min(blockBytes, chunkLength - index * blockBytes);
      const zero = mayHoldData[index] === 0 || isAllZero(bytes);
      if (backingChunk !== null && bytesEqual(bytes, backingChunk.subarray(index * blockBytes, (index + 1) * blockBytes))) {
        kinds[index] = SKIP;
        result.backingBytes += guestBytes;
      } else if (zero) {
        kinds[index] = backingChunk !== null ? ZERO : SKIP;
        result.zeroBytes += guestBytes;
      } else {
        kinds[index] = DATA;
        result.dataBytes += guestBytes;
      }
    }
    sink.writeChunk(chunkStart / blockBytes, chunk, kinds, blocks);
    job.progress('converting', chunkStart + chunkLength, virtualSize, 'bytes');
    yield;
  }
  sink.finish();
  result.compressedBytes = Math.min(result.dataBytes, sink.compressedBlocks * blockBytes);
  result.dataBytes -= result.compressedBytes;
  if (rescue !== null) result.unreadable = rescue.unreadable;
  return result;
}

/**
 * The first chunk at or after `from` (chunk-aligned) where the source may store data, or the
 * disk's end. A raw file says where its next data is; a qcow2 image's map is asked in windows that
 * double while they find nothing, so a sparse disk of any claimed size is crossed in time
 * proportional to its L1 table, not to its size.
 */
function nextStoredChunk(source: GuestReader, rescue: RescueReader | null, from: number, virtualSize: number, chunkBytes: number): number {
  if (source instanceof RawImage && rescue === null) return Math.max(from, Math.floor(source.nextData(from, virtualSize) / chunkBytes) * chunkBytes);
  if (rescue === null && !(source instanceof Qcow2Image) && !(source instanceof Qcow2StateView)) return Math.min(from, virtualSize);
  let position = from;
  let window = chunkBytes * 256;
  while (position < virtualSize) {
    const end = Math.min(virtualSize, position + window);
    const stored = storedExtents(source, rescue, position, end)?.find((entry) => entry.data || entry.damage !== undefined);
    if (stored !== undefined) return Math.max(from, Math.floor(stored.start / chunkBytes) * chunkBytes);
    position = end;
    window *= 2;
  }
  return virtualSize;
}

/** Calls `visit` for each run of consecutive blocks of one kind among the first `blocks`. */
function forEachRun(kinds: Uint8Array, blocks: number, visit: (kind: number, first: number, end: number) => void): void {
  let first = 0;
  for (let index = 1; index <= blocks; index++) {
    if (index < blocks && kinds[index] === kinds[first]) continue;
    visit(kinds[first] ?? SKIP, first, index);
    first = index;
  }
}

/**
 * Fills `chunk` with guest bytes from `start`. The source is asked first which ranges are zero,
 * unallocated or holes, so those are not read; `mayHoldData[i]` is 0 for blocks known to be zero.
 * Unless `allBytes` (the bytes are compared with a backing file's), a block known to be zero is
 * not filled either: nothing reads it. Returns false when the whole chunk is known to be zero and
 * nothing will read it (not `allBytes`): then it is left as it was, unfilled.
 */
function readSourceChunk(source: GuestReader, rescue: RescueReader | null, chunk: Uint8Array, start: number, blockBytes: number, mayHoldData: Uint8Array, allBytes: boolean): boolean {
  const entries = storedExtents(source, rescue, start, start + chunk.length);
  if (entries === null) {
    source.readInto(chunk, start);
    mayHoldData.fill(1);
    return true;
  }
  if (!entries.some((entry) => entry.data || entry.damage !== undefined)) {
    if (!allBytes) return false;
    // Compared with the backing file block by block: the buffer still holds the previous chunk.
    chunk.fill(0);
    mayHoldData.fill(0);
    return true;
  }
  mayHoldData.fill(0);
  let covered = 0;
  for (const entry of entries) {
    const from = entry.start - start;
    const target = chunk.subarray(from, from + entry.length);
    if (entry.damage !== undefined) rescue?.record(entry.start, entry.length, entry.damage);
    if (!entry.data) {
      if (allBytes) {
        target.fill(0);
      } else {
        // Only the edges can share a block with data, which is then written whole.
        const headEnd = Math.min(from + entry.length, Math.ceil(from / blockBytes) * blockBytes);
        const tailStart = Math.max(headEnd, Math.floor((from + entry.length) / blockBytes) * blockBytes);
        chunk.fill(0, from, headEnd);
        chunk.fill(0, tailStart, from + entry.length);
      }
    } else {
      if (rescue !== null) rescue.read(target, entry.start, entry.compressed === true);
      else source.readInto(target, entry.start);
      mayHoldData.fill(1, Math.floor(from / blockBytes), Math.ceil((from + entry.length) / blockBytes));
    }
    covered = from + entry.length;
  }
  // Past the end of the disk (the last cluster's tail).
  chunk.fill(0, covered);
  return true;
}

/**
 * What of [start, end) the source stores (`data`) and what reads as zeros without a read; null
 * when it cannot tell. A rescue also says what cannot be read (`damage`: zeros, not read).
 */
function storedExtents(source: GuestReader, rescue: RescueReader | null, start: number, end: number): SourceExtent[] | null {
  if (rescue !== null) {
    return rescue.runs(start, end).map((run) => ({ start: run.start, length: run.length, data: run.kind === 'data' || run.kind === 'compressed', compressed: run.kind === 'compressed', damage: run.damage }));
  }
  // Data clusters over the file's holes (preallocation=metadata) read as zeros without a read.
  if (source instanceof Qcow2Image || source instanceof Qcow2StateView) return mapRange(source, start, end).map((entry) => ({ start: entry.start, length: entry.length, data: entry.data && !entry.zero, compressed: entry.compressed }));
  if (source instanceof RawImage) return source.extents(start, end);
  return null;
}

// ---------------------------------------------------------------- raw output

function rawSink(file: BlockFile, virtualSize: number): OutputSink {
  return {
    blockBytes: RAW_BLOCK_BYTES,
    compressedBlocks: 0,
    lendBuffer: (length) => file.lendBuffer?.(length) ?? null,
    writeChunk(firstBlock, chunk, kinds, blocks) {
      forEachRun(kinds, blocks, (kind, first, end) => {
        if (kind === ZERO) throw new Qcow2Error('INTERNAL', 'a raw output has no backing file');
        if (kind !== DATA) return;
        const offset = (firstBlock + first) * RAW_BLOCK_BYTES;
        file.write(chunk.subarray(first * RAW_BLOCK_BYTES, Math.min(end * RAW_BLOCK_BYTES, virtualSize - offset + first * RAW_BLOCK_BYTES)), offset);
      });
    },
    finish() {
      file.truncate(virtualSize);
    },
    close() {},
  };
}

// ---------------------------------------------------------------- qcow2 output

function qcow2Sink(file: BlockFile, options: ResolvedCreateOptions, request: ConvertRequest, chunkBytes: number): Qcow2Sink {
  const clusterBytes = 2 ** options.clusterBits;
  let compressor: ClusterCompressor | null = null;
  if (request.compress === true) {
    const threads = Math.max(1, Math.floor(request.compressionThreads ?? 1));
    compressor = threads > 1 ? threadedCompressor(options.compressionType, clusterBytes, chunkBytes / clusterBytes, threads - 1, request.compressWorker) : inlineCompressor(options.compressionType, clusterBytes);
  }
  return new Qcow2Sink(file, new Qcow2StreamWriter(file, options), options, compressor);
}

class Qcow2Sink implements OutputSink {
  readonly blockBytes: number;
  compressedBlocks = 0;
  private readonly file: BlockFile;
  private readonly writer: Qcow2StreamWriter;
  private readonly options: ResolvedCreateOptions;
  private readonly compressor: ClusterCompressor | null;
  private zeroCluster: Uint8Array | null = null;

  constructor(file: BlockFile, writer: Qcow2StreamWriter, options: ResolvedCreateOptions, compressor: ClusterCompressor | null) {
    this.file = file;
    this.writer = writer;
    this.options = options;
    this.compressor = compressor;
    this.blockBytes = writer.clusterBytes;
  }

  lendBuffer(length: number): Uint8Array | null {
    // Compressed output is written from the compressor's buffers: nothing to gain.
    return this.compressor === null ? (this.file.lendBuffer?.(length) ?? null) : null;
  }

  writeChunk(firstBlock: number, chunk: Uint8Array, kinds: Uint8Array, blocks: number): void {
    const compressed = this.compressChunk(chunk, kinds, blocks);
    let batchIndex = 0;
    forEachRun(kinds, blocks, (kind, first, end) => {
      if (kind === ZERO) {
        for (let block = first; block < end; block++) this.zero(firstBlock + block);
      } else if (kind === DATA && compressed === null) {
        this.writer.writeData(firstBlock + first, chunk.subarray(first * this.blockBytes, end * this.blockBytes));
      } else if (kind === DATA) {
        for (let block = first; block < end; block++) {
          const bytes = compressed?.[batchIndex++] ?? null;
          if (bytes === null) this.writer.writeData(firstBlock + block, chunk.subarray(block * this.blockBytes, (block + 1) * this.blockBytes));
          else {
            this.writer.writeCompressed(firstBlock + block, bytes);
            this.compressedBlocks++;
          }
        }
      }
    });
  }

  /** Compresses the chunk's data clusters as one batch (in parallel where the compressor can). */
  private compressChunk(chunk: Uint8Array, kinds: Uint8Array, blocks: number): (Uint8Array | null)[] | null {
    if (this.compressor === null) return null;
    let count = 0;
    for (let block = 0; block < blocks; block++) if (kinds[block] === DATA) count++;
    if (count === 0) return [];
    // Side by side, where the compressor's threads read them.
    const batch = this.compressor.inputBuffer(count);
    let placed = 0;
    for (let block = 0; block < blocks; block++) {
      if (kinds[block] !== DATA) continue;
      batch.set(chunk.subarray(block * this.blockBytes, (block + 1) * this.blockBytes), placed * this.blockBytes);
      placed++;
    }
    return this.compressor.compress(batch, count);
  }

  private zero(block: number): void {
    if (this.options.version === 3) {
      this.writer.writeZero(block);
      return;
    }
    // compat 0.10 has no zero flag: the zeros must be stored.
    this.zeroCluster ??= new Uint8Array(this.blockBytes);
    this.writer.writeData(block, this.zeroCluster);
  }

  finish(): void {
    this.writer.finish();
  }

  close(): void {
    this.compressor?.close();
  }
}
