import { Qcow2Error } from '../errors.ts';

export function view(buffer: Uint8Array): DataView {
  return new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/** A big-endian u64 as a number; CORRUPT if it cannot be one exactly (no image offset is that big). */
export function readU64Number(data: DataView, position: number, what: string): number {
  const high = data.getUint32(position);
  const low = data.getUint32(position + 4);
  if (high > 0x1fffff) throw new Qcow2Error('CORRUPT', `${what} is out of range (0x${high.toString(16)}${low.toString(16).padStart(8, '0')})`);
  return high * 0x1_0000_0000 + low;
}

export function writeU64Number(data: DataView, position: number, value: number): void {
  data.setUint32(position, Math.floor(value / 0x1_0000_0000));
  data.setUint32(position + 4, value >>> 0);
}

export function hex(value: number | bigint): string {
  return '0x' + value.toString(16);
}

export function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

export function isAligned(value: number, alignment: number): boolean {
  return value % alignment === 0;
}

/** A 64-bit table entry in hex, as QEMU prints it (no leading zeros). */
export function hexEntry(high: number, low: number): string {
  if (high === 0) return low.toString(16);
  return high.toString(16) + low.toString(16).padStart(8, '0');
}
