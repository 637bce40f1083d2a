/** CRC-32C (Castagnoli), as ext4's and XFS's metadata checksums and btrfs's default checksum use it. */

/** Eight tables of 256 (slicing by 8: eight bytes a step, several times faster than one). */
let tables: Uint32Array | null = null;

function makeTables(): Uint32Array {
  const made = new Uint32Array(8 * 256);
  for (let index = 0; index < 256; index++) {
    let value = index;
    for (let bit = 0; bit < 8; bit++) value = value & 1 ? (value >>> 1) ^ 0x82f63b78 : value >>> 1;
    made[index] = value >>> 0;
  }
  for (let index = 0; index < 256; index++) {
    for (let slice = 1; slice < 8; slice++) {
      const previous = made[(slice - 1) * 256 + index] as number;
      made[slice * 256 + index] = ((previous >>> 8) ^ (made[previous & 0xff] as number)) >>> 0;
    }
  }
  return made;
}

/**
 * CRC32C as the kernel's crc32c(seed, data) computes it (no final inversion): ext4 seeds with ~0,
 * jbd2 with its own seed; btrfs stores ~crc32c(~0, data).
 */
export function crc32c(bytes: Uint8Array, seed = 0xffffffff, start = 0, end = bytes.length): number {
  const table = (tables ??= makeTables());
  let crc = seed >>> 0;
  const length = Math.min(end, bytes.length);
  let at = start;
  for (; at + 8 <= length; at += 8) {
    const low = (crc ^ ((bytes[at] as number) | ((bytes[at + 1] as number) << 8) | ((bytes[at + 2] as number) << 16) | ((bytes[at + 3] as number) << 24))) >>> 0;
    crc =
      (table[7 * 256 + (low & 0xff)] as number) ^
      (table[6 * 256 + ((low >>> 8) & 0xff)] as number) ^
      (table[5 * 256 + ((low >>> 16) & 0xff)] as number) ^
      (table[4 * 256 + (low >>> 24)] as number) ^
      (table[3 * 256 + (bytes[at + 4] as number)] as number) ^
      (table[2 * 256 + (bytes[at + 5] as number)] as number) ^
      (table[256 + (bytes[at + 6] as number)] as number) ^
      (table[bytes[at + 7] as number] as number);
  }
  for (; at < length; at++) crc = (table[(crc ^ (bytes[at] as number)) & 0xff] as number) ^ (crc >>> 8);
  return crc >>> 0;
}
