/**
 * Guest bytes of one state, as the partition parser and the filesystem readers read them: small
 * reads (superblocks, inodes, directory blocks) go through a bounded cache of guest chunks so that
 * a filesystem's metadata does not decode the same clusters again and again; large reads (file
 * content being copied out) go straight to the engine's reader.
 */
import { Qcow2Error } from '../errors.ts';
import type { GuestReader } from '../image/guest-reader.ts';
import type { VolumeBytes } from './filesystem.ts';
import { GenerationalCache } from './generational-cache.ts';
import { guestRangesOf } from './volume-ranges.ts';

/**
 * Small: metadata lies scattered (a folder's block here, a piece of an inode table there), and a
 * larger chunk reads and copies bytes nobody asked for (64 KiB chunks read 56 MiB of guest per
 * state to compare two states of a 50,000-file ext4).
 */
const CHUNK_BYTES = 16 * 1024;
/** 4 MiB of cached guest bytes per state (the FAT and NTFS readers keep caches of their own; an ext inode table keeps its pieces). */
const CACHED_CHUNKS = 256;
/** A read this large or larger bypasses the cache (content, not metadata). */
const UNCACHED_READ_BYTES = 256 * 1024;

/** What the cache reads from: an image's guest reader, or the decrypted data of an encrypted volume (guest-luks.ts). */
export type GuestBytesSource = Pick<GuestReader, 'virtualSize' | 'readInto'>;

export class CachedGuestBytes {
  readonly length: number;
  private readonly reader: GuestBytesSource;
  /**
   * Chunk index → bytes; the buffers of a dropped generation are kept for the next chunks read.
   * (Reordering a Map on every hit, as an exact least-recently-used order would, made V8 copy its
   * tables again and again.)
   */
  private readonly chunks = new GenerationalCache<number, Uint8Array>(CACHED_CHUNKS / 2, (dropped) => {
    for (const bytes of dropped) if (this.spare.length < CACHED_CHUNKS / 2) this.spare.push(bytes);
    // The chunk read last may be in the old generation now; it is looked up again rather than trusted.
    this.lastIndex = -1;
    this.lastChunk = null;
  });
  /** Buffers of dropped chunks, taken for the next chunks read: no garbage for the collector. */
  private readonly spare: Uint8Array[] = [];
  /** The chunk read last (already the most recent in `chunks`): metadata reads come in runs within one. */
  private lastIndex = -1;
  private lastChunk: Uint8Array | null = null;

  /** Which bytes these are, while they stay the same (state-identity.ts), or null: what replaying a volume's log gave is kept under it (replay-memo.ts). */
  readonly identity: string | null;

  constructor(reader: GuestBytesSource, identity: string | null = null) {
    this.reader = reader;
    this.length = reader.virtualSize;
    this.identity = identity;
  }

  /** Fills buffer with guest bytes from guestOffset; refuses a range past the guest's end. */
  read(buffer: Uint8Array, guestOffset: number): void {
    if (!Number.isSafeInteger(guestOffset) || guestOffset < 0 || guestOffset + buffer.length > this.length) {
      throw new Qcow2Error('FILESYSTEM_CORRUPT', `A read of ${buffer.length} bytes at ${guestOffset} lies past the end of the ${this.length}-byte disk`);
    }
    if (buffer.length >= UNCACHED_READ_BYTES) {
      this.reader.readInto(buffer, guestOffset);
      return;
    }
    let done = 0;
    while (done < buffer.length) {
      const position = guestOffset + done;
      const chunkIndex = Math.floor(position / CHUNK_BYTES);
      const chunk = this.chunk(chunkIndex);
      const within = position - chunkIndex * CHUNK_BYTES;
      const count = Math.min(buffer.length - done, chunk.length - within);
      buffer.set(chunk.subarray(within, within + count), done);
      done += count;
    }
  }

  private chunk(chunkIndex: number): Uint8Array {
    if (chunkIndex === this.lastIndex && this.lastChunk !== null) return this.lastChunk;
    const bytes = this.generationalChunk(chunkIndex);
    this.lastIndex = chunkIndex;
    this.lastChunk = bytes;
    return bytes;
  }

  private generationalChunk(chunkIndex: number): Uint8Array {
    const cached = this.chunks.get(chunkIndex);
    if (cached !== undefined) return cached;
    const start = chunkIndex * CHUNK_BYTES;
    const length = Math.min(CHUNK_BYTES, this.length - start);
    const reused = this.spare.pop();
    const bytes = reused !== undefined && reused.buffer.byteLength >= length ? new Uint8Array(reused.buffer, 0, length) : new Uint8Array(length);
    try {
      this.reader.readInto(bytes, start);
    } catch (error) {
      this.spare.push(bytes);
      throw error;
    }
    this.chunks.set(chunkIndex, bytes);
    return bytes;
  }
}

/** The bytes of one volume: `length` bytes of the guest from `offset`, reads outside refused. */
export function volumeBytes(guest: CachedGuestBytes, offset: number, length: number): VolumeBytes {
  return boundedVolume(length, (buffer, volumeOffset) => guest.read(buffer, offset + volumeOffset));
}

/** VolumeBytes of `length` bytes read by `read`: a read past the end is FILESYSTEM_CORRUPT, and what `read` throws a rejection. */
function boundedVolume(length: number, read: (buffer: Uint8Array, volumeOffset: number) => void): VolumeBytes {
  return {
    length,
    read(buffer: Uint8Array, volumeOffset: number): Promise<void> {
      if (!Number.isSafeInteger(volumeOffset) || volumeOffset < 0 || volumeOffset + buffer.length > length) {
        return Promise.reject(new Qcow2Error('FILESYSTEM_CORRUPT', `A read of ${buffer.length} bytes at ${volumeOffset} lies past the end of the ${length}-byte volume`));
      }
      try {
        read(buffer, volumeOffset);
        return Promise.resolve();
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
    },
  };
}

/** VolumeBytes of a volume in pieces (an LVM logical volume): its guest ranges, in order, read as one. */
export function segmentedVolumeBytes(guest: CachedGuestBytes, segments: readonly { offset: number; length: number }[]): VolumeBytes {
  const length = segments.reduce((total, segment) => total + segment.length, 0);
  const volume = { offset: segments[0]?.offset ?? 0, segments: [...segments] };
  return boundedVolume(length, (buffer, volumeOffset) => {
    let done = 0;
    for (const range of guestRangesOf(volume, volumeOffset, buffer.length)) {
      guest.read(buffer.subarray(done, done + range.length), range.offset);
      done += range.length;
    }
  });
}
