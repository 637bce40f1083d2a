/**
 * The LUKS2 header as cryptsetup writes it into a guest's encrypted partition (LUKS2 on-disk
 * format, version 1.1.x): two copies, each a 4096-byte binary header followed by its JSON area,
 * checksummed together; the copy with the higher sequence id that checks out is the one in force.
 * Only what opening the data needs is kept: key slots of type luks2 (anti-forensic split key
 * material in a raw area, PBKDF2 or Argon2i/id), the pbkdf2 digest of the volume key, and the one
 * crypt segment holding the data. A volume being re-encrypted, with integrity protection, or with
 * any mandatory requirement Cowbell does not know is refused by name (FILESYSTEM_UNSUPPORTED);
 * broken fields are FILESYSTEM_CORRUPT. Nothing here trusts a number before checking its bounds.
 */
import { Qcow2Error } from '../errors.ts';
import { bytesEqual } from './zeroes.ts';
import { LUKS_MAGIC, parseLuksCipherMode, parseLuksHash, type LuksCipher, type LuksHash } from './luks-header.ts';

export const LUKS2_BINARY_HEADER_BYTES = 4096;
const SECONDARY_MAGIC = Uint8Array.of(0x53, 0x4b, 0x55, 0x4c, 0xba, 0xbe);
/** Header sizes (binary + JSON) the format allows; the secondary copy starts where the primary ends. */
const HEADER_SIZES = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096].map((kib) => kib * 1024);
const AT = { magic: 0, version: 6, headerSize: 8, seqid: 16, label: 24, checksumAlgorithm: 72, uuid: 168, headerOffset: 256, checksum: 448 } as const;
const CHECKSUM_BYTES = 64;

export type Luks2Kdf =
  | { type: 'pbkdf2'; hash: LuksHash; iterations: number; salt: Uint8Array }
  | { type: 'argon2i' | 'argon2id'; time: number; memoryKiB: number; parallel: number; salt: Uint8Array };

export interface Luks2Keyslot {
  id: string;
  /** Bytes of the volume key it holds. */
  keyBytes: number;
  /** 2 high, 1 normal, 0 ignore (tried only when asked for by number: never here). */
  priority: number;
  stripes: number;
  afHash: LuksHash;
  /** Where its key material lies, from the volume's start. */
  areaOffset: number;
  areaBytes: number;
  areaCipher: LuksCipher;
  kdf: Luks2Kdf;
}

export interface Luks2Digest {
  keyslots: string[];
  hash: LuksHash;
  iterations: number;
  salt: Uint8Array;
  digest: Uint8Array;
}

export interface Luks2Segment {
  /** Where the encrypted data starts, from the volume's start. */
  offset: number;
  /** Its length, or null for "dynamic" (to the volume's end). */
  bytes: number | null;
  /** Added to every sector number (in sectorBytes units). */
  ivTweak: number;
  cipher: LuksCipher;
  sectorBytes: number;
}

export interface Luks2Header {
  uuid: string;
  label: string;
  seqid: number;
  keyslots: Luks2Keyslot[];
  /** The digest that vouches for the data segment's volume key. */
  digest: Luks2Digest;
  segment: Luks2Segment;
}

/** Whether the volume starts with a LUKS header of version 2 (the version field after the magic). */
export function isLuks2(start: Uint8Array): boolean {
  return start.length >= 8 && bytesEqual(start.subarray(0, 6), LUKS_MAGIC) && start[6] === 0 && start[7] === 2;
}

/**
 * Parses the header from `readAt` (bytes of the volume), `volumeBytes` long: the primary copy at
 * 0 and the secondary where the primary says (or, the primary broken, at each place the format
 * allows); the valid copy with the highest sequence id.
 */
export async function readLuks2Header(readAt: (offset: number, length: number) => Promise<Uint8Array>, volumeBytes: number): Promise<Luks2Header> {
  const failures: string[] = [];
  const copies: Luks2Header[] = [];
  const tryCopy = async (offset: number, magic: Uint8Array): Promise<number | null> => {
    if (offset + LUKS2_BINARY_HEADER_BYTES > volumeBytes) return null;
    const binary = await readAt(offset, LUKS2_BINARY_HEADER_BYTES);
    if (!bytesEqual(binary.subarray(0, 6), magic)) return null;
    try {
      const headerSize = binaryHeaderSize(binary);
      if (offset + headerSize > volumeBytes) throw corrupt(`its ${headerSize}-byte header runs past the volume's end`);
      const whole = new Uint8Array(headerSize);
      whole.set(binary);
      whole.set(await readAt(offset + LUKS2_BINARY_HEADER_BYTES, headerSize - LUKS2_BINARY_HEADER_BYTES), LUKS2_BINARY_HEADER_BYTES);
      copies.push(parseCopy(whole, offset, volumeBytes));
      return headerSize;
    } catch (error) {
      if (!(error instanceof Qcow2Error) || !error.code.startsWith('FILESYSTEM_')) throw error;
      failures.push(`${offset === 0 ? 'primary' : 'secondary'} copy: ${error.message}`);
      return null;
    }
  };
  const primarySize = await tryCopy(0, LUKS_MAGIC);
  if (primarySize !== null) await tryCopy(primarySize, SECONDARY_MAGIC);
  else for (const size of HEADER_SIZES) if ((await tryCopy(size, SECONDARY_MAGIC)) !== null) break;
  const newest = copies.reduce<Luks2Header | null>((best, copy) => (best === null || copy.seqid > best.seqid ? copy : best), null);
  if (newest === null) throw corrupt(failures.length === 0 ? 'no copy of the header is readable' : failures.join('; '));
  return newest;
}

