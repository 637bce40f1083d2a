/**
 * Compressed clusters: raw deflate with a 4 KiB window (as QEMU writes them, windowBits -12) or
 * zstd (compression type 1). Decompression accepts what QEMU accepts: the output filling the
 * cluster is success, and bytes after the end of the stream (sector padding) are ignored.
 */
import type * as Zlib from 'node:zlib';
import { Qcow2Error } from '../errors.ts';

export type CompressionType = 0 | 1;

interface ZstdZlib {
  zstdCompressSync?: (buffer: Uint8Array, options?: object) => Buffer;
  zstdDecompressSync?: (buffer: Uint8Array, options?: object) => Buffer;
}

/** node:zlib, loaded at the first compressed cluster: most runs never meet one, and loading it costs a short command a few milliseconds. */
let loadedZlib: typeof Zlib | null = null;
function zlibModule(): typeof Zlib {
  loadedZlib ??= process.getBuiltinModule('node:zlib');
  return loadedZlib;
}

export function decompressCluster(type: CompressionType, input: Uint8Array, clusterBytes: number): Uint8Array {
  let output: Buffer;
  const zlib = zlibModule();
  const zstd = zlib as unknown as ZstdZlib;
  try {
    if (type === 0) {
      output = zlib.inflateRawSync(input, { finishFlush: zlib.constants.Z_SYNC_FLUSH, maxOutputLength: clusterBytes + 1 });
    } else {
      if (!zstd.zstdDecompressSync) throw new Qcow2Error('UNSUPPORTED_FEATURE', 'This image uses zstd compression, which needs Node.js 22.15 or later');
      output = zstd.zstdDecompressSync(input.subarray(0, zstdFrameLength(input)), { maxOutputLength: clusterBytes + 1 });
    }
  } catch (error) {
    if (error instanceof Qcow2Error) throw error;
    throw new Qcow2Error('CORRUPT', 'A compressed cluster could not be decompressed', { cause: error });
  }
  if (output.length < clusterBytes) throw new Qcow2Error('CORRUPT', `A compressed cluster decompressed to ${output.length} bytes instead of ${clusterBytes}`);
  return output.subarray(0, clusterBytes);
}

/** Compresses one cluster; returns null when compression would not save space (QEMU then writes it plain). */
export function compressCluster(type: CompressionType, input: Uint8Array, level?: number): Uint8Array | null {
  let output: Buffer;
  const zlib = zlibModule();
  const zstd = zlib as unknown as ZstdZlib;
  if (type === 0) {
    output = zlib.deflateRawSync(input, { windowBits: 12, memLevel: 9, level: level ?? zlib.constants.Z_DEFAULT_COMPRESSION });
  } else {
    if (!zstd.zstdCompressSync) throw new Qcow2Error('UNSUPPORTED_FEATURE', 'zstd compression needs Node.js 22.15 or later');
    output = zstd.zstdCompressSync(input);
  }
  return output.length >= input.length ? null : output;
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
