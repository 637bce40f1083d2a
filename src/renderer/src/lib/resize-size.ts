/**
 * What the Resize dialog's size field means: an absolute size (`40G`) or a change (`+10G`, `-512M`),
 * as qemu-img resize reads them, checked against the rules a qcow2 disk's size follows.
 */
import { parseBytes } from '../../../shared/format-units.ts';

const SECTOR = 512;
const MAX_DISK_BYTES = 2 ** 52;

export type SizeReading = { ok: true; bytes: number } | { ok: false; problem: string };

export function readNewSize(text: string, currentBytes: number): SizeReading {
  const trimmed = text.trim();
  if (trimmed === '') return { ok: false, problem: 'Give the new size, for example 40G or +10G.' };
  const sign = trimmed.startsWith('+') ? 1 : trimmed.startsWith('-') ? -1 : 0;
  const amount = parseBytes(sign === 0 ? trimmed : trimmed.slice(1));
  if (amount === null) return { ok: false, problem: 'Write the size as a number with a unit: 40G, +10G, 1.5T.' };
  const bytes = sign === 0 ? amount : currentBytes + sign * amount;
  if (bytes <= 0) return { ok: false, problem: 'The new size must be larger than zero.' };
  if (bytes > MAX_DISK_BYTES) return { ok: false, problem: 'That is larger than a qcow2 disk can be.' };
  if (bytes % SECTOR !== 0) return { ok: false, problem: 'A disk’s size is a whole number of 512-byte sectors: round it to one.' };
  return { ok: true, bytes };
}

/** A size as the field shows it at first: exact, in the largest unit that divides it (`40G`, `1536M`, `1000448`). */
export function exactSizeText(bytes: number): string {
  for (const [suffix, unit] of [['T', 2 ** 40], ['G', 2 ** 30], ['M', 2 ** 20], ['K', 2 ** 10]] as const) {
    if (bytes >= unit && bytes % unit === 0) return `${bytes / unit}${suffix}`;
  }
  return String(bytes);
}