function binaryHeaderSize(binary: Uint8Array): number {
  const fields = new DataView(binary.buffer, binary.byteOffset, binary.length);
  const version = fields.getUint16(AT.version);
  if (version !== 2) throw corrupt(`version ${version} where 2 was expected`);
  const size = u64(fields, AT.headerSize, 'header size');
  if (!HEADER_SIZES.includes(size)) throw corrupt(`a header size of ${size} bytes, which the format does not allow`);
  return size;
}

function parseCopy(whole: Uint8Array, offset: number, volumeBytes: number): Luks2Header {
  const fields = new DataView(whole.buffer, whole.byteOffset, whole.length);
  if (u64(fields, AT.headerOffset, 'header offset') !== offset) throw corrupt(`the copy at ${offset} says it lies elsewhere`);
  checkChecksum(whole);
  const uuid = text(whole, AT.uuid, 40, 'UUID');
  const label = text(whole, AT.label, 48, 'label');
  const seqid = u64(fields, AT.seqid, 'sequence id');
  const jsonBytes = whole.subarray(LUKS2_BINARY_HEADER_BYTES);
  const end = jsonBytes.indexOf(0);
  let metadata: unknown;
  try {
    metadata = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(end < 0 ? jsonBytes : jsonBytes.subarray(0, end)));
  } catch {
    throw corrupt('its JSON metadata does not parse');
  }
  return { uuid, label, seqid, ...parseMetadata(metadata, whole.length, volumeBytes) };
}

/** The checksum field covers the whole header (binary and JSON) with itself zeroed. */
function checkChecksum(whole: Uint8Array): void {
  const algorithm = text(whole, AT.checksumAlgorithm, 32, 'checksum algorithm');
  if (!['sha1', 'sha256', 'sha512'].includes(algorithm)) throw unsupported(`The LUKS2 header is checksummed by "${algorithm}", which Cowbell does not implement`);
  const stored = whole.slice(AT.checksum, AT.checksum + CHECKSUM_BYTES);
  const zeroed = whole.slice();
  zeroed.fill(0, AT.checksum, AT.checksum + CHECKSUM_BYTES);
  // node:crypto loaded here, when a guest's LUKS2 volume is met (format/ imports no crypto module).
  const computed = process.getBuiltinModule('node:crypto').createHash(algorithm).update(zeroed).digest();
  if (!bytesEqual(stored.subarray(0, computed.length), computed)) throw corrupt('its checksum does not match (the header is damaged)');
}

function parseMetadata(metadata: unknown, headerSize: number, volumeBytes: number): Omit<Luks2Header, 'uuid' | 'label' | 'seqid'> {
  const root = object(metadata, 'the metadata');
  const config = object(root.config, 'config');
  const requirements = config.requirements === undefined ? [] : array(object(config.requirements, 'config.requirements').mandatory ?? [], 'config.requirements.mandatory');
  if (requirements.length > 0) {
    const names = requirements.map((entry) => (typeof entry === 'string' ? entry : '?')).join(', ');
    throw unsupported(names.includes('reencrypt') ? `This LUKS2 volume is being re-encrypted (${names}): let the guest finish that first` : `This LUKS2 volume requires ${names}, which Cowbell does not implement`);
  }
  const keyslotsEnd = 2 * headerSize + numberText(config.keyslots_size, 'config.keyslots_size');
  const segments = Object.entries(object(root.segments, 'segments'));
  if (segments.length !== 1) throw unsupported(`This LUKS2 volume has ${segments.length} data segments (mid-way through re-encryption?); Cowbell reads one`);
  const [segmentId, segmentValue] = segments[0] as [string, unknown];
  const segment = parseSegment(object(segmentValue, `segment ${segmentId}`), segmentId, keyslotsEnd, volumeBytes);
  const keyslots = Object.entries(object(root.keyslots, 'keyslots')).flatMap(([id, value]) => {
    const keyslot = object(value, `key slot ${id}`);
    // Other key slot types (reencrypt) hold no passphrase-protected volume key.
    return keyslot.type === 'luks2' ? [parseKeyslot(keyslot, id, headerSize, keyslotsEnd)] : [];
  });
  const digests = Object.entries(object(root.digests, 'digests')).map(([id, value]) => ({ id, value: object(value, `digest ${id}`) }));
  const forSegment = digests.find(({ value }) => array(value.segments, 'digest segments').includes(segmentId));
  if (forSegment === undefined) throw corrupt(`no digest vouches for data segment ${segmentId}`);
  return { keyslots, digest: parseDigest(forSegment.value, forSegment.id), segment };
}

