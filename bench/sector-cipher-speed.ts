/**
 * Throughput of the engine's sector ciphers (src/shared/qcow2/crypto/sector-cipher.ts) in MB/s,
 * beside node:crypto with one cipher object per 512-byte sector (the simple way) and OpenSSL's
 * XTS over a whole buffer with a single tweak (the ceiling: what AES itself costs here).
 * Not a test and not a qemu-img comparison: `node bench/sector-cipher-speed.ts [MiB]`.
 * Rounds alternate between the contenders; medians and bests are printed (see TOOLCHAIN.md on noise).
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { createSectorCipher, type SectorCipher } from '../src/shared/qcow2/crypto/sector-cipher.ts';
import { machine } from './lib.ts';

const MIB = Number(process.argv[2] ?? 64);
const ROUNDS = 9;
const data = new Uint8Array(MIB << 20);
const key = randomBytes(64);
const firstSector = 0x40000 / 512;

function perSectorObjects(algorithm: string, keyBytes: Buffer): (bytes: Uint8Array) => void {
  return (bytes) => {
    const iv = Buffer.alloc(16);
    for (let sector = 0; sector * 512 < bytes.length; sector++) {
      iv.writeBigUInt64LE(BigInt(firstSector + sector));
      const cipher = createCipheriv(algorithm, keyBytes, iv);
      cipher.setAutoPadding(false);
      bytes.set(cipher.update(bytes.subarray(sector * 512, sector * 512 + 512)), sector * 512);
    }
  };
}

/** OpenSSL's XTS in 1 MiB data units (it refuses units over 16 MiB): the AES cost without per-sector tweaks. */
function wholeMiBs(bytes: Uint8Array): void {
  for (let start = 0; start < bytes.length; start += 1 << 20) {
    const part = bytes.subarray(start, start + (1 << 20));
    part.set(createCipheriv('aes-256-xts', key, Buffer.alloc(16)).update(part));
  }
}

const ours = (cipher: SectorCipher, decrypt: boolean) => (bytes: Uint8Array): void =>
  decrypt ? cipher.decryptSectors(bytes, firstSector) : cipher.encryptSectors(bytes, firstSector);

const xtsSimd = createSectorCipher({ mode: 'xts', ivGenerator: 'plain64', ivHash: null }, key);
const xtsWords = createSectorCipher({ mode: 'xts', ivGenerator: 'plain64', ivHash: null }, key, { simd: false });
const cbc = createSectorCipher({ mode: 'cbc', ivGenerator: 'plain64', ivHash: null }, key.subarray(0, 32));
const cbcEssiv = createSectorCipher({ mode: 'cbc', ivGenerator: 'essiv', ivHash: 'sha256' }, key.subarray(0, 32));

const contenders: [string, (bytes: Uint8Array) => void, number][] = [
  ['aes-256-xts-plain64 decrypt (SIMD)', ours(xtsSimd, true), 1],
  ['aes-256-xts-plain64 encrypt (SIMD)', ours(xtsSimd, false), 1],
  ['aes-256-xts-plain64 decrypt (JavaScript)', ours(xtsWords, true), 1],
  ['aes-256-xts-plain64 encrypt (JavaScript)', ours(xtsWords, false), 1],
  ['aes-256-cbc-plain64 decrypt', ours(cbc, true), 1],
  ['aes-256-cbc-plain64 encrypt', ours(cbc, false), 1],
  ['aes-256-cbc-essiv:sha256 decrypt', ours(cbcEssiv, true), 1],
  ['aes-256-cbc-essiv:sha256 encrypt', ours(cbcEssiv, false), 1],
  // The simple way is slow: time it on a quarter of the buffer.
  ['per-sector node:crypto xts (one object per sector)', perSectorObjects('aes-256-xts', key), 4],
  ['per-sector node:crypto cbc (one object per sector)', perSectorObjects('aes-256-cbc', key.subarray(0, 32)), 4],
  ['OpenSSL xts, 1 MiB per call, one tweak (ceiling)', wholeMiBs, 1],
];

const speeds = new Map<string, number[]>(contenders.map(([name]) => [name, []]));
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, run, divisor] of contenders) {
    const bytes = data.subarray(0, data.length / divisor);
    const started = performance.now();
    run(bytes);
    const seconds = (performance.now() - started) / 1000;
    speeds.get(name)?.push(bytes.length / 1e6 / seconds);
  }
}

process.stdout.write(`machine: ${machine()}\nbuffer: ${MIB} MiB, ${ROUNDS} alternating rounds, MB/s (10^6 bytes)\n\n`);
const width = Math.max(...contenders.map(([name]) => name.length));
process.stdout.write(`${'cipher'.padEnd(width)}  median     best\n`);
for (const [name, values] of speeds) {
  const sorted = [...values].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
  const best = sorted[sorted.length - 1] ?? 0;
  process.stdout.write(`${name.padEnd(width)}  ${median.toFixed(0).padStart(6)}  ${best.toFixed(0).padStart(6)}\n`);
}
