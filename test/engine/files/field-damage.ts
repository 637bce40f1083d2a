/** Field damage for the filesystem readers' hostile tests: values that reach the checks, written in either byte order. */
import type { SeededRandom } from '../../helpers/seeded-random.ts';
import type { Patch } from './ntfs/ntfs-mutations.ts';

/** A 1-, 2-, 4- or 8-byte write at `position` of a structure of `structureSize` bytes at `start`: 0, 1, all ones, sizes near the structure's own, or random. */
export function fieldPatch(random: SeededRandom, start: number, position: number, structureSize: number, littleEndian: boolean): Patch {
  const size = [1, 2, 4, 8][random.int(0, 4)] ?? 1;
  const at = Math.max(0, Math.min(position, structureSize - size));
  return { offset: start + at, bytes: encoded(interestingValue(random, size, structureSize), size, littleEndian) };
}

function encoded(value: bigint, size: number, littleEndian: boolean): number[] {
  const bytes = Array.from({ length: size }, (_, index) => Number((value >> BigInt(index * 8)) & 0xffn));
  return littleEndian ? bytes : bytes.reverse();
}

function interestingValue(random: SeededRandom, size: number, structureSize: number): bigint {
  const max = (1n << BigInt(size * 8)) - 1n;
  const choices = [0n, 1n, 2n, 3n, max, max >> 1n, max - 7n, 8n, 0x40n, 0xffffn, BigInt(structureSize), BigInt(structureSize - 8), BigInt(random.int(0, 256)), BigInt(random.int(0, 65536))];
  return (choices[random.int(0, choices.length)] ?? 0n) & max;
}
