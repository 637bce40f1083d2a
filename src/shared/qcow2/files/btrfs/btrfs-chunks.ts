/**
 * btrfs addresses everything by logical address; chunks map logical ranges onto devices (one
 * stripe per copy). This reader reads one device: a chunk whose whole copy lies on it (single, DUP,
 * RAID1 and its 3- and 4-copy kinds) reads from it; a striped chunk (RAID0/10/5/6) or one on other
 * devices only is refused when met.
 */
import { corrupt, uint16, uint64, unsupported } from './btrfs-bytes.ts';

const CHUNK_HEADER_BYTES = 48;
const STRIPE_BYTES = 32;
/** Block group profile bits that spread one copy over several devices. */
const STRIPED = 8n | 64n | 128n | 256n; // RAID0, RAID10, RAID5, RAID6

export interface Chunk {
  logical: number;
  length: number;
  /** Block group type and profile bits. */
  type: bigint;
  stripes: { deviceId: bigint; offset: number }[];
  /** The chunk item's bytes (header and stripes). */
  itemBytes: number;
}

/** A chunk item (its key's offset is the chunk's logical start). */
export function parseChunk(bytes: Uint8Array, logicalKey: bigint): Chunk {
  if (bytes.length < CHUNK_HEADER_BYTES) throw corrupt('a chunk item ends inside its header');
  const stripeCount = uint16(bytes, 44);
  const itemBytes = CHUNK_HEADER_BYTES + stripeCount * STRIPE_BYTES;
  if (stripeCount === 0 || itemBytes > bytes.length) throw corrupt(`a chunk item with ${stripeCount} stripes`);
  if (logicalKey >= 2n ** 53n) throw corrupt(`a chunk at logical address ${logicalKey}`);
  const length = uint64(bytes, 0, 'a chunk length');
  if (length === 0) throw corrupt('a chunk of 0 bytes');
  const dataView = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stripes = Array.from({ length: stripeCount }, (_, index) => {
    const at = CHUNK_HEADER_BYTES + index * STRIPE_BYTES;
    return { deviceId: dataView.getBigUint64(at, true), offset: uint64(bytes, at + 8, 'a stripe offset') };
  });
  return { logical: Number(logicalKey), length, type: dataView.getBigUint64(24, true), stripes, itemBytes };
}

export class ChunkMap {
  /** By logical start, not overlapping. */
  private chunks: Chunk[] = [];
  private readonly deviceId: bigint;
  private readonly deviceBytes: number;

  constructor(deviceId: bigint, deviceBytes: number, chunks: readonly Chunk[]) {
    this.deviceId = deviceId;
    this.deviceBytes = deviceBytes;
    for (const chunk of chunks) this.add(chunk);
  }

  add(chunk: Chunk): void {
    // The first chunk at or after this one's start: the chunk tree gives them in order, so mostly the end.
    let at = this.chunks.length;
    if (at > 0 && (this.chunks[at - 1] as Chunk).logical >= chunk.logical) {
      let low = 0;
      while (low < at) {
        const middle = (low + at) >>> 1;
        if ((this.chunks[middle] as Chunk).logical < chunk.logical) low = middle + 1;
        else at = middle;
      }
    }
    const before = this.chunks[at - 1];
    const after = this.chunks[at];
    if (after?.logical === chunk.logical && after.length === chunk.length) return; // the same chunk again (the system array's, in the chunk tree)
    if ((before !== undefined && before.logical + before.length > chunk.logical) || (after !== undefined && chunk.logical + chunk.length > after.logical)) {
      throw corrupt(`the chunk at logical ${chunk.logical} overlaps another`);
    }
    this.chunks.splice(at, 0, chunk);
  }

  /** The device offset of `length` bytes at `logical` (they must lie in one chunk). */
  physical(logical: number, length: number): number {
    let low = 0;
    let high = this.chunks.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      const chunk = this.chunks[middle] as Chunk;
      if (chunk.logical + chunk.length <= logical) low = middle + 1;
      else high = middle;
    }
    const chunk = this.chunks[low];
    if (chunk === undefined || chunk.logical > logical || logical + length > chunk.logical + chunk.length) throw corrupt(`logical address ${logical} (${length} bytes) lies in no chunk`);
    if ((chunk.type & STRIPED) !== 0n) throw unsupported(`a chunk striped over several devices (RAID0/10/5/6), at logical ${chunk.logical}`);
    const stripe = chunk.stripes.find((candidate) => candidate.deviceId === this.deviceId);
    if (stripe === undefined) throw unsupported(`a chunk kept only on another device of the filesystem, at logical ${chunk.logical}`);
    const offset = stripe.offset + (logical - chunk.logical);
    if (offset + length > this.deviceBytes) throw corrupt(`logical address ${logical} maps past the device's end`);
    return offset;
  }
}
