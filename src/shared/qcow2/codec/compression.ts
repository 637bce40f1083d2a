/**
 * Compressed clusters: raw deflate with a 4 KiB window (as QEMU writes them, windowBits -12) or
 * zstd (compression type 1). Decompression accepts what QEMU accepts: the output filling the
 * cluster is success, and bytes after the end of the stream (sector padding) are ignored.
 */
import type * as Zlib from 'node:zlib';
import { Qcow2Error } from '../errors.ts';

export type CompressionType = 0 | 1;

export interface ZstdZlib {
  zstdCompressSync?: (buffer: Uint8Array, options?: object) => Buffer;
  zstdDecompressSync?: (buffer: Uint8Array, options?: object) => Buffer;
}

/** node:zlib, loaded at the first compressed cluster: most runs never meet one, and loading it costs a short command a few milliseconds. */
let loadedZlib: typeof Zlib | null = null;
export function zlibModule(): typeof Zlib {
  loadedZlib ??= process.getBuiltinModule('node:zlib');
  return loadedZlib;
}

/** One cluster's guest bytes from its compressed form, into `into` (reused by callers that copy them out at once) or a new buffer. */
export function decompressCluster(type: CompressionType, input: Uint8Array, clusterBytes: number, into?: Uint8Array): Uint8Array {
  let output: Buffer;
  const zlib = zlibModule();
  const zstd = zlib as unknown as ZstdZlib;
  try {
    if (type === 0) {
      const inflater = reusableInflater();
      if (inflater !== null) return inflater.decompress(input, clusterBytes, into);
      output = zlib.inflateRawSync(input, { finishFlush: zlib.constants.Z_SYNC_FLUSH, maxOutputLength: clusterBytes + 1 });
    } else {
      if (!zstd.zstdDecompressSync) throw new Qcow2Error('UNSUPPORTED_FEATURE', 'This image uses zstd compression, which needs Node.js 22.15 or later');
      const frame = input.subarray(0, zstdFrameLength(input));
      const decompressor = reusableZstdDecompressor();
      if (decompressor !== null) return decompressor.decompress(frame, clusterBytes, into);
      output = zstd.zstdDecompressSync(frame, { maxOutputLength: clusterBytes + 1 });
    }
  } catch (error) {
    if (error instanceof Qcow2Error) throw error;
    throw new Qcow2Error('CORRUPT', 'A compressed cluster could not be decompressed', { cause: error });
  }
  // Deflate may run on past the cluster (QEMU stops reading there); a zstd frame must give exactly the cluster.
  if (output.length < clusterBytes || (type === 1 && output.length > clusterBytes)) throw new Qcow2Error('CORRUPT', `A compressed cluster decompressed to ${output.length > clusterBytes ? `more than ${clusterBytes} bytes` : `${output.length} bytes instead of ${clusterBytes}`}`);
  if (into === undefined) return output.subarray(0, clusterBytes);
  into.set(output.subarray(0, clusterBytes));
  return into.subarray(0, clusterBytes);
}

/**
 * How many of a compressed cluster's stored bytes (its descriptor's sector-rounded range) its data
 * takes: QEMU packs compressed clusters byte by byte, so the rest of the last sector is padding or
 * the next cluster's data. A copy keeps exactly this many, to stay as tightly packed.
 */
