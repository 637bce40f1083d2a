import { beforeAll, describe, expect, it } from 'vitest';
import { createLuks } from '../../../src/shared/qcow2/crypto/luks-keys.ts';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { parseCryptoHeaderExtension, serializeCryptoHeaderExtension } from '../../../src/shared/qcow2/format/crypto-header-extension.ts';
import { LUKS_PHDR_BYTES, keyMaterialAlignedSectors, parseLuksHeader, serializeLuksHeader } from '../../../src/shared/qcow2/format/luks-header.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';

const AREA = 2068480;
/** Field offsets (LUKS1 spec §2.1), written out here independently of the parser's own table. */
const VERSION = 6;
const CIPHER_NAME = 8;
const CIPHER_MODE = 40;
const HASH_SPEC = 72;
const PAYLOAD_OFFSET = 104;
const KEY_BYTES = 108;
const DIGEST_ITERATIONS = 164;
const UUID = 168;
const SLOT = (index: number): number => 208 + 48 * index;

let ours: Uint8Array;
beforeAll(() => {
  ours = createLuks('pass', { iterations: 1000, digestIterations: 1000 }).area.slice(0, LUKS_PHDR_BYTES);
});

function codeOf(action: () => unknown): string | undefined {
  try {
    action();
  } catch (error) {
    return error instanceof Qcow2Error ? error.code : `untyped: ${String(error)}`;
  }
  return undefined;
}

/** Our header with one change, parsed in an area of `areaLength` bytes. */
function parseChanged(change: (fields: DataView, bytes: Uint8Array) => void, areaLength = AREA): string | undefined {
  const bytes = ours.slice();
  change(new DataView(bytes.buffer), bytes);
  return codeOf(() => parseLuksHeader(bytes, areaLength));
}

function writeText(bytes: Uint8Array, position: number, text: string): void {
  bytes.fill(0, position, position + 32);
  bytes.set(new TextEncoder().encode(text), position);
}