function parseSegment(segment: Record<string, unknown>, id: string, keyslotsEnd: number, volumeBytes: number): Luks2Segment {
  if (segment.type !== 'crypt') throw unsupported(`This LUKS2 volume's data segment is of type "${String(segment.type)}", which Cowbell does not read`);
  if (segment.integrity !== undefined) throw unsupported('This LUKS2 volume has integrity protection (dm-integrity), which Cowbell does not read');
  const offset = numberText(segment.offset, `segment ${id} offset`);
  const bytes = segment.size === 'dynamic' ? null : numberText(segment.size, `segment ${id} size`);
  const sectorBytes = integer(segment.sector_size, `segment ${id} sector_size`);
  if (![512, 1024, 2048, 4096].includes(sectorBytes)) throw corrupt(`data segment ${id} has ${sectorBytes}-byte sectors`);
  if (offset < keyslotsEnd || offset % sectorBytes !== 0 || offset > volumeBytes) throw corrupt(`data segment ${id} starts at ${offset}, not after the key slots (${keyslotsEnd}) on a sector boundary inside the volume`);
  if (bytes !== null && (bytes % sectorBytes !== 0 || offset + bytes > volumeBytes)) throw corrupt(`data segment ${id} (${bytes} bytes from ${offset}) does not fit the ${volumeBytes}-byte volume in whole sectors`);
  return { offset, bytes, ivTweak: numberText(segment.iv_tweak, `segment ${id} iv_tweak`), cipher: cipherOf(segment.encryption, null, `segment ${id}`), sectorBytes };
}

function parseKeyslot(keyslot: Record<string, unknown>, id: string, headerSize: number, keyslotsEnd: number): Luks2Keyslot {
  const keyBytes = integer(keyslot.key_size, `key slot ${id} key_size`);
  const af = object(keyslot.af, `key slot ${id} af`);
  const area = object(keyslot.area, `key slot ${id} area`);
  if (af.type !== 'luks1') throw unsupported(`LUKS2 key slot ${id} uses the anti-forensic splitter "${String(af.type)}", which Cowbell does not implement`);
  if (area.type !== 'raw') throw unsupported(`LUKS2 key slot ${id} keeps its key in an area of type "${String(area.type)}", which Cowbell does not read`);
  const stripes = integer(af.stripes, `key slot ${id} stripes`);
  if (stripes < 1 || stripes > 65536 || keyBytes < 16 || keyBytes > 64) throw corrupt(`key slot ${id} splits a ${keyBytes}-byte key into ${stripes} stripes`);
  const areaOffset = numberText(area.offset, `key slot ${id} area offset`);
  const areaBytes = numberText(area.size, `key slot ${id} area size`);
  const areaCipher = cipherOf(area.encryption, integer(area.key_size, `key slot ${id} area key_size`), `key slot ${id}`);
  if (areaOffset < 2 * headerSize || areaOffset + areaBytes > keyslotsEnd || areaBytes < keyBytes * stripes) throw corrupt(`key slot ${id}'s area (${areaBytes} bytes at ${areaOffset}) is not inside the key slots area or too small for its key`);
  const priority = keyslot.priority === undefined ? 1 : integer(keyslot.priority, `key slot ${id} priority`);
  return { id, keyBytes, priority, stripes, afHash: hashOf(string(af.hash, `key slot ${id} af hash`), `Key slot ${id}'s splitter hash`), areaOffset, areaBytes, areaCipher, kdf: parseKdf(object(keyslot.kdf, `key slot ${id} kdf`), id) };
}

