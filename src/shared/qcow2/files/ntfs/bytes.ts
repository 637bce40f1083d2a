/** Little-endian reads inside one NTFS structure: a read past its end is FILESYSTEM_CORRUPT, never a RangeError. */
import { Qcow2Error } from '../../errors.ts';
import { utf16Name } from '../paths.ts';

export function corrupt(message: string): Qcow2Error {
  return new Qcow2Error('FILESYSTEM_CORRUPT', `NTFS: ${message}`);
}

/** A bounded view of one structure (a boot sector, an MFT record, an attribute, an index block). */
export class LeBytes {
  readonly bytes: Uint8Array;
  private readonly data: DataView;
  private readonly what: string;

  constructor(bytes: Uint8Array, what: string) {
    this.bytes = bytes;
    this.data = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.what = what;
  }

  get length(): number {
    return this.bytes.length;
  }

  private need(position: number, size: number): void {
    if (!Number.isInteger(position) || position < 0 || position + size > this.bytes.length) {
      throw corrupt(`${this.what}: a field at ${position} (+${size}) lies past its end (${this.bytes.length} bytes)`);
    }
  }

  u8(position: number): number {
    this.need(position, 1);
    return this.data.getUint8(position);
  }

  i8(position: number): number {
    this.need(position, 1);
    return this.data.getInt8(position);
  }

  u16(position: number): number {
    this.need(position, 2);
    return this.data.getUint16(position, true);
  }

  u32(position: number): number {
    this.need(position, 4);
    return this.data.getUint32(position, true);
  }

  /** An unsigned 64-bit field as an exact number; CORRUPT above 2^53 (no volume offset or size is that big). */
  u64(position: number, field: string): number {
    this.need(position, 8);
    const value = this.data.getBigUint64(position, true);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`${this.what}: ${field} is out of range (0x${value.toString(16)})`);
    return Number(value);
  }

  u64Big(position: number): bigint {
    this.need(position, 8);
    return this.data.getBigUint64(position, true);
  }

  /** `length` bytes from `position`, as a view (no copy). */
  slice(position: number, length: number): Uint8Array {
    this.need(position, length);
    return this.bytes.subarray(position, position + length);
  }

  /** UTF-16LE text of `units` code units. */
  utf16(position: number, units: number): string {
    return decodeUtf16(this.slice(position, units * 2));
  }

  /** A file name: as utf16, but an unpaired surrogate spelled \uXXXX (paths.ts utf16Name), so two names stay two. */
  fileName(position: number, units: number): string {
    const bytes = this.slice(position, units * 2);
    const codeUnits = new Uint16Array(units);
    for (let index = 0; index < units; index++) codeUnits[index] = (bytes[index * 2] ?? 0) | ((bytes[index * 2 + 1] ?? 0) << 8);
    return utf16Name(codeUnits);
  }

  ascii(position: number, length: number): string {
    return String.fromCharCode(...this.slice(position, length));
  }
}

const utf16Decoder = new TextDecoder('utf-16le');

export function decodeUtf16(bytes: Uint8Array): string {
  return utf16Decoder.decode(bytes);
}

export function isPowerOfTwo(value: number): boolean {
  return Number.isInteger(value) && value > 0 && (value & (value - 1)) === 0;
}
