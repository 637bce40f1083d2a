/**
 * Encrypted disks with snapshots for the app's flows (main and e2e tests), made by qemu-img and
 * qemu-io with the passphrase as a secret object, and the checks those flows end with, asked of
 * qemu-img and qemu-io: every state's guest bytes, whether a passphrase opens the disk.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createLuksImage, imageOpts, secret } from './encrypted-images.ts';
import { fileDigest, letterBytes, MiB, qemuSnapshotNames, snapshottedDiskSize } from './rewrite-disks.ts';

function qemuIo(image: string, passphrase: string, command: string): void {
  execFileSync('qemu-io', [...secret('sec0', passphrase), '--image-opts', imageOpts(image, 'sec0'), '-c', command], { stdio: 'ignore' });
}

function writeLetters(image: string, passphrase: string, offset: number, length: number): void {
  const source = `${image}.letters`;
  fs.writeFileSync(source, letterBytes(length));
  try {
    qemuIo(image, passphrase, `write -s ${source} ${offset} ${length}`);
  } finally {
    fs.rmSync(source, { force: true });
  }
}

function snapshot(image: string, passphrase: string, name: string): void {
  execFileSync('qemu-img', ['snapshot', '-c', name, ...secret('sec0', passphrase), '--image-opts', imageOpts(image, 'sec0')]);
}

/**
 * A LUKS disk (qemu-img's default cipher, iter-time 10) laid out as makeSnapshottedDisk's: letters,
 * “installed”, more letters and a patterned MiB, “updated”, then a change since.
 */
export async function makeEncryptedSnapshottedDisk(folder: string, name: string, passphrase: string, dataMiB = 2): Promise<{ path: string; snapshots: string[] }> {
  const image = path.join(folder, name);
  await createLuksImage(image, passphrase, { size: String(snapshottedDiskSize(dataMiB)) });
  writeLetters(image, passphrase, 0, dataMiB * MiB);
  snapshot(image, passphrase, 'installed');
  writeLetters(image, passphrase, dataMiB * MiB, Math.max(1, dataMiB / 2) * MiB);
  qemuIo(image, passphrase, `write -P 0x33 0 ${MiB}`);
  snapshot(image, passphrase, 'updated');
  qemuIo(image, passphrase, `write -P 0x5a ${4 * MiB} ${MiB}`);
  return { path: image, snapshots: ['installed', 'updated'] };
}

/** A disk in the old qcow2 AES encryption (qemu-img still makes one): letters, “installed”, a patterned MiB since. */
export function makeLegacyAesDisk(folder: string, name: string, passphrase: string): { path: string; snapshots: string[] } {
  const image = path.join(folder, name);
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', ...secret('sec0', passphrase), '-o', 'encrypt.format=aes,encrypt.key-secret=sec0', image, String(8 * MiB)]);
  writeLetters(image, passphrase, 0, MiB);
  snapshot(image, passphrase, 'installed');
  qemuIo(image, passphrase, `write -P 0x33 ${2 * MiB} ${MiB}`);
  return { path: image, snapshots: ['installed'] };
}

/** A digest of a state's guest bytes as qemu-img decrypts them with `passphrase`; null: the current state. */
export function encryptedStateDigest(image: string, passphrase: string, snapshotName: string | null): string {
  const raw = `${image}.state-${process.hrtime.bigint()}.raw`;
  const selection = snapshotName === null ? [] : ['-l', `snapshot.name=${snapshotName}`];
  execFileSync('qemu-img', ['convert', '-U', ...secret('sec0', passphrase), '--image-opts', ...selection, '-O', 'raw', imageOpts(image, 'sec0'), raw]);
  try {
    return fileDigest(raw);
  } finally {
    fs.rmSync(raw, { force: true });
  }
}

/** Every state (each snapshot and the current one) of an encrypted disk, by name, as digests. */
export function encryptedStateDigests(image: string, passphrase: string): Record<string, string> {
  const digests: Record<string, string> = { current: encryptedStateDigest(image, passphrase, null) };
  for (const name of qemuSnapshotNames(image)) digests[name] = encryptedStateDigest(image, passphrase, name);
  return digests;
}

/** Whether qemu-io opens the disk with `passphrase` and reads its first sector. */
export function qemuOpensWith(image: string, passphrase: string): boolean {
  try {
    const output = execFileSync('qemu-io', [...secret('sec0', passphrase), '--image-opts', imageOpts(image, 'sec0'), '-c', 'read 0 512'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return /read 512\/512 bytes/.test(output);
  } catch {
    return false;
  }
}

/** `qemu-img check` with the passphrase: exit code (0 clean) and what it printed. */
export function qemuCheckEncrypted(image: string, passphrase: string): { code: number; output: string } {
  try {
    return { code: 0, output: execFileSync('qemu-img', ['check', ...secret('sec0', passphrase), '--image-opts', imageOpts(image, 'sec0')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) };
  } catch (error) {
    const failed = error as { status?: number; stdout?: string; stderr?: string };
    return { code: failed.status ?? -1, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}

/** What qemu-img info says of the disk's encryption: 'luks', 'aes' or null. */
export function qemuEncryptFormat(image: string): string | null {
  const info = JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', image], { encoding: 'utf8' })) as {
    'format-specific'?: { data?: { encrypt?: { format?: string } } };
  };
  return info['format-specific']?.data?.encrypt?.format ?? null;
}

/** Guest bytes of a plain disk's current state, as qemu-img reads them. */
export function guestBytes(image: string, offset: number, length: number): Buffer {
  const raw = `${image}.guest-${process.hrtime.bigint()}.raw`;
  execFileSync('qemu-img', ['convert', '-U', '-O', 'raw', image, raw]);
  try {
    return fs.readFileSync(raw).subarray(offset, offset + length);
  } finally {
    fs.rmSync(raw, { force: true });
  }
}

/** Whether the file holds `sample` anywhere: an encrypted file must hold no plaintext of the guest. */
export function fileContains(file: string, sample: Uint8Array): boolean {
  return fs.readFileSync(file).includes(Buffer.from(sample.buffer, sample.byteOffset, sample.byteLength));
}
