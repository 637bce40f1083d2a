/**
 * Encrypted qcow2 images made and read by qemu-img/qemu-io 7.2, for the crypto tests: LUKS images
 * of a chosen cipher (created with encrypt.iter-time=10, and retried: qemu-img's PBKDF2 timing
 * fails now and then on these VMs with "Unable to get accurate CPU usage"), qemu-io and
 * qemu-img runs that pass the passphrase as a secret object, and the image's LUKS area read back.
 */
import * as fs from 'node:fs';
import { parseCryptoHeaderExtension, type CryptoHeaderExtension } from '../../src/shared/qcow2/format/crypto-header-extension.ts';
import { EXT_CRYPTO_HEADER, clusterSize, findExtension, parseHeader, type Header } from '../../src/shared/qcow2/format/header.ts';
import { LUKS_PHDR_BYTES, parseLuksHeader, type LuksHeader } from '../../src/shared/qcow2/format/luks-header.ts';
import type { LuksAreaReader } from '../../src/shared/qcow2/crypto/luks-area.ts';
import type { DiskCipher } from '../../src/shared/qcow2/crypto/disk-cipher.ts';
import { Qcow2Image } from '../../src/shared/qcow2/image/image.ts';
import { qemuImgTimingPbkdf2, runTool, tempDir } from './qemu.ts';

export interface LuksImageOptions {
  cipherAlg?: 'aes-128' | 'aes-192' | 'aes-256';
  cipherMode?: 'xts' | 'cbc';
  ivgenAlg?: 'plain' | 'plain64' | 'essiv';
  hashAlg?: 'sha1' | 'sha256' | 'sha512';
  size?: string;
  clusterSize?: number;
  /** Keep the guest data in this external data file (`data_file=`). */
  dataFile?: string;
}

export function secret(id: string, passphrase: string): string[] {
  return ['--object', `secret,id=${id},data=${passphrase}`];
}

export function imageOpts(image: string, secretId: string): string {
  return `driver=qcow2,file.filename=${image},encrypt.key-secret=${secretId}`;
}

export async function createLuksImage(image: string, passphrase: string, options: LuksImageOptions = {}): Promise<void> {
  const settings = ['encrypt.format=luks', 'encrypt.key-secret=sec0', 'encrypt.iter-time=10'];
  if (options.cipherAlg) settings.push(`encrypt.cipher-alg=${options.cipherAlg}`);
  if (options.cipherMode) settings.push(`encrypt.cipher-mode=${options.cipherMode}`);
  if (options.ivgenAlg) settings.push(`encrypt.ivgen-alg=${options.ivgenAlg}`);
  if (options.ivgenAlg === 'essiv') settings.push('encrypt.ivgen-hash-alg=sha256');
  if (options.hashAlg) settings.push(`encrypt.hash-alg=${options.hashAlg}`);
  if (options.clusterSize) settings.push(`cluster_size=${options.clusterSize}`);
  if (options.dataFile) settings.push(`data_file=${options.dataFile}`);
  for (let attempt = 1; ; attempt++) {
    await qemuImgTimingPbkdf2(['create', '-q', '-f', 'qcow2', ...secret('sec0', passphrase), '-o', settings.join(','), image, options.size ?? '4M']);
    // qemu-img times PBKDF2 with the thread's CPU clock, which these VMs keep coarsely: make sure iter-time=10 gave small counts.
    const { header } = readLuksArea(image);
    const most = Math.max(header.masterKeyDigestIterations, ...header.keySlots.map((slot) => slot.iterations));
    if (most <= SANE_TEST_ITERATIONS) return;
    if (attempt >= 4) throw new Error(`qemu-img create gave ${most} PBKDF2 iterations for iter-time=10, ${attempt} times`);
    fs.rmSync(image);
  }
}

/** iter-time=10 gives tens of thousands of iterations here; millions would make each unlock take seconds. */
const SANE_TEST_ITERATIONS = 1_000_000;

export async function createLegacyAesImage(image: string, passphrase: string, size = '4M', extraOptions = ''): Promise<void> {
  await runTool('qemu-img', ['create', '-q', '-f', 'qcow2', ...secret('sec0', passphrase), '-o', `encrypt.format=aes,encrypt.key-secret=sec0${extraOptions === '' ? '' : `,${extraOptions}`}`, image, size]);
}

export interface PatternWrite {
  pattern: number;
  offset: number;
  length: number;
}

/** Whole clusters, part of a cluster, sectors inside a cluster, and a run of clusters past 1 MiB (64 KiB clusters). */
export const PATTERN_WRITES: PatternWrite[] = [
  { pattern: 0x11, offset: 0, length: 65536 },
  { pattern: 0x22, offset: 65536, length: 4096 },
  { pattern: 0x33, offset: 1049088, length: 1536 },
  { pattern: 0x44, offset: 3 << 20, length: 192 << 10 },
];

export function patternCommands(writes: PatternWrite[]): string[] {
  return writes.map(({ pattern, offset, length }) => `write -P 0x${pattern.toString(16)} ${offset} ${length}`);
}

/** The guest disk after `writes` on a fresh image: zeros and the patterns. */
export function expectedGuest(virtualSize: number, writes: PatternWrite[]): Uint8Array {
  const guest = new Uint8Array(virtualSize);
  for (const { pattern, offset, length } of writes) guest.fill(pattern, offset, offset + length);
  return guest;
}

