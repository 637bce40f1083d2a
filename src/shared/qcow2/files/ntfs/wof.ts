/**
 * Files Windows keeps compressed with System Compression (the Windows Overlay Filter's file
 * provider: `compact /c /exe:xpress4k`, CompactOS): a WOF reparse point (tag 0x80000017) names the
 * algorithm, the unnamed $DATA is left sparse at the file's size, and the content lies in the named
 * stream WofCompressedData: a table of where chunks 1..n-1 begin (4-byte entries, 8-byte ones for a
 * file past 4 GiB), counted from the table's end, then the chunks. Each chunk holds the chunk
 * size's worth of the file (the last one the rest), compressed, or as it is where compressing did
 * not make it smaller. XPRESS (4, 8, 16 KiB) and LZX (32 KiB) chunks are read; WIMBoot files (whose
 * content is in a WIM file outside the volume) are not.
 */
import type { ByteRange } from '../filesystem.ts';
import type { AttributeStream } from './attribute-stream.ts';
import { corrupt } from './bytes.ts';
import { decompressLzx } from './lzx.ts';
import { decompressXpressHuffman } from './xpress-huffman.ts';

export const WOF_REPARSE_TAG = 0x80000017;
export const WOF_STREAM_NAME = 'WofCompressedData';
const WOF_PROVIDER_WIM = 1;
const WOF_PROVIDER_FILE = 2;
/** A chunk's decoder: fills `output` from `input`, or throws FILESYSTEM_CORRUPT. */
export type ChunkDecoder = (input: Uint8Array, output: Uint8Array, what: string) => void;

/** Per algorithm (FILE_PROVIDER_COMPRESSION_*): the chunk size and its decoder. */
const ALGORITHMS: Readonly<Record<number, { chunkBytes: number; decode: ChunkDecoder }>> = {
  0: { chunkBytes: 4096, decode: decompressXpressHuffman },
  1: { chunkBytes: 32768, decode: decompressLzx },
  2: { chunkBytes: 8192, decode: decompressXpressHuffman },
  3: { chunkBytes: 16384, decode: decompressXpressHuffman },
};

/** What a WOF reparse point says: the provider and, for the file provider, the algorithm. */
export interface WofInfo {
  provider: number;
  algorithm: number;
}

/** The chunk size and decoder of a System Compressed file, or why its content cannot be read here (said after its path). */
export function wofFormat(info: WofInfo | null): { chunkBytes: number; decode: ChunkDecoder } | { unreadable: string } {
  if (info === null) return { unreadable: 'is compressed by Windows, and its reparse data does not say how' };
  if (info.provider === WOF_PROVIDER_WIM) return { unreadable: 'keeps its content in a WIM file outside the volume (WIMBoot), which Cowbell cannot read' };
  if (info.provider !== WOF_PROVIDER_FILE) return { unreadable: `keeps its content with an unknown Windows Overlay provider (${info.provider})` };
  return ALGORITHMS[info.algorithm] ?? { unreadable: `is compressed by Windows with an unknown algorithm (${info.algorithm})` };
}

/** The content of a System Compressed file, read from its WofCompressedData stream. */
export class WofContent {
  readonly size: number;
  private readonly stream: AttributeStream;
  private readonly chunkBytes: number;
  private readonly decode: ChunkDecoder;
  private readonly chunkCount: number;
  private readonly entryBytes: number;
  private readonly tableBytes: number;
  private cached: { index: number; bytes: Uint8Array } | null = null;

  constructor(stream: AttributeStream, size: number, format: { chunkBytes: number; decode: ChunkDecoder }, what: string) {
    this.stream = stream;
    this.size = size;
    this.chunkBytes = format.chunkBytes;
    this.decode = format.decode;
    this.chunkCount = Math.ceil(size / format.chunkBytes);
    this.entryBytes = size > 0xffffffff ? 8 : 4;
    this.tableBytes = Math.max(0, this.chunkCount - 1) * this.entryBytes;
    if (this.tableBytes > stream.size) throw corrupt(`${what}: ${this.chunkCount} chunks need a ${this.tableBytes}-byte table, more than its ${stream.size}-byte ${WOF_STREAM_NAME} stream`);
  }