export function compressedStreamLength(type: CompressionType, input: Uint8Array, clusterBytes: number): number {
  try {
    if (type === 1) return zstdFrameLength(input);
    const inflater = reusableInflater();
    if (inflater !== null) return inflater.streamLength(input, clusterBytes);
    const zlib = zlibModule();
    const { buffer, engine } = zlib.inflateRawSync(input, { finishFlush: zlib.constants.Z_SYNC_FLUSH, info: true }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
    if (buffer.length !== clusterBytes) throw new Qcow2Error('CORRUPT', `A compressed cluster decompressed to ${buffer.length} bytes instead of ${clusterBytes}`);
    return engine.bytesWritten;
  } catch (error) {
    if (error instanceof Qcow2Error) throw error;
    throw new Qcow2Error('CORRUPT', 'A compressed cluster could not be decompressed', { cause: error });
  }
}

/** Compresses one cluster; returns null when compression would not save space (QEMU then writes it plain). */
export function compressCluster(type: CompressionType, input: Uint8Array): Uint8Array | null {
  const output = new Uint8Array(input.length);
  const length = compressClusterInto(type, input, output);
  return length === 0 ? null : output.slice(0, length);
}

/** Refuses, before any work, a compression type this Node cannot write (zstd before Node 22.15). */
export function assertCanCompress(type: CompressionType): void {
  if (type !== 0 && !(zlibModule() as unknown as ZstdZlib).zstdCompressSync) throw new Qcow2Error('UNSUPPORTED_FEATURE', 'zstd compression needs Node.js 22.15 or later');
}

/**
 * Compresses one cluster into `output` (at least as long as the input); returns the compressed
 * length, or 0 when compression would not save space. Raw deflate and zstd each go through one
 * native stream per thread, reset between clusters: a new stream per cluster (deflateRawSync,
 * zstdCompressSync) leaves tens of MiB of native garbage behind a long run, for the collector to find late.
 */
export function compressClusterInto(type: CompressionType, input: Uint8Array, output: Uint8Array): number {
  const zlib = zlibModule();
  if (type === 0) {
    const deflater = reusableDeflater();
    if (deflater !== null) return deflater.compress(input, output);
    return fitOrZero(zlib.deflateRawSync(input, { windowBits: 12, memLevel: 9, level: zlib.constants.Z_DEFAULT_COMPRESSION }), input, output);
  }
  const zstd = zlib as unknown as ZstdZlib;
  if (!zstd.zstdCompressSync) throw new Qcow2Error('UNSUPPORTED_FEATURE', 'zstd compression needs Node.js 22.15 or later');
  const compressor = reusableZstdCompressor();
  if (compressor !== null) return compressor.compress(input, output);
  return fitOrZero(zstd.zstdCompressSync(input), input, output);
}

function fitOrZero(compressed: Uint8Array, input: Uint8Array, output: Uint8Array): number {
  if (compressed.length >= input.length) return 0;
  output.set(compressed);
  return compressed.length;
}

interface Inflater {
  decompress(input: Uint8Array, clusterBytes: number, into?: Uint8Array): Uint8Array;
  /** The bytes of `input` its deflate stream takes (what follows is sector padding or the next cluster's data). */
  streamLength(input: Uint8Array, clusterBytes: number): number;
}

let inflater: Inflater | null | undefined;

/**
 * One raw-inflate stream per thread, reset between clusters (as the deflater above). A corrupt
 * stream is reported through the handle's error callback, which this takes over; the stream is
 * reset after it all the same.
 */
function reusableInflater(): Inflater | null {
  if (!compressionSettings.reuseZlibStream) return null;
  if (inflater !== undefined) return inflater;
  inflater = null;
  try {
    const zlib = zlibModule();
    const handle = nativeHandle(new zlib.InflateRaw({ windowBits: 15 }));
    if (handle === null) return null;
    const { native, state, takeFailure } = handle;
    const flush = zlib.constants.Z_SYNC_FLUSH;
    let scratch = new Uint8Array(0);
    inflater = {
      decompress(input, clusterBytes, into) {
        const output = into?.subarray(0, clusterBytes) ?? new Uint8Array(clusterBytes);
        native.writeSync(flush, input, 0, input.length, output, 0, clusterBytes);
        const outputLeft = state[0] ?? 0;
        native.reset();
        throwIfFailed(takeFailure());
        if (outputLeft > 0) throw new Qcow2Error('CORRUPT', `A compressed cluster decompressed to ${clusterBytes - outputLeft} bytes instead of ${clusterBytes}`);
        return output;
      },
      streamLength(input, clusterBytes) {
        // Room past the cluster, so that inflate reads on to the stream's end and stops there.
        if (scratch.length < clusterBytes + 1024) scratch = new Uint8Array(clusterBytes + 1024);
        native.writeSync(zlib.constants.Z_FINISH, input, 0, input.length, scratch, 0, scratch.length);
        const outputLeft = state[0] ?? 0;
        const inputLeft = state[1] ?? 0;
        native.reset();
        throwIfFailed(takeFailure());
        if (scratch.length - outputLeft !== clusterBytes) throw new Qcow2Error('CORRUPT', `A compressed cluster decompressed to ${scratch.length - outputLeft} bytes instead of ${clusterBytes}`);
        return input.length - inputLeft;
      },
    };
  } catch {
    inflater = null;
  }
  return inflater;
}

let zstdDecompressor: Pick<Inflater, 'decompress'> | null | undefined;

/**
 * One zstd decompression stream per thread, reset between clusters: zstdDecompressSync makes a
 * context per cluster, and the comparison that ends a zstd compress decompresses every cluster, so
 * the run peaked at 260–440 MiB. As there (and in QEMU), a frame must give exactly the cluster:
 * less, more, or an error the stream reports is CORRUPT. It decompresses into one byte more than a
 * cluster, which is how "more" shows.
 */
function reusableZstdDecompressor(): Pick<Inflater, 'decompress'> | null {
  if (!compressionSettings.reuseZlibStream) return null;
  if (zstdDecompressor !== undefined) return zstdDecompressor;
  zstdDecompressor = null;
  try {
    const zlib = zlibModule() as typeof Zlib & { ZstdDecompress?: new () => unknown; constants: { ZSTD_e_end?: number } };
    const end = zlib.constants.ZSTD_e_end;
    if (zlib.ZstdDecompress === undefined || end === undefined) return null;
    const handle = nativeHandle(new zlib.ZstdDecompress());
    if (handle === null) return null;
    const { native, state, takeFailure } = handle;
    let scratch = new Uint8Array(0);
    zstdDecompressor = {
      decompress(frame, clusterBytes, into) {
        if (scratch.length !== clusterBytes + 1) scratch = new Uint8Array(clusterBytes + 1);
        native.writeSync(end, frame, 0, frame.length, scratch, 0, scratch.length);
        const outputLeft = state[0] ?? 0;
        native.reset();
        throwIfFailed(takeFailure());
        if (outputLeft === 0) throw new Qcow2Error('CORRUPT', `A compressed cluster decompressed to more than ${clusterBytes} bytes`);
        if (outputLeft > 1) throw new Qcow2Error('CORRUPT', `A compressed cluster decompressed to ${scratch.length - outputLeft} bytes instead of ${clusterBytes}`);
        const output = into?.subarray(0, clusterBytes) ?? new Uint8Array(clusterBytes);
        output.set(scratch.subarray(0, clusterBytes));
        return output;
      },
    };
  } catch {
    zstdDecompressor = null;
  }
  return zstdDecompressor;
}

/** node:zlib's native stream, driven directly; its shape is checked so that another Node falls back to deflateRawSync. */
interface ZlibHandle {
  writeSync(flush: number, input: Uint8Array, inputOffset: number, inputLength: number, output: Uint8Array, outputOffset: number, outputLength: number): void;
  reset(): void;
  /** Where the stream reports a corrupt input; taken over by the decompressors. */
  onerror: (message: string) => void;
}

/**
 * A node:zlib stream's native handle and its write state (after each writeSync: the output room
 * left, then the input left), or null where the stream is not shaped so (another Node). The
 * handle's error callback is taken over: `takeFailure` gives what it reported since the last call
 * (a corrupt input), and clears it.
 */
function nativeHandle(stream: unknown): { native: ZlibHandle; state: Uint32Array; takeFailure: () => string | null } | null {
  const { _handle: handle, _writeState: state } = stream as { _handle?: Partial<ZlibHandle>; _writeState?: unknown };
  if (handle === undefined || typeof handle.writeSync !== 'function' || typeof handle.reset !== 'function' || !(state instanceof Uint32Array)) return null;
  const native = handle as ZlibHandle;
  let failure: string | null = null;
  native.onerror = (message) => {
    failure = message;
  };
  const takeFailure = (): string | null => {
    const reported = failure;
    failure = null;
    return reported;
  };
  return { native, state, takeFailure };
}

function throwIfFailed(failure: string | null): void {
  if (failure !== null) throw new Qcow2Error('CORRUPT', `A compressed cluster could not be decompressed (${failure})`);
}

interface Deflater {
  compress(input: Uint8Array, output: Uint8Array): number;
}

let deflater: Deflater | null | undefined;
let zstdCompressor: Deflater | null | undefined;

/** Which reused native streams this Node gives: tests check that the reused path is the one taken, not a silent fallback. */
export function reusableStreams(): { deflate: boolean; inflate: boolean; zstdCompress: boolean; zstdDecompress: boolean } {
  return { deflate: reusableDeflater() !== null, inflate: reusableInflater() !== null, zstdCompress: reusableZstdCompressor() !== null, zstdDecompress: reusableZstdDecompressor() !== null };
}

/** Tests turn the reusable stream off to check the fallback gives the same images. */
export const compressionSettings = { reuseZlibStream: true };

function reusableDeflater(): Deflater | null {
  if (!compressionSettings.reuseZlibStream) return null;
  if (deflater !== undefined) return deflater;
  const zlib = zlibModule();
  deflater = reusableCompressor(() => new zlib.DeflateRaw({ windowBits: 12, memLevel: 9, level: zlib.constants.Z_DEFAULT_COMPRESSION }), zlib.constants.Z_FINISH);
  return deflater;
}

/**
 * The same for zstd: zstdCompressSync makes a compression context per cluster (over a MiB of
 * native memory each), and a compress with zstd peaked at 260–440 MiB before the collector freed
 * them. Node's ZstdCompress stream, driven as the deflater is, ends a frame per cluster with
 * ZSTD_e_end and is reset after it; its frames are the ones zstdCompressSync writes.
 */
function reusableZstdCompressor(): Deflater | null {
  if (!compressionSettings.reuseZlibStream) return null;
  if (zstdCompressor !== undefined) return zstdCompressor;
  const zlib = zlibModule() as typeof Zlib & { ZstdCompress?: new () => unknown; constants: { ZSTD_e_end?: number } };
  const ZstdCompress = zlib.ZstdCompress;
  const end = zlib.constants.ZSTD_e_end;
  zstdCompressor = ZstdCompress === undefined || end === undefined ? null : reusableCompressor(() => new ZstdCompress(), end);
  return zstdCompressor;
}

/** A compressor over one native stream of node:zlib, or null where the stream's shape is not the one this drives (another Node: the caller falls back to the one-shot call). */
function reusableCompressor(makeStream: () => unknown, finish: number): Deflater | null {
  try {
    const handle = nativeHandle(makeStream());
    if (handle === null) return null;
    const { native, state, takeFailure } = handle;
    return {
      compress(input, output) {
        // Room for one byte less than the input: what does not fit is not worth storing compressed.
        const room = input.length - 1;
        native.writeSync(finish, input, 0, input.length, output, 0, room);
        const outputLeft = state[0] ?? 0;
        const inputLeft = state[1] ?? 0;
        native.reset();
        const failure = takeFailure();
        if (failure !== null) throw new Qcow2Error('INTERNAL', `Compressing a cluster failed (${failure})`);
        return inputLeft === 0 && outputLeft > 0 ? room - outputLeft : 0;
      },
    };
  } catch {
    return null;
  }
}

/** The length of the zstd frame at the start of `input` (RFC 8878 §3.1.1), so sector padding after it is not fed to the decoder. */
export function zstdFrameLength(input: Uint8Array): number {
  const corrupt = (): never => {
    throw new Qcow2Error('CORRUPT', 'A zstd-compressed cluster is malformed');
  };
  if (input.length < 6) corrupt();
  const data = new DataView(input.buffer, input.byteOffset, input.byteLength);
  if (data.getUint32(0, true) !== 0xfd2fb528) corrupt();
  const descriptor = input[4] ?? 0;
  const contentSizeFlag = descriptor >>> 6;
  const singleSegment = (descriptor >>> 5) & 1;
  const hasChecksum = (descriptor >>> 2) & 1;
  const dictionaryBytes = [0, 1, 2, 4][descriptor & 3] ?? 0;
  const contentSizeBytes = [singleSegment ? 1 : 0, 2, 4, 8][contentSizeFlag] ?? 0;
  let position = 5 + (singleSegment ? 0 : 1) + dictionaryBytes + contentSizeBytes;
  for (;;) {
    if (position + 3 > input.length) corrupt();
    const blockHeader = (input[position] ?? 0) | ((input[position + 1] ?? 0) << 8) | ((input[position + 2] ?? 0) << 16);
    const last = blockHeader & 1;
    const type = (blockHeader >>> 1) & 3;
    const size = blockHeader >>> 3;
    if (type === 3) corrupt();
    position += 3 + (type === 1 ? 1 : size);
    if (position > input.length) corrupt();
    if (last) break;
  }
  position += hasChecksum ? 4 : 0;
  if (position > input.length) corrupt();
  return position;
}
