/**
 * Where an NTFS image's structures are (found by their signatures, not by the reader under test)
 * and seeded-random ways to damage them: boot sector fields, MFT record and attribute headers,
 * data runs, index blocks, and torn update sequences.
 */
import type { SeededRandom } from '../../../helpers/seeded-random.ts';

export interface Patch {
  offset: number;
  bytes: number[];
}

export interface NtfsStructures {
  /** Byte offsets of every "FILE" record and "INDX" block, and their sizes. */
  records: number[];
  recordSize: number;
  indexBlocks: number[];
  indexBlockSize: number;
}

const STRIDE = 512;

function u16(bytes: Uint8Array, offset: number): number {
  return (bytes[offset] ?? 0) | ((bytes[offset + 1] ?? 0) << 8);
}

function u32(bytes: Uint8Array, offset: number): number {
  return (u16(bytes, offset) | (u16(bytes, offset + 2) << 16)) >>> 0;
}

function hasMagic(bytes: Uint8Array, offset: number, magic: string): boolean {
  for (let index = 0; index < 4; index++) if (bytes[offset + index] !== magic.charCodeAt(index)) return false;
  return true;
}

/** Finds the in-use records and the index blocks of a volume formatted with 1 KiB records and 4 KiB index blocks. */
export function findNtfsStructures(bytes: Uint8Array, recordSize = 1024, indexBlockSize = 4096): NtfsStructures {
  const records: number[] = [];
  const indexBlocks: number[] = [];
  for (let offset = 0; offset + recordSize <= bytes.length; offset += recordSize) {
    if (hasMagic(bytes, offset, 'FILE') && (u16(bytes, offset + 0x16) & 1) === 1) records.push(offset);
    if (offset % indexBlockSize === 0 && hasMagic(bytes, offset, 'INDX')) indexBlocks.push(offset);
  }
  return { records, recordSize, indexBlocks, indexBlockSize };
}

/** The attribute headers of a record in the image (offsets from the record's start), by walking their lengths. */
function attributeOffsets(bytes: Uint8Array, record: number, recordSize: number): number[] {
  const offsets: number[] = [];
  let position = u16(bytes, record + 0x14);
  while (position + 8 <= recordSize && offsets.length < 64) {
    if (u32(bytes, record + position) === 0xffffffff) break;
    const length = u32(bytes, record + position + 4);
    if (length < 0x18 || length % 8 !== 0) break;
    offsets.push(position);
    position += length;
  }
  return offsets;
}

function littleEndian(value: bigint, size: number): number[] {
  const result: number[] = [];
  for (let index = 0; index < size; index++) result.push(Number((value >> BigInt(index * 8)) & 0xffn));
  return result;
}

function interestingValue(random: SeededRandom, size: number, structureSize: number): bigint {
  const max = (1n << BigInt(size * 8)) - 1n;
  const choices = [0n, 1n, max, max >> 1n, max - 7n, 8n, 0x18n, 0x40n, 0x48n, BigInt(structureSize), BigInt(structureSize - 8), BigInt(random.int(0, 256)), BigInt(random.int(0, 65536))];
  return (choices[random.int(0, choices.length)] ?? 0n) & max;
}

/** A field write that avoids the last two bytes of each 512-byte stride (so the fixups still pass), unless `tear`. */
function fieldPatch(random: SeededRandom, start: number, position: number, structureSize: number, tear = false): Patch {
  const size = [1, 2, 4, 8][random.int(0, 4)] ?? 1;
  let at = Math.min(position, structureSize - size);
  if (!tear) {
    const strideOffset = at % STRIDE;
    if (strideOffset + size > STRIDE - 2) at -= strideOffset + size - (STRIDE - 2);
  }
  return { offset: start + Math.max(0, at), bytes: littleEndian(interestingValue(random, size, structureSize), size) };
}

const BOOT_FIELDS = [0x0b, 0x0d, 0x28, 0x30, 0x38, 0x40, 0x44];

/** One damage: 1–3 patches on one structure the walk reaches. */
export function randomNtfsDamage(bytes: Uint8Array, structures: NtfsStructures, random: SeededRandom): Patch[] {
  const kind = random.int(0, 10);
  if (kind === 0) {
    const field = BOOT_FIELDS[random.int(0, BOOT_FIELDS.length)] ?? 0x30;
    return [fieldPatch(random, 0, field, 512)];
  }
  if (kind <= 2 && structures.indexBlocks.length > 0) {
    const block = structures.indexBlocks[random.int(0, structures.indexBlocks.length)] ?? 0;
    const position = random.int(0, 3) === 0 ? random.int(0, 0x60) : 0x18 + random.int(0, structures.indexBlockSize - 0x18);
    return [fieldPatch(random, block, position, structures.indexBlockSize, random.int(0, 20) === 0)];
  }
  const record = structures.records[random.int(0, structures.records.length)] ?? 0;
  const patches: Patch[] = [];
  for (let count = 1 + random.int(0, 3); count > 0; count--) {
    const attributes = attributeOffsets(bytes, record, structures.recordSize);
    const attribute = attributes[random.int(0, Math.max(1, attributes.length))];
    const choice = random.int(0, 4);
    if (choice === 0 || attribute === undefined) patches.push(fieldPatch(random, record, random.int(0, 0x38), structures.recordSize, random.int(0, 20) === 0));
    else if (choice === 1) patches.push(fieldPatch(random, record, attribute + random.int(0, 0x48), structures.recordSize));
    else {
      // The data runs of a non-resident attribute (or the value of a resident one).
      const valueOffset = u16(bytes, record + attribute + (bytes[record + attribute + 8] === 1 ? 0x20 : 0x14));
      patches.push(fieldPatch(random, record, attribute + valueOffset + random.int(0, 24), structures.recordSize));
    }
  }
  return patches;
}

export function applyPatches(bytes: Uint8Array, patches: Patch[]): Uint8Array {
  const copy = new Uint8Array(bytes);
  for (const patch of patches) copy.set(patch.bytes, patch.offset);
  return copy;
}
