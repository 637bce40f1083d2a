/**
 * What the Resize dialog's size field means: an absolute size (`40G`) or a change (`+10G`, `-512M`),
 * as qemu-img resize reads them, checked against the rules a qcow2 disk's size follows.
 */
import { parseBytes } from '../../../shared/format-units.ts';

const SECTOR = 512;
const MAX_DISK_BYTES = 2 ** 52;

export type SizeReading = { ok: true; bytes: number } | { ok: false; problem: string };

/** A number with an optional unit, as parseBytes reads one, whatever its size. */
const SIZE_SHAPE = /^\s*\d+(?:\.\d+)?\s*(?:[kmgtpe](?:i?b)?|b)?\s*$/i;

/** Why a size as typed is not one a disk can have, with the problem it has (not the format, where only the number is wrong). */
function unreadableSize(text: string, examples: string): string {
  if (!SIZE_SHAPE.test(text)) return `Write the size as a number with a unit: ${examples}.`;
  // parseBytes refuses a fraction of a byte too (1.1K): that one is not too large.
  const [, number = '', unit = ''] = /^\s*([\d.]+)\s*([kmgtpe]?)/i.exec(text) ?? [];
  const bytes = Number(number) * 2 ** (unit === '' ? 0 : 10 * ('kmgtpe'.indexOf(unit.toLowerCase()) + 1));
  return bytes < MAX_DISK_BYTES ? 'A disk’s size is a whole number of 512-byte sectors: round it to one.' : 'That is larger than a qcow2 disk can be.';
}

/** What to say of a bare number too small or not whole sectors: it was read as bytes, and "20" most likely meant 20 GiB. */
function bareNumberHint(text: string): string | null {
  const number = text.trim();
  return /^\d+$/.test(number) ? ` A number without a unit is bytes: write ${number}G for ${number} GiB.` : null;
}

/** The largest disk a qcow2 image with `clusterBytes` clusters (8-byte L2 entries) can map: QEMU's 32 MiB bound on the L1 table. */
export function largestDiskBytes(clusterBytes: number): number {
  return Math.min(MAX_DISK_BYTES, (MAX_L1_BYTES / 8) * (clusterBytes / 8) * clusterBytes);
}

const MAX_L1_BYTES = 32 * 1024 * 1024;

/** What is wrong with a new disk's size as typed (512 bytes at least, at most what its clusters can map), or null. */
export function newDiskSizeProblem(text: string, clusterBytes: number): string | null {
  const bytes = parseBytes(text);
  if (bytes === null) return unreadableSize(text, '512M, 20G, 1.5T');
  if (bytes < SECTOR) return `A disk is at least 512 bytes (one sector).${bareNumberHint(text) ?? ''}`;
  if (bytes > largestDiskBytes(clusterBytes)) return `That is larger than a disk with ${clusterBytes / 1024} KiB clusters can be: choose larger clusters, or a smaller size.`;
  return null;
}

export function readNewSize(text: string, currentBytes: number): SizeReading {
  const trimmed = text.trim();
  if (trimmed === '') return { ok: false, problem: 'Give the new size, for example 40G or +10G.' };
  const sign = trimmed.startsWith('+') ? 1 : trimmed.startsWith('-') ? -1 : 0;
  const amount = parseBytes(sign === 0 ? trimmed : trimmed.slice(1));
  if (amount === null) return { ok: false, problem: unreadableSize(sign === 0 ? trimmed : trimmed.slice(1), '40G, +10G, 1.5T') };
  const bytes = sign === 0 ? amount : currentBytes + sign * amount;
  if (bytes <= 0) return { ok: false, problem: 'The new size must be larger than zero.' };
  if (bytes > MAX_DISK_BYTES) return { ok: false, problem: 'That is larger than a qcow2 disk can be.' };
  if (bytes % SECTOR !== 0) {
    const hint = bareNumberHint(sign === 0 ? trimmed : trimmed.slice(1));
    return { ok: false, problem: hint === null ? 'A disk’s size is a whole number of 512-byte sectors: round it to one.' : `A disk’s size is a whole number of 512-byte sectors.${hint}` };
  }
  return { ok: true, bytes };
}

/** A size as the field shows it at first: exact, in the largest unit that divides it (`40G`, `1536M`, `1000448`). */
export function exactSizeText(bytes: number): string {
  for (const [suffix, unit] of [['T', 2 ** 40], ['G', 2 ** 30], ['M', 2 ** 20], ['K', 2 ** 10]] as const) {
    if (bytes >= unit && bytes % unit === 0) return `${bytes / unit}${suffix}`;
  }
  return String(bytes);
}