  /** Up to buffer.length bytes from offset; the count read (0 at the end). */
  async read(buffer: Uint8Array, offset: number, what: string): Promise<number> {
    const count = Math.max(0, Math.min(buffer.length, this.size - offset));
    if (count === 0) return 0;
    const first = Math.floor(offset / this.chunkBytes);
    const last = Math.floor((offset + count - 1) / this.chunkBytes);
    const bounds = await this.chunkBounds(first, last, what);
    const stored = new Uint8Array((bounds[bounds.length - 1] ?? 0) - (bounds[0] ?? 0));
    if (stored.length > 0 && (await this.stream.read(stored, bounds[0] ?? 0, `${what} ${WOF_STREAM_NAME}`)) < stored.length) {
      throw corrupt(`${what}: its ${WOF_STREAM_NAME} stream ends inside chunk data`);
    }
    let done = 0;
    for (let index = first; index <= last; index++) {
      const chunk = this.chunk(index, stored.subarray((bounds[index - first] ?? 0) - (bounds[0] ?? 0), (bounds[index - first + 1] ?? 0) - (bounds[0] ?? 0)), what);
      const within = offset + done - index * this.chunkBytes;
      const length = Math.min(count - done, chunk.length - within);
      buffer.set(chunk.subarray(within, within + length), done);
      done += length;
    }
    return count;
  }

  /** Where the compressed content lies in the volume. */
  extents(): ByteRange[] | null {
    return this.stream.extents();
  }

  /**
   * The stream offsets where chunks first..last begin, and where the last one ends; each checked
   * against its neighbours. Entries are 8 bytes for a file of 4 GiB or more (as ntfs3 reads them).
   */
  private async chunkBounds(first: number, last: number, what: string): Promise<number[]> {
    // Chunk i begins at table entry i-1 (chunk 0 right after the table); the last chunk ends at the stream's end.
    const entriesFrom = Math.max(0, first - 1);
    const entriesTo = Math.min(this.chunkCount - 1, last + 1);
    const table = new Uint8Array((entriesTo - entriesFrom) * this.entryBytes);
    if (table.length > 0 && (await this.stream.read(table, entriesFrom * this.entryBytes, `${what} ${WOF_STREAM_NAME} chunk table`)) < table.length) {
      throw corrupt(`${what}: its ${WOF_STREAM_NAME} chunk table is cut short`);
    }
    const data = new DataView(table.buffer, table.byteOffset, table.byteLength);
    const start = (index: number): number => {
      if (index === 0) return this.tableBytes;
      if (index >= this.chunkCount) return this.stream.size;
      const at = (index - 1 - entriesFrom) * this.entryBytes;
      const relative = this.entryBytes === 4 ? data.getUint32(at, true) : Number(data.getBigUint64(at, true));
      return this.tableBytes + relative;
    };
    const bounds: number[] = [];
    for (let index = first; index <= last + 1; index++) bounds.push(start(index));
    for (let index = first; index <= last; index++) {
      const from = bounds[index - first] ?? 0;
      const to = bounds[index - first + 1] ?? 0;
      // At most a whole chunk's size stored, even for a shorter last chunk (as the Linux ntfs3 driver reads them).
      if (!(Number.isSafeInteger(to) && from <= to && to <= this.stream.size) || to - from > this.chunkBytes) {
        throw corrupt(`${what}: chunk ${index} of its ${WOF_STREAM_NAME} stream lies at ${from}..${to} (stream of ${this.stream.size} bytes)`);
      }
    }
    return bounds;
  }

  private chunkLength(index: number): number {
    return Math.min(this.chunkBytes, this.size - index * this.chunkBytes);
  }

  private chunk(index: number, stored: Uint8Array, what: string): Uint8Array {
    if (this.cached?.index === index) return this.cached.bytes;
    const length = this.chunkLength(index);
    const bytes = new Uint8Array(length);
    // A chunk that did not shrink is kept as it is.
    if (stored.length === length) bytes.set(stored);
    else this.decode(stored, bytes, `${what} chunk ${index}`);
    this.cached = { index, bytes };
    return bytes;
  }
}
