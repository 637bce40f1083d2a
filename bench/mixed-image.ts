/**
 * A deterministic raw disk image of mixed content, in 1 MiB extents: a third random (does not
 * compress), a third text-like (compresses well), a third zeros (written, not holes), in a seeded
 * order — the kind of data a used VM disk holds.
 */
import * as fs from 'node:fs';

const EXTENT = 1024 * 1024;

/** xorshift32: fast, seeded, good enough to defeat compression. */
function fillRandom(bytes: Uint8Array, state: { value: number }): void {
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  let value = state.value;
  for (let index = 0; index < words.length; index++) {
    value ^= value << 13;
    value ^= value >>> 17;
    value ^= value << 5;
    words[index] = value >>> 0;
  }
  state.value = value;
}

function textTemplate(): Uint8Array {
  const bytes = new Uint8Array(EXTENT);
  const encoder = new TextEncoder();
  let position = 0;
  for (let line = 0; position < bytes.length; line++) {
    const text = encoder.encode(`${line} the quick brown cowbell jumps over the lazy disk image, block ${(line * 7919) % 10007}\n`);
    const part = text.subarray(0, Math.min(text.length, bytes.length - position));
    bytes.set(part, position);
    position += part.length;
  }
  return bytes;
}

/** The template with the extent's number stamped into every 4 KiB, so no two extents are equal. */
function fillText(bytes: Uint8Array, template: Uint8Array, extent: number): void {
  bytes.set(template);
  const stamp = new TextEncoder().encode(`<extent ${extent}>`);
  for (let position = 0; position + stamp.length <= bytes.length; position += 4096) bytes.set(stamp, position);
}

export function writeMixedImage(filePath: string, sizeBytes: number, seed = 0x5eed): void {
  const extent = new Uint8Array(EXTENT);
  const template = textTemplate();
  const chooser = { value: seed >>> 0 || 1 };
  const random = { value: (seed * 2654435761) >>> 0 || 1 };
  const fd = fs.openSync(filePath, 'w');
  try {
    for (let index = 0; index * EXTENT < sizeBytes; index++) {
      chooser.value ^= chooser.value << 13;
      chooser.value ^= chooser.value >>> 17;
      chooser.value ^= chooser.value << 5;
      const kind = (chooser.value >>> 0) % 3;
      if (kind === 0) extent.fill(0);
      else if (kind === 1) fillRandom(extent, random);
      else fillText(extent, template, index);
      fs.writeSync(fd, extent, 0, Math.min(EXTENT, sizeBytes - index * EXTENT), index * EXTENT);
    }
  } finally {
    fs.closeSync(fd);
  }
}