function parseKdf(kdf: Record<string, unknown>, id: string): Luks2Kdf {
  const salt = base64(kdf.salt, `key slot ${id} salt`);
  if (kdf.type === 'pbkdf2') {
    const iterations = integer(kdf.iterations, `key slot ${id} iterations`);
    if (iterations < 1 || iterations > 2 ** 31) throw corrupt(`key slot ${id} has ${iterations} PBKDF2 iterations`);
    return { type: 'pbkdf2', hash: hashOf(string(kdf.hash, `key slot ${id} hash`), `Key slot ${id}'s PBKDF2 hash`), iterations, salt };
  }
  if (kdf.type === 'argon2i' || kdf.type === 'argon2id') {
    // Argon2 takes a salt of 8 bytes or more (cryptsetup writes 32).
    if (salt.length < 8) throw corrupt(`key slot ${id}'s Argon2 salt is ${salt.length} bytes long`);
    return { type: kdf.type, time: integer(kdf.time, `key slot ${id} time`), memoryKiB: integer(kdf.memory, `key slot ${id} memory`), parallel: integer(kdf.cpus, `key slot ${id} cpus`), salt };
  }
  throw unsupported(`LUKS2 key slot ${id} derives its key by "${String(kdf.type)}", which Cowbell does not implement`);
}

function parseDigest(digest: Record<string, unknown>, id: string): Luks2Digest {
  if (digest.type !== 'pbkdf2') throw unsupported(`LUKS2 digest ${id} is of type "${String(digest.type)}", which Cowbell does not implement`);
  const iterations = integer(digest.iterations, `digest ${id} iterations`);
  if (iterations < 1 || iterations > 2 ** 31) throw corrupt(`digest ${id} has ${iterations} iterations`);
  const value = base64(digest.digest, `digest ${id}`);
  if (value.length < 16 || value.length > 64) throw corrupt(`digest ${id} is ${value.length} bytes long`);
  return {
    keyslots: array(digest.keyslots, `digest ${id} keyslots`).map((slot) => string(slot, `digest ${id} keyslot`)),
    hash: hashOf(string(digest.hash, `digest ${id} hash`), `Digest ${id}'s hash`),
    iterations,
    salt: base64(digest.salt, `digest ${id} salt`),
    digest: value,
  };
}

/** "aes-xts-plain64" and its key size in bytes (a segment's comes from its key slots: null). */
function cipherOf(value: unknown, keyBytes: number | null, what: string): LuksCipher {
  const spec = string(value, `${what} encryption`);
  const dash = spec.indexOf('-');
  const name = dash < 0 ? spec : spec.slice(0, dash);
  if (name !== 'aes') throw unsupported(`LUKS2 ${what} uses the cipher "${spec}", which Cowbell does not implement (only aes)`);
  try {
    // The segment's key length is the key slots' (checked when one opens); 64 stands in for the parse.
    return parseLuksCipherMode(spec.slice(dash + 1), keyBytes ?? (spec.includes('-xts-') ? 64 : 32));
  } catch (error) {
    if (error instanceof Qcow2Error) throw new Qcow2Error(error.code === 'CORRUPT' ? 'FILESYSTEM_CORRUPT' : 'FILESYSTEM_UNSUPPORTED', `LUKS2 ${what}: ${error.message}`);
    throw error;
  }
}

/** A hash name the engine implements, else FILESYSTEM_UNSUPPORTED naming it. */
function hashOf(text: string, what: string): LuksHash {
  try {
    return parseLuksHash(text, what);
  } catch (error) {
    if (error instanceof Qcow2Error) throw new Qcow2Error('FILESYSTEM_UNSUPPORTED', error.message);
    throw error;
  }
}

function object(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw corrupt(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

function array(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) throw corrupt(`${what} is not a JSON array`);
  return value;
}

function string(value: unknown, what: string): string {
  if (typeof value !== 'string') throw corrupt(`${what} is not a string`);
  return value;
}

function integer(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw corrupt(`${what} is not a whole number`);
  return value;
}

/** The format writes 64-bit numbers as decimal strings. */
function numberText(value: unknown, what: string): number {
  const digits = string(value, what);
  const parsed = /^\d{1,16}$/.test(digits) ? Number(digits) : Number.NaN;
  if (!Number.isSafeInteger(parsed)) throw corrupt(`${what} "${digits.slice(0, 40)}" is not a number Cowbell can hold`);
  return parsed;
}

function base64(value: unknown, what: string): Uint8Array {
  const encoded = string(value, what);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(encoded) || encoded.length > 1024) throw corrupt(`${what} is not base64`);
  return new Uint8Array(Buffer.from(encoded, 'base64'));
}

function u64(fields: DataView, position: number, what: string): number {
  const value = fields.getBigUint64(position);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`its ${what} is out of range`);
  return Number(value);
}

function text(bytes: Uint8Array, position: number, length: number, what: string): string {
  const field = bytes.subarray(position, position + length);
  const end = field.indexOf(0);
  const value = field.subarray(0, end < 0 ? length : end);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(value);
  } catch {
    throw corrupt(`its ${what} is not text`);
  }
}

function corrupt(what: string): Qcow2Error {
  return new Qcow2Error('FILESYSTEM_CORRUPT', `The LUKS2 header is damaged: ${what}`);
}

function unsupported(sentence: string): Qcow2Error {
  return new Qcow2Error('FILESYSTEM_UNSUPPORTED', sentence);
}