// Headers qemu-img writes are parsed and re-serialised byte for byte in luks-ciphers.test.ts (every
// cipher) and luks-key-slots.test.ts (QEMU's default layout); these tests need no qemu-img.
describe('LUKS header', () => {
  it('Cowbell lays out a new header as QEMU 7.2 does (slots every 504 sectors from 8, payload at 4040, 4000 stripes) and parses what it wrote', () => {
    const header = parseLuksHeader(ours, AREA);
    expect(header.keySlots.map((slot) => slot.keyMaterialOffsetSectors)).toEqual([8, 512, 1016, 1520, 2024, 2528, 3032, 3536]);
    expect(header.keySlots.every((slot) => slot.stripes === 4000)).toBe(true);
    expect(header.payloadOffsetSectors).toBe(4040);
    expect(Buffer.from(serializeLuksHeader(header)).equals(Buffer.from(ours))).toBe(true);
  });

  it('refuses hostile and broken fields with typed errors before anything is sized by them', () => {
    expect(parseChanged(() => {})).toBeUndefined();
    expect(parseChanged((_, bytes) => (bytes[0] = 0x4d))).toBe('CORRUPT');
    expect(parseChanged((fields) => fields.setUint16(VERSION, 2))).toBe('UNSUPPORTED_VERSION');
    expect(parseChanged((_, bytes) => writeText(bytes, CIPHER_NAME, 'serpent'))).toBe('UNSUPPORTED_FEATURE');
    expect(parseChanged((_, bytes) => bytes.fill(0x61, CIPHER_NAME, CIPHER_NAME + 32))).toBe('CORRUPT');
    expect(parseChanged((_, bytes) => writeText(bytes, CIPHER_NAME, 'a\x01s'))).toBe('CORRUPT');
    expect(parseChanged((_, bytes) => writeText(bytes, CIPHER_MODE, 'ecb-plain64'))).toBe('UNSUPPORTED_FEATURE');
    expect(parseChanged((_, bytes) => writeText(bytes, CIPHER_MODE, 'xts-benbi'))).toBe('UNSUPPORTED_FEATURE');
    expect(parseChanged((_, bytes) => writeText(bytes, CIPHER_MODE, 'xtsplain64'))).toBe('CORRUPT');
    expect(parseChanged((_, bytes) => writeText(bytes, CIPHER_MODE, 'xts-essiv'))).toBe('CORRUPT');
    expect(parseChanged((_, bytes) => writeText(bytes, CIPHER_MODE, 'xts-essiv:sha1'))).toBe('UNSUPPORTED_FEATURE');
    expect(parseChanged((_, bytes) => writeText(bytes, CIPHER_MODE, 'xts-plain64:whirlpool'))).toBe('UNSUPPORTED_FEATURE');
    expect(parseChanged((_, bytes) => writeText(bytes, HASH_SPEC, 'ripemd160'))).toBe('UNSUPPORTED_FEATURE');
    expect(parseChanged((fields) => fields.setUint32(KEY_BYTES, 0xffffffff))).toBe('CORRUPT');
    expect(parseChanged((fields) => fields.setUint32(KEY_BYTES, 16))).toBe('CORRUPT');
    expect(parseChanged((fields) => fields.setUint32(DIGEST_ITERATIONS, 0))).toBe('CORRUPT');
    expect(parseChanged((fields) => fields.setUint32(DIGEST_ITERATIONS, 0xffffffff))).toBe('CORRUPT');
    expect(parseChanged((_, bytes) => bytes.fill(0x41, UUID, UUID + 40))).toBe('CORRUPT');
    expect(parseChanged((fields) => fields.setUint32(SLOT(0), 0x12345678))).toBe('CORRUPT');
    expect(parseChanged((fields) => fields.setUint32(SLOT(0) + 4, 0))).toBe('CORRUPT');
    expect(parseChanged((fields) => fields.setUint32(SLOT(0) + 4, 0xfffffff0))).toBe('CORRUPT');
    expect(parseChanged((fields) => fields.setUint32(SLOT(3) + 44, 0))).toBe('CORRUPT');
    expect(parseChanged((fields) => fields.setUint32(SLOT(0) + 44, 0xffffffff))).toBe('CORRUPT');
    expect(parseChanged((fields) => fields.setUint32(SLOT(0) + 40, 0xffffffff))).toBe('CORRUPT');
    expect(parseChanged((fields) => fields.setUint32(SLOT(0) + 40, 1))).toBe('CORRUPT');
    expect(parseChanged((fields) => fields.setUint32(SLOT(1) + 40, 300))).toBe('CORRUPT');
    expect(parseChanged((fields) => fields.setUint32(PAYLOAD_OFFSET, 4000))).toBe('CORRUPT');
    // Slot 7's 256000 bytes end 2048 bytes before the area does: 4096 fewer cut into them.
    expect(parseChanged(() => {}, AREA - 2048)).toBeUndefined();
    expect(parseChanged(() => {}, AREA - 4096)).toBe('CORRUPT');
    expect(parseChanged(() => {}, 100)).toBe('CORRUPT');
    expect(codeOf(() => parseLuksHeader(ours.subarray(0, 400), AREA))).toBe('TRUNCATED');
  });

  it('accepts a disabled slot left with zero iterations, and an ivgen hash where plain64 ignores it (dm-crypt compatibility)', () => {
    expect(parseChanged((fields) => fields.setUint32(SLOT(5) + 4, 0))).toBeUndefined();
    const bytes = ours.slice();
    writeText(bytes, CIPHER_MODE, 'xts-plain64:sha256');
    const header = parseLuksHeader(bytes, AREA);
    expect(header.cipher.ivHash).toBe('sha256');
    expect(Buffer.from(serializeLuksHeader(header)).equals(Buffer.from(bytes))).toBe(true);
  });

  it('never fails with anything but a typed error on randomly damaged headers (2000 mutations)', () => {
    const random = new SeededRandom(42);
    const codes = new Set<string | undefined>();
    for (let round = 0; round < 2000; round++) {
      const bytes = ours.slice();
      const flips = random.int(1, 6);
      for (let flip = 0; flip < flips; flip++) {
        const position = random.int(0, LUKS_PHDR_BYTES);
        bytes[position] = random.int(0, 256);
      }
      const code = codeOf(() => parseLuksHeader(bytes, random.int(0, 4) === 0 ? random.int(0, AREA * 2) : AREA));
      expect(code === undefined || !code.startsWith('untyped')).toBe(true);
      codes.add(code);
    }
    expect(codes.has('CORRUPT')).toBe(true);
  });

  it('rounds key material to 4096 bytes as QEMU lays it out', () => {
    expect(keyMaterialAlignedSectors(64, 4000)).toBe(504);
    expect(keyMaterialAlignedSectors(32, 4000)).toBe(256);
    expect(keyMaterialAlignedSectors(16, 4000)).toBe(128);
    expect(keyMaterialAlignedSectors(48, 4000)).toBe(376);
  });
});

describe('crypto header extension', () => {
  it('refuses a wrong size, an unaligned or zero offset, a too-short area and one past any file', () => {
    const extension = (offset: number, length: number, high = 0): Uint8Array => {
      const bytes = serializeCryptoHeaderExtension({ offset, length });
      new DataView(bytes.buffer).setUint32(8, high);
      return bytes;
    };
    expect(codeOf(() => parseCryptoHeaderExtension(new Uint8Array(15), 65536))).toBe('CORRUPT');
    expect(codeOf(() => parseCryptoHeaderExtension(new Uint8Array(24), 65536))).toBe('CORRUPT');
    expect(codeOf(() => parseCryptoHeaderExtension(extension(0, AREA), 65536))).toBe('CORRUPT');
    expect(codeOf(() => parseCryptoHeaderExtension(extension(0x40200, AREA), 65536))).toBe('CORRUPT');
    expect(codeOf(() => parseCryptoHeaderExtension(extension(0x40000, 100), 65536))).toBe('CORRUPT');
    expect(codeOf(() => parseCryptoHeaderExtension(extension(0x40000, AREA, 0xffffffff), 65536))).toBe('CORRUPT');
    expect(codeOf(() => parseCryptoHeaderExtension(extension(0x40000, AREA, 0x1fffff), 65536))).toBe('CORRUPT');
    expect(codeOf(() => parseCryptoHeaderExtension(extension(0x40000, 65 << 20), 65536))).toBe('CORRUPT');
    const farOffset = serializeCryptoHeaderExtension({ offset: 2 ** 53 - 65536, length: AREA });
    expect(codeOf(() => parseCryptoHeaderExtension(farOffset, 65536))).toBe('CORRUPT');
    expect(parseCryptoHeaderExtension(extension(0x40000, AREA), 65536)).toEqual({ offset: 0x40000, length: AREA });
  });
});
