/**
 * The LUKS1 header (cryptsetup's "LUKS On-Disk Format Specification" 1.2: the 592-byte partition
 * header with its eight key slots) as it sits at the start of a qcow2 image's LUKS area
 * (crypt_method 2; crypto-header-extension.ts says where the area is). Pure parse and serialise:
 * every field is checked here, once, against the spec, the area's length and what QEMU 7.2 accepts
 * (crypto/block-luks.c), so that no later code sizes memory or work by an unchecked field.
 * Key-material offsets count 512-byte sectors from the start of the area; qcow2 ignores the
 * payload offset except that QEMU refuses key material reaching past it.
 */
import { Qcow2Error } from '../errors.ts';
import { view } from './bytes.ts';

export const LUKS_MAGIC = Uint8Array.of(0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe);
export const LUKS_VERSION = 1;
export const LUKS_PHDR_BYTES = 592;
export const LUKS_SECTOR_BYTES = 512;
export const LUKS_KEY_SLOT_COUNT = 8;
export const LUKS_SALT_BYTES = 32;
export const LUKS_DIGEST_BYTES = 20;
export const LUKS_UUID_BYTES = 40;
export const LUKS_SLOT_ACTIVE = 0x00ac71f3;
export const LUKS_SLOT_DISABLED = 0x0000dead;
/** The stripes QEMU and cryptsetup always write. */
export const LUKS_STRIPES = 4000;
/** Key material is laid out on 4096-byte boundaries (QEMU's and cryptsetup's layout, and the unit of QEMU's overlap check). */
export const LUKS_ALIGN_SECTORS = 8;
/** Generous bounds on hostile fields: 16x the usual stripes (key material ≤ 4 MiB) and ~3 minutes of PBKDF2 per try here. */
export const LUKS_MAX_STRIPES = 65536;
export const LUKS_MAX_ITERATIONS = 2 ** 30;

const NAME_FIELD_BYTES = 32;
/** Field offsets of the partition header (spec §2.1, all integers big-endian) and of each 48-byte key slot. */
const AT = {
  magic: 0,
  version: 6,
  cipherName: 8,
  cipherMode: 40,
  hashSpec: 72,
  payloadOffset: 104,
  keyBytes: 108,
  digest: 112,
  digestSalt: 132,
  digestIterations: 164,
  uuid: 168,
  slots: 208,
} as const;
const SLOT_AT = { state: 0, iterations: 4, salt: 8, keyMaterialOffset: 40, stripes: 44 } as const;
const SLOT_BYTES = 48;

export type LuksHash = 'sha1' | 'sha224' | 'sha256' | 'sha384' | 'sha512';
export type LuksCipherMode = 'xts' | 'cbc';
export type LuksIvGenerator = 'plain' | 'plain64' | 'essiv';

const HASHES: readonly LuksHash[] = ['sha1', 'sha224', 'sha256', 'sha384', 'sha512'];
const MODES: readonly LuksCipherMode[] = ['xts', 'cbc'];
const IV_GENERATORS: readonly LuksIvGenerator[] = ['plain', 'plain64', 'essiv'];

/** How the payload and key material are encrypted: "aes" + "xts-plain64" + key bytes, as one typed value. */
export interface LuksCipher {
  name: 'aes';
  mode: LuksCipherMode;
  ivGenerator: LuksIvGenerator;
  /** The hash after the colon ("essiv:sha256"); only ESSIV uses it, and only sha256 (AES-256 ESSIV) is supported. */
  ivHash: LuksHash | null;
  /** Master key length: 16/24/32 for CBC, twice that for XTS (data key, then tweak key). */
  keyBytes: number;
}

export interface LuksKeySlot {
  active: boolean;
  /** PBKDF2 iterations for the passphrase (0 in a disabled slot, as QEMU leaves it). */
  iterations: number;
  salt: Uint8Array;
  keyMaterialOffsetSectors: number;
  stripes: number;
}

