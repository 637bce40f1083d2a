/**
 * Writing a buffer to a file in pieces of at most 1 MiB. A larger write lets Linux (ext4 from 6.16,
 * and others) back the page cache with 2 MiB folios, and on a VM guest that hands free memory back
 * to its host (free-page reporting: Firecracker, crosvm on ChromeOS) those are made of memory the
 * host took back, each faulted in again at tens of milliseconds: 340 MiB written in 2 MiB-aligned
 * pieces took 5-7 s on such a guest, in 1 MiB pieces 0.12 s. Elsewhere the cost is one more system
 * call per MiB (not measured on a machine without that behaviour).
 */
import * as fs from 'node:fs';

export const WRITE_PIECE_BYTES = 1024 * 1024;

/** Writes all of `bytes` at `position` (pwrite, repeated for short writes). */
export function writeInPieces(fd: number, bytes: Uint8Array, position: number): void {
  for (let done = 0; done < bytes.length; ) done += fs.writeSync(fd, bytes, done, Math.min(WRITE_PIECE_BYTES, bytes.length - done), position + done);
}