/** qemu-io commands on an encrypted image; rejects when qemu-io reports a failure (it exits 0 after some). */
export async function qemuIoEncrypted(image: string, passphrase: string, commands: string[]): Promise<string> {
  const args = [...secret('sec0', passphrase), '--image-opts', imageOpts(image, 'sec0')];
  for (const command of commands) args.push('-c', command);
  const result = await runTool('qemu-io', args, { okCodes: [0, 1] });
  const output = result.stdout + result.stderr;
  if (result.code !== 0 || /error|failed|invalid|can't/i.test(output)) throw new Error(`qemu-io ${args.join(' ')} failed:\n${output}`);
  return result.stdout;
}

/** The guest bytes as qemu-img decrypts them (`convert -O raw` with the passphrase), of the current state or a snapshot's (`-l snapshot.name=`). */
export async function rawOfEncrypted(image: string, passphrase: string, snapshot?: string): Promise<Uint8Array> {
  const folder = tempDir();
  try {
    const output = folder.file('raw');
    const state = snapshot === undefined ? [] : ['-l', `snapshot.name=${snapshot}`];
    await runTool('qemu-img', ['convert', ...secret('sec0', passphrase), '--image-opts', ...state, imageOpts(image, 'sec0'), '-O', 'raw', output]);
    return new Uint8Array(fs.readFileSync(output));
  } finally {
    folder.cleanup();
  }
}

/** `qemu-img snapshot -c|-a|-d NAME` or `-l` on an encrypted image (qemu-img needs the key for all of them); resolves with its output. */
export async function snapshotEncrypted(image: string, passphrase: string, action: '-c' | '-a' | '-d' | '-l', name?: string): Promise<string> {
  const result = await runTool('qemu-img', ['snapshot', ...secret('sec0', passphrase), '--image-opts', action, ...(name === undefined ? [] : [name]), imageOpts(image, 'sec0')]);
  return result.stdout;
}

/** The rows of a `qemu-img snapshot -l` listing (id, tag, sizes, dates, clock), for comparing two listings. */
export function snapshotRows(listing: string): string[] {
  return listing.split('\n').filter((line) => /^\d+\s/.test(line)).map((line) => line.trim().split(/\s+/).join(' '));
}

/** `qemu-img check` with the passphrase: exit code and output. */
export async function checkEncrypted(image: string, passphrase: string): Promise<{ code: number; output: string }> {
  const result = await runTool('qemu-img', ['check', ...secret('sec0', passphrase), '--image-opts', imageOpts(image, 'sec0')], { okCodes: [0, 1, 2, 3] });
  return { code: result.code, output: result.stdout + result.stderr };
}

export interface LuksAreaOnDisk {
  qcow2: Header;
  area: CryptoHeaderExtension;
  headerBytes: Uint8Array;
  header: LuksHeader;
  readArea: LuksAreaReader;
}

/** The image's qcow2 header and LUKS area, parsed from the file with the engine's format parsers. */
export function readLuksArea(image: string): LuksAreaOnDisk {
  const file = new Uint8Array(fs.readFileSync(image));
  const clusterBytes = 2 ** new DataView(file.buffer, file.byteOffset).getUint32(20);
  const qcow2 = parseHeader(file.subarray(0, clusterBytes), file.length);
  const extension = findExtension(qcow2, EXT_CRYPTO_HEADER);
  if (extension === undefined) throw new Error(`${image} has no LUKS header extension`);
  const area = parseCryptoHeaderExtension(extension.data, clusterSize(qcow2));
  const headerBytes = file.slice(area.offset, area.offset + LUKS_PHDR_BYTES);
  const readArea: LuksAreaReader = (offsetInArea, length) => file.slice(area.offset + offsetInArea, area.offset + offsetInArea + length);
  return { qcow2, area, headerBytes, header: parseLuksHeader(headerBytes, area.length), readArea };
}

export interface DataCluster {
  guestOffset: number;
  hostOffset: number;
}

/** Every guest cluster with data in the active L1, found through the engine's L1/L2 lookup (which reads no data). */
export function dataClusters(image: string): { clusterBytes: number; virtualSize: number; clusters: DataCluster[] } {
  const opened = Qcow2Image.open(image, { readOnly: true });
  try {
    const clusters: DataCluster[] = [];
    for (let guestOffset = 0; guestOffset < opened.virtualSize; guestOffset += opened.clusterBytes) {
      const entry = opened.lookup(opened.l1, guestOffset);
      if (entry !== null && entry.kind === 'normal') clusters.push({ guestOffset, hostOffset: entry.hostOffset });
      else if (entry !== null && entry.kind === 'compressed') throw new Error(`${image}: a compressed cluster at guest ${guestOffset}`);
    }
    return { clusterBytes: opened.clusterBytes, virtualSize: opened.virtualSize, clusters };
  } finally {
    opened.close();
  }
}

/** The guest disk as `cipher` decrypts the image's clusters (unallocated clusters read as zeros). */
export function decryptGuest(image: string, cipher: DiskCipher): Uint8Array {
  const { clusterBytes, virtualSize, clusters } = dataClusters(image);
  const file = fs.openSync(image, 'r');
  try {
    const guest = new Uint8Array(virtualSize);
    for (const { guestOffset, hostOffset } of clusters) {
      const cluster = guest.subarray(guestOffset, guestOffset + clusterBytes);
      fs.readSync(file, cluster, 0, cluster.length, hostOffset);
      cipher.decrypt(cluster, hostOffset, guestOffset);
    }
    return guest;
  } finally {
    fs.closeSync(file);
  }
}