export interface LuksHeader {
  cipher: LuksCipher;
  /** The PBKDF2 and anti-forensic splitter hash. */
  hash: LuksHash;
  payloadOffsetSectors: number;
  masterKeyDigest: Uint8Array;
  masterKeyDigestSalt: Uint8Array;
  masterKeyDigestIterations: number;
  uuid: string;
  keySlots: LuksKeySlot[];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('ascii');

/** Bytes of one slot's key material (keyBytes × stripes); the parser keeps it ≤ 64 × LUKS_MAX_STRIPES. */
export function keyMaterialBytes(header: LuksHeader, slot: LuksKeySlot): number {
  return header.cipher.keyBytes * slot.stripes;
}

/** Key material rounded up the way QEMU's layout and overlap check round it (to 4096 bytes). */
export function keyMaterialAlignedSectors(keyBytes: number, stripes: number): number {
  const sectors = Math.ceil((keyBytes * stripes) / LUKS_SECTOR_BYTES);
  return Math.ceil(sectors / LUKS_ALIGN_SECTORS) * LUKS_ALIGN_SECTORS;
}

/** "xts-plain64", "cbc-essiv:sha256": the cipher_mode field as QEMU and cryptsetup write it. */
export function luksCipherModeText(cipher: LuksCipher): string {
  return `${cipher.mode}-${cipher.ivGenerator}${cipher.ivHash === null ? '' : `:${cipher.ivHash}`}`;
}

/** "aes-256-xts-plain64" for messages and info. */
export function describeLuksCipher(cipher: LuksCipher): string {
  const keyBits = (cipher.mode === 'xts' ? cipher.keyBytes / 2 : cipher.keyBytes) * 8;
  return `${cipher.name}-${keyBits}-${luksCipherModeText(cipher)}`;
}

/** Valid master key lengths for a mode: AES-128/192/256, doubled for XTS's two keys. */
export function validKeyBytes(mode: LuksCipherMode): readonly number[] {
  return mode === 'xts' ? [32, 48, 64] : [16, 24, 32];
}

/**
 * Parses the first LUKS_PHDR_BYTES of a LUKS area of `areaLength` bytes. CORRUPT for broken
 * fields, UNSUPPORTED_VERSION for LUKS2, UNSUPPORTED_FEATURE naming a cipher, mode, IV generator
 * or hash Cowbell does not implement.
 */
export function parseLuksHeader(bytes: Uint8Array, areaLength: number): LuksHeader {
  if (areaLength < LUKS_PHDR_BYTES) throw new Qcow2Error('CORRUPT', `The LUKS area is ${areaLength} bytes long, too short for a LUKS header`);
  if (bytes.length < LUKS_PHDR_BYTES) throw new Qcow2Error('TRUNCATED', 'The LUKS header is cut short: the image is truncated');
  const fields = view(bytes);
  if (!LUKS_MAGIC.every((byte, index) => bytes[AT.magic + index] === byte)) {
    throw new Qcow2Error('CORRUPT', 'The LUKS area does not start with a LUKS header (wrong magic)');
  }
  const version = fields.getUint16(AT.version);
  if (version !== LUKS_VERSION) throw new Qcow2Error('UNSUPPORTED_VERSION', `LUKS version ${version} is not supported (only LUKS1, which QEMU writes into qcow2)`);
  const cipherName = fixedString(bytes, AT.cipherName, NAME_FIELD_BYTES, 'cipher name');
  const cipherModeText = fixedString(bytes, AT.cipherMode, NAME_FIELD_BYTES, 'cipher mode');
  const hashText = fixedString(bytes, AT.hashSpec, NAME_FIELD_BYTES, 'hash');
  const payloadOffsetSectors = fields.getUint32(AT.payloadOffset);
  const keyBytes = fields.getUint32(AT.keyBytes);
  const masterKeyDigestIterations = fields.getUint32(AT.digestIterations);
  const uuid = fixedString(bytes, AT.uuid, LUKS_UUID_BYTES, 'UUID');

  if (cipherName !== 'aes') throw new Qcow2Error('UNSUPPORTED_FEATURE', `The LUKS cipher "${cipherName}" is not supported (only aes)`);
  const cipher = parseLuksCipherMode(cipherModeText, keyBytes);
  const hash = parseLuksHash(hashText, 'The LUKS hash');
  checkIterations(masterKeyDigestIterations, 'The LUKS master key digest');

  const keySlots: LuksKeySlot[] = [];
  for (let index = 0; index < LUKS_KEY_SLOT_COUNT; index++) {
    const position = AT.slots + index * SLOT_BYTES;
    const state = fields.getUint32(position + SLOT_AT.state);
    if (state !== LUKS_SLOT_ACTIVE && state !== LUKS_SLOT_DISABLED) {
      throw new Qcow2Error('CORRUPT', `LUKS key slot ${index} has an unknown state 0x${state.toString(16).padStart(8, '0')}`);
    }
    const slot: LuksKeySlot = {
      active: state === LUKS_SLOT_ACTIVE,
      iterations: fields.getUint32(position + SLOT_AT.iterations),
      salt: bytes.slice(position + SLOT_AT.salt, position + SLOT_AT.salt + LUKS_SALT_BYTES),
      keyMaterialOffsetSectors: fields.getUint32(position + SLOT_AT.keyMaterialOffset),
      stripes: fields.getUint32(position + SLOT_AT.stripes),
    };
    if (slot.active) checkIterations(slot.iterations, `LUKS key slot ${index}`);
    checkKeyMaterial(slot, index, keyBytes, payloadOffsetSectors, areaLength);
    keySlots.push(slot);
  }
  checkNoOverlap(keySlots, keyBytes);

  return {
    cipher,
    hash,
    payloadOffsetSectors,
    masterKeyDigest: bytes.slice(AT.digest, AT.digest + LUKS_DIGEST_BYTES),
    masterKeyDigestSalt: bytes.slice(AT.digestSalt, AT.digestSalt + LUKS_SALT_BYTES),
    masterKeyDigestIterations,
    uuid,
    keySlots,
  };
}

/** Largest key a LUKS1 header QEMU reads holds (AES-256-XTS: 64 bytes). */
const MAX_KEY_BYTES = 64;
/** Key slots placed further than this into the area are taken as damaged fields, not as key material to keep. */
const MAX_STATED_EXTENT_BYTES = 64 * 1024 * 1024;

/**
 * How far the LUKS area reaches by its own header's word, without judging the header otherwise:
 * to the end of the last key slot's material or to the payload offset, whichever is further.
 * Null where `bytes` is no LUKS1 header or those fields are not believable. For check, which must
 * not free key material a damaged qcow2 header extension leaves out.
 */
export function luksStatedExtent(bytes: Uint8Array): number | null {
  if (bytes.length < LUKS_PHDR_BYTES || !LUKS_MAGIC.every((byte, index) => bytes[AT.magic + index] === byte)) return null;
  const fields = view(bytes);
  if (fields.getUint16(AT.version) !== LUKS_VERSION) return null;
  const keyBytes = fields.getUint32(AT.keyBytes);
  if (keyBytes === 0 || keyBytes > MAX_KEY_BYTES) return null;
  let extent = fields.getUint32(AT.payloadOffset) * LUKS_SECTOR_BYTES;
  for (let index = 0; index < LUKS_KEY_SLOT_COUNT; index++) {
    const position = AT.slots + index * SLOT_BYTES;
    const stripes = fields.getUint32(position + SLOT_AT.stripes);
    if (stripes === 0 || stripes > LUKS_MAX_STRIPES) return null;
    const materialEnd = fields.getUint32(position + SLOT_AT.keyMaterialOffset) * LUKS_SECTOR_BYTES + Math.ceil((keyBytes * stripes) / LUKS_SECTOR_BYTES) * LUKS_SECTOR_BYTES;
    extent = Math.max(extent, materialEnd);
  }
  return extent <= MAX_STATED_EXTENT_BYTES ? extent : null;
}

export function serializeLuksHeader(header: LuksHeader): Uint8Array {
  const bytes = new Uint8Array(LUKS_PHDR_BYTES);
  const fields = view(bytes);
  bytes.set(LUKS_MAGIC, AT.magic);
  fields.setUint16(AT.version, LUKS_VERSION);
  writeFixedString(bytes, AT.cipherName, NAME_FIELD_BYTES, header.cipher.name);
  writeFixedString(bytes, AT.cipherMode, NAME_FIELD_BYTES, luksCipherModeText(header.cipher));
  writeFixedString(bytes, AT.hashSpec, NAME_FIELD_BYTES, header.hash);
  fields.setUint32(AT.payloadOffset, header.payloadOffsetSectors);
  fields.setUint32(AT.keyBytes, header.cipher.keyBytes);
  bytes.set(header.masterKeyDigest.subarray(0, LUKS_DIGEST_BYTES), AT.digest);
  bytes.set(header.masterKeyDigestSalt.subarray(0, LUKS_SALT_BYTES), AT.digestSalt);
  fields.setUint32(AT.digestIterations, header.masterKeyDigestIterations);
  writeFixedString(bytes, AT.uuid, LUKS_UUID_BYTES, header.uuid);
  header.keySlots.forEach((slot, index) => {
    const position = AT.slots + index * SLOT_BYTES;
    fields.setUint32(position + SLOT_AT.state, slot.active ? LUKS_SLOT_ACTIVE : LUKS_SLOT_DISABLED);
    fields.setUint32(position + SLOT_AT.iterations, slot.iterations);
    bytes.set(slot.salt.subarray(0, LUKS_SALT_BYTES), position + SLOT_AT.salt);
    fields.setUint32(position + SLOT_AT.keyMaterialOffset, slot.keyMaterialOffsetSectors);
    fields.setUint32(position + SLOT_AT.stripes, slot.stripes);
  });
  return bytes;
}

/** A NUL-terminated printable ASCII string in a fixed field (the C strings the spec stores). */
function fixedString(bytes: Uint8Array, position: number, length: number, what: string): string {
  const field = bytes.subarray(position, position + length);
  const end = field.indexOf(0);
  if (end < 0) throw new Qcow2Error('CORRUPT', `The LUKS ${what} field is not NUL-terminated`);
  const text = field.subarray(0, end);
  if (text.some((byte) => byte < 0x20 || byte > 0x7e)) throw new Qcow2Error('CORRUPT', `The LUKS ${what} field holds non-printable bytes`);
  return decoder.decode(text);
}

function writeFixedString(bytes: Uint8Array, position: number, length: number, text: string): void {
  const encoded = encoder.encode(text);
  if (encoded.length >= length) throw new Qcow2Error('INVALID_ARGUMENT', `"${text}" does not fit a ${length}-byte LUKS header field`);
  bytes.set(encoded, position);
}

export function parseLuksHash(text: string, what: string): LuksHash {
  const hash = HASHES.find((name) => name === text);
  if (hash === undefined) throw new Qcow2Error('UNSUPPORTED_FEATURE', `${what} "${text}" is not supported (${HASHES.join(', ')})`);
  return hash;
}

/** "<mode>-<ivgen>[:<hash>]" (QEMU's parse: the hash is checked even where plain/plain64 ignore it). */
export function parseLuksCipherMode(text: string, keyBytes: number): LuksCipher {
  const dash = text.indexOf('-');
  if (dash < 0) throw new Qcow2Error('CORRUPT', `The LUKS cipher mode "${text}" is not of the form mode-ivgenerator`);
  const modeText = text.slice(0, dash);
  const colon = text.indexOf(':', dash + 1);
  const ivText = colon < 0 ? text.slice(dash + 1) : text.slice(dash + 1, colon);
  const mode = MODES.find((name) => name === modeText);
  if (mode === undefined) throw new Qcow2Error('UNSUPPORTED_FEATURE', `The LUKS cipher mode "${modeText}" is not supported (xts, cbc)`);
  const ivGenerator = IV_GENERATORS.find((name) => name === ivText);
  if (ivGenerator === undefined) throw new Qcow2Error('UNSUPPORTED_FEATURE', `The LUKS IV generator "${ivText}" is not supported (plain, plain64, essiv)`);
  const ivHash = colon < 0 ? null : parseLuksHash(text.slice(colon + 1), 'The LUKS IV generator hash');
  if (ivGenerator === 'essiv') {
    if (ivHash === null) throw new Qcow2Error('CORRUPT', `The LUKS cipher mode "${text}" names ESSIV without its hash`);
    if (ivHash !== 'sha256') throw new Qcow2Error('UNSUPPORTED_FEATURE', `ESSIV with ${ivHash} is not supported (only essiv:sha256)`);
  }
  if (!validKeyBytes(mode).includes(keyBytes)) {
    throw new Qcow2Error('CORRUPT', `A ${keyBytes}-byte key does not fit aes-${mode} (${validKeyBytes(mode).join(', ')} bytes)`);
  }
  return { name: 'aes', mode, ivGenerator, ivHash, keyBytes };
}

function checkIterations(iterations: number, what: string): void {
  if (iterations < 1 || iterations > LUKS_MAX_ITERATIONS) {
    throw new Qcow2Error('CORRUPT', `${what} asks for ${iterations} PBKDF2 iterations (1 to ${LUKS_MAX_ITERATIONS} accepted)`);
  }
}

function checkKeyMaterial(slot: LuksKeySlot, index: number, keyBytes: number, payloadOffsetSectors: number, areaLength: number): void {
  if (slot.stripes < 1 || slot.stripes > LUKS_MAX_STRIPES) {
    throw new Qcow2Error('CORRUPT', `LUKS key slot ${index} has ${slot.stripes} anti-forensic stripes (1 to ${LUKS_MAX_STRIPES} accepted)`);
  }
  // Whole 16-byte cipher blocks: a partial block would need ciphertext stealing, which no LUKS writer uses.
  if (slot.active && (keyBytes * slot.stripes) % 16 !== 0) {
    throw new Qcow2Error('UNSUPPORTED_FEATURE', `LUKS key slot ${index}: ${slot.stripes} stripes of a ${keyBytes}-byte key do not fill whole cipher blocks`);
  }
  const start = slot.keyMaterialOffsetSectors * LUKS_SECTOR_BYTES;
  const end = start + keyBytes * slot.stripes;
  if (start < LUKS_PHDR_BYTES || end > areaLength) {
    throw new Qcow2Error('CORRUPT', `LUKS key slot ${index}'s key material (bytes ${start}–${end}) is not inside the ${areaLength}-byte LUKS area after its header`);
  }
  if (slot.keyMaterialOffsetSectors + keyMaterialAlignedSectors(keyBytes, slot.stripes) > payloadOffsetSectors) {
    throw new Qcow2Error('CORRUPT', `LUKS key slot ${index}'s key material overlaps the payload (sector ${payloadOffsetSectors})`);
  }
}

function checkNoOverlap(slots: LuksKeySlot[], keyBytes: number): void {
  for (let first = 0; first < slots.length; first++) {
    for (let second = first + 1; second < slots.length; second++) {
      const a = slots[first] as LuksKeySlot;
      const b = slots[second] as LuksKeySlot;
      const aEnd = a.keyMaterialOffsetSectors + keyMaterialAlignedSectors(keyBytes, a.stripes);
      const bEnd = b.keyMaterialOffsetSectors + keyMaterialAlignedSectors(keyBytes, b.stripes);
      if (a.keyMaterialOffsetSectors < bEnd && b.keyMaterialOffsetSectors < aEnd) {
        throw new Qcow2Error('CORRUPT', `LUKS key slots ${first} and ${second} overlap`);
      }
    }
  }
}
