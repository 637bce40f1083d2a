/**
 * The source of a rescue copy (convert --rescue): guest bytes where they can be read, zeros where
 * they cannot, and the list of what could not be read and why. Trusted runs come from the damage
 * scan (image/damage-scan.ts) and are read with the strict reader, so what is copied is exactly
 * what a plain read returns; a run whose read still fails (a compressed stream that does not
 * decompress, an I/O error) is retried one cluster at a time and the failing clusters are zeroed.
 */
import { Qcow2Error } from '../errors.ts';
import { DamageScanner, type Damage, type ScanRun } from '../image/damage-scan.ts';
import type { GuestReader } from '../image/guest-reader.ts';
import { Qcow2Image, Qcow2StateView } from '../image/image.ts';
import type { UnreadableRange } from '../model.ts';

/** The unit a failed read is retried in where the source has no clusters (a raw file). */
const RAW_RETRY_BYTES = 64 * 1024;

/** Errors a rescue reads past: the data is damaged, not the request. */
const RESCUABLE = new Set(['CORRUPT', 'IO_ERROR', 'TRUNCATED']);

export class RescueReader {
  private readonly source: GuestReader;
  private readonly scanner: DamageScanner;
  private readonly retryBytes: number;
  private readonly ranges: UnreadableRange[] = [];

  constructor(source: GuestReader) {
    this.source = source;
    this.scanner = new DamageScanner(source);
    const image = source instanceof Qcow2StateView ? source.image : source instanceof Qcow2Image ? source : null;
    this.retryBytes = image?.clusterBytes ?? RAW_RETRY_BYTES;
  }

  /** The runs of [start, end): what to read, what is zero, what is damaged (record it when it is passed). */
  runs(start: number, end: number): ScanRun[] {
    return this.scanner.runs(start, end);
  }

  /** Notes a guest range as unreadable (in guest order: ranges arrive as the copy passes them). */
  record(start: number, length: number, damage: Damage): void {
    if (length <= 0) return;
    const last = this.ranges.at(-1);
    if (last !== undefined && last.start + last.length === start && last.reason === damage.reason && last.detail === damage.detail) last.length += length;
    else this.ranges.push({ start, length, reason: damage.reason, detail: damage.detail });
  }

  /**
   * Fills `target` with the guest bytes of a data or compressed run at `guestOffset`. Parts that
   * fail to read are zeroed and recorded.
   */
  read(target: Uint8Array, guestOffset: number, compressed: boolean): void {
    try {
      this.source.readInto(target, guestOffset);
      return;
    } catch (error) {
      if (!isRescuable(error)) throw error;
    }
    let done = 0;
    while (done < target.length) {
      const position = guestOffset + done;
      const length = Math.min(this.retryBytes - (position % this.retryBytes), target.length - done);
      const part = target.subarray(done, done + length);
      try {
        this.source.readInto(part, position);
      } catch (error) {
        if (!isRescuable(error)) throw error;
        part.fill(0);
        this.record(position, length, damageOf(error, compressed));
      }
      done += length;
    }
  }

  /** What could not be read, in guest order. */
  get unreadable(): UnreadableRange[] {
    return this.ranges;
  }
}

function isRescuable(error: unknown): error is Qcow2Error {
  return error instanceof Qcow2Error && RESCUABLE.has(error.code);
}

function damageOf(error: Qcow2Error, compressed: boolean): Damage {
  if (error.code === 'IO_ERROR') return { reason: 'READ_ERROR', detail: error.message };
  if (compressed) return { reason: 'COMPRESSED_CORRUPT', detail: error.message };
  return { reason: 'CORRUPT', detail: error.message };
}
