/**
 * The icon containers the installers want, written from raw RGBA pixels: PNG, Windows .ico and
 * macOS .icns. Small enough to keep here rather than depend on ImageMagick or icnsutils.
 */
import { deflateSync } from 'node:zlib';

export interface RgbaImage {
  size: number;
  /** size × size pixels, 4 bytes each (R, G, B, A), not premultiplied, rows top to bottom. */
  pixels: Uint8Array;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let bit = 0; bit < 8; bit++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = (CRC_TABLE[(crc ^ byte) & 0xff] ?? 0) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const typeAndData = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typeAndData));
  return Buffer.concat([length, typeAndData, crc]);
}

/** An 8-bit RGBA PNG, each row with filter 0 (the icons are small; size is not the point). */
export function encodePng(image: RgbaImage): Buffer {
  const { size, pixels } = image;
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header[8] = 8; // bit depth
  header[9] = 6; // colour type: RGBA
  const rowBytes = size * 4;
  const raw = Buffer.alloc((rowBytes + 1) * size);
  for (let row = 0; row < size; row++) {
    raw[row * (rowBytes + 1)] = 0;
    raw.set(pixels.subarray(row * rowBytes, (row + 1) * rowBytes), row * (rowBytes + 1) + 1);
  }
  return Buffer.concat([PNG_SIGNATURE, pngChunk('IHDR', header), pngChunk('IDAT', deflateSync(raw, { level: 9 })), pngChunk('IEND', Buffer.alloc(0))]);
}

/** A 32-bit BMP as an .ico entry stores it: header with doubled height, BGRA rows bottom-up, then the AND mask. */
function icoBitmap(image: RgbaImage): Buffer {
  const { size, pixels } = image;
  const header = Buffer.alloc(40);
  header.writeUInt32LE(40, 0);
  header.writeInt32LE(size, 4);
  header.writeInt32LE(size * 2, 8);
  header.writeUInt16LE(1, 12); // planes
  header.writeUInt16LE(32, 14); // bits per pixel
  const colours = Buffer.alloc(size * size * 4);
  const maskRowBytes = Math.ceil(size / 32) * 4;
  const mask = Buffer.alloc(maskRowBytes * size);
  for (let row = 0; row < size; row++) {
    const targetRow = size - 1 - row;
    for (let column = 0; column < size; column++) {
      const from = (row * size + column) * 4;
      const to = (targetRow * size + column) * 4;
      colours[to] = pixels[from + 2] ?? 0;
      colours[to + 1] = pixels[from + 1] ?? 0;
      colours[to + 2] = pixels[from] ?? 0;
      const alpha = pixels[from + 3] ?? 0;
      colours[to + 3] = alpha;
      const maskAt = targetRow * maskRowBytes + (column >> 3);
      if (alpha === 0) mask[maskAt] = (mask[maskAt] ?? 0) | (0x80 >> (column & 7));
    }
  }
  return Buffer.concat([header, colours, mask]);
}

/**
 * A Windows icon: bitmaps up to 64 px (every Windows and NSIS reads those), PNG above (Vista and
 * later read PNG entries; a 256 px bitmap would be a quarter megabyte).
 */
export function encodeIco(images: readonly RgbaImage[]): Buffer {
  const entries = images.map((image) => (image.size <= 64 ? icoBitmap(image) : encodePng(image)));
  const directory = Buffer.alloc(6 + 16 * images.length);
  directory.writeUInt16LE(0, 0);
  directory.writeUInt16LE(1, 2); // type: icon
  directory.writeUInt16LE(images.length, 4);
  let offset = directory.length;
  images.forEach((image, index) => {
    const at = 6 + 16 * index;
    const entry = entries[index] ?? Buffer.alloc(0);
    directory[at] = image.size >= 256 ? 0 : image.size; // 0 means 256
    directory[at + 1] = image.size >= 256 ? 0 : image.size;
    directory.writeUInt16LE(1, at + 4); // planes
    directory.writeUInt16LE(32, at + 6); // bits per pixel
    directory.writeUInt32LE(entry.length, at + 8);
    directory.writeUInt32LE(offset, at + 12);
    offset += entry.length;
  });
  return Buffer.concat([directory, ...entries]);
}

/** The PNG-holding .icns types by pixel size: the 1x types, then the @2x ones of half the size. */
export const ICNS_TYPES: readonly { type: string; size: number }[] = [
  { type: 'icp4', size: 16 },
  { type: 'icp5', size: 32 },
  { type: 'icp6', size: 64 },
  { type: 'ic07', size: 128 },
  { type: 'ic08', size: 256 },
  { type: 'ic09', size: 512 },
  { type: 'ic10', size: 1024 },
  { type: 'ic11', size: 32 },
  { type: 'ic12', size: 64 },
  { type: 'ic13', size: 256 },
  { type: 'ic14', size: 512 },
];

/** A macOS icon family of PNG entries; `images` must hold every size ICNS_TYPES names. */
export function encodeIcns(images: readonly RgbaImage[]): Buffer {
  const bySize = new Map(images.map((image) => [image.size, encodePng(image)]));
  const entries = ICNS_TYPES.map(({ type, size }) => {
    const png = bySize.get(size);
    if (png === undefined) throw new Error(`no ${size} px image for the .icns entry ${type}`);
    const header = Buffer.alloc(8);
    header.write(type, 0, 'ascii');
    header.writeUInt32BE(png.length + 8, 4);
    return Buffer.concat([header, png]);
  });
  const body = Buffer.concat(entries);
  const header = Buffer.alloc(8);
  header.write('icns', 0, 'ascii');
  header.writeUInt32BE(body.length + 8, 4);
  return Buffer.concat([header, body]);
}
