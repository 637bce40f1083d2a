/** CRC-32C (Castagnoli), as ext4's metadata checksums and btrfs's default checksum use it. */

let crc32cTable: Uint32Array | null = null;

/**
 * CRC32C as the kernel's crc32c(seed, data) computes it (no final inversion): ext4 seeds with ~0,
 * jbd2 with its own seed; btrfs stores ~crc32c(~0, data).
 */
export function crc32c(bytes: Uint8Array, seed = 0xffffffff): number {
  if (crc32cTable === null) {
    crc32cTable = new Uint32Array(256);
    for (let index = 0; index < 256; index++) {
      let value = index;
      for (let bit = 0; bit < 8; bit++) value = value & 1 ? (value >>> 1) ^ 0x82f63b78 : value >>> 1;
      crc32cTable[index] = value >>> 0;
    }
  }
  let crc = seed >>> 0;
  for (const byte of bytes) crc = (crc32cTable[(crc ^ byte) & 0xff] as number) ^ (crc >>> 8);
  return crc >>> 0;
}
