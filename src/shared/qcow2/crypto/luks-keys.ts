/**
 * LUKS1 key slots (LUKS1 spec §2.4–2.6; QEMU crypto/block-luks.c): unlocking the master key with a
 * passphrase, laying out a new LUKS area as QEMU 7.2 does, adding a key slot and erasing one.
 * A slot holds the master key AF-split into 4000 stripes (af-splitter.ts) and encrypted with the
 * header's cipher under PBKDF2(passphrase, slot salt), sectors numbered from 0 within the material;
 * PBKDF2(master key, digest salt) must equal the header's 20-byte digest. Changes come back as
 * writes into the area (luks-area.ts applies them): material before the header that activates it,
 * the header that disables a slot before its material is overwritten.
 * Key buffers this module owns are zeroed when done; the master key it returns is the caller's.
 */
import { isUtf8 } from 'node:buffer';
import { nodeCrypto } from './node-crypto.ts';
import { Qcow2Error } from '../errors.ts';
import {
  keyMaterialAlignedSectors,
  keyMaterialBytes,
  LUKS_ALIGN_SECTORS,
  LUKS_DIGEST_BYTES,
  LUKS_KEY_SLOT_COUNT,
  LUKS_PHDR_BYTES,
  LUKS_SALT_BYTES,
  LUKS_SECTOR_BYTES,
  LUKS_STRIPES,
  describeLuksCipher,
  parseLuksHeader,
  serializeLuksHeader,
  type LuksCipher,
  type LuksCipherMode,
  type LuksHash,
  type LuksHeader,
  type LuksIvGenerator,
  type LuksKeySlot,
} from '../format/luks-header.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import { afMerge, afSplit } from './af-splitter.ts';
import type { LuksAreaReader, LuksAreaWrite } from './luks-area.ts';
import { DEFAULT_ITER_TIME_MS, iterationsForTime, pbkdf2 } from './pbkdf2.ts';
import { createSectorCipher } from './sector-cipher.ts';

/** A passphrase as text (used as UTF-8, as QEMU's secrets are) or bytes. */
export type Passphrase = string | Uint8Array;

/** QEMU overwrites an erased slot's key material this many times (QCRYPTO_BLOCK_LUKS_ERASE_ITERATIONS). */
export const LUKS_ERASE_PASSES = 40;

export interface LuksUnlock {
  masterKey: Uint8Array;
  /** The first key slot the passphrase opened. */
  slot: number;
}

export interface LuksCipherChoice {
  aesKeyBits: 128 | 192 | 256;
  mode: LuksCipherMode;
  ivGenerator: LuksIvGenerator;
  /** ESSIV's hash (sha256, the default for essiv); null otherwise. */
  ivHash?: LuksHash | null;
}

/** QEMU's default: aes-256-xts-plain64. */
export const DEFAULT_LUKS_CIPHER: LuksCipherChoice = { aesKeyBits: 256, mode: 'xts', ivGenerator: 'plain64' };

export interface KeySlotIterations {
  /** PBKDF2 iterations for the passphrase; when absent, measured to take `iterTimeMs` here (QEMU's way). */
  iterations?: number;
  /** Default 2000 ms, as QEMU. */
  iterTimeMs?: number;
  /** Checked for a cancel between PBKDF2 runs (one run cannot be interrupted). */
  job?: JobContext;
}

export interface CreateLuksOptions extends KeySlotIterations {
  cipher?: LuksCipherChoice;
  /** PBKDF2 and splitter hash; sha256 by default. */
  hash?: LuksHash;
  /** Master key digest iterations; when absent, an eighth of `iterTimeMs`'s worth, at least 1000 (QEMU). */
  digestIterations?: number;
  uuid?: string;
}

export interface NewLuksArea {
  header: LuksHeader;
  /** The whole LUKS area, header.payloadOffsetSectors × 512 bytes: the header, slot 0's key material, zeros elsewhere. */
  area: Uint8Array;
  masterKey: Uint8Array;
}

export interface LuksKeySlotChange {
  header: LuksHeader;
  slot: number;
  /** To apply in order (applyLuksAreaWrites); an erase draws a fresh random pass per write. */
  writes: Iterable<LuksAreaWrite>;
}

const encoder = new TextEncoder();

/**
 * The master key from the first active slot `passphrase` opens; BAD_PASSPHRASE if none does.
 * Each active slot costs one PBKDF2 run of its iterations (seconds at QEMU's defaults).
 */
export function unlockLuks(header: LuksHeader, readArea: LuksAreaReader, passphrase: Passphrase, job: JobContext = silentJob): LuksUnlock {
  const secret = passphraseBytes(passphrase);
  try {
    const active = activeSlots(header);
    for (const [done, slot] of active.entries()) {
      job.throwIfCancelled();
      job.progress('Trying key slots', done, active.length, 'steps');
      const masterKey = openKeySlot(header, header.keySlots[slot] as LuksKeySlot, readArea, secret);
      if (masterKey !== null) return { masterKey, slot };
    }
    throw new Qcow2Error('BAD_PASSPHRASE', active.length === 0 ? 'The image has no active key slot: no passphrase can open it' : 'The passphrase opens none of the image\'s key slots');
  } finally {
    secret.fill(0);
  }
}

/** Every active slot `passphrase` opens (to erase a passphrase wherever it is, as qemu-img amend's old-secret does). */
export function luksSlotsOpenedBy(header: LuksHeader, readArea: LuksAreaReader, passphrase: Passphrase, job: JobContext = silentJob): number[] {
  const secret = passphraseBytes(passphrase);
  try {
    return activeSlots(header).filter((slot) => {
      job.throwIfCancelled();
      const masterKey = openKeySlot(header, header.keySlots[slot] as LuksKeySlot, readArea, secret);
      masterKey?.fill(0);
      return masterKey !== null;
    });
  } finally {
    secret.fill(0);
  }
}

/** Whether `candidate` is this header's master key (its PBKDF2 digest matches). */
export function masterKeyMatches(header: LuksHeader, candidate: Uint8Array): boolean {
  if (candidate.length !== header.cipher.keyBytes) return false;
  const digest = pbkdf2(header.hash, candidate, header.masterKeyDigestSalt, header.masterKeyDigestIterations, LUKS_DIGEST_BYTES);
  const matches = nodeCrypto().timingSafeEqual(digest, header.masterKeyDigest);
  digest.fill(0);
  return matches;
}

/** The length of the LUKS area createLuks makes for `choice` (header and eight slots' key material). */
export function newLuksAreaBytes(choice: LuksCipherChoice = DEFAULT_LUKS_CIPHER): number {
  const cipher = luksCipher(choice);
  return (LUKS_ALIGN_SECTORS + LUKS_KEY_SLOT_COUNT * keyMaterialAlignedSectors(cipher.keyBytes, LUKS_STRIPES)) * LUKS_SECTOR_BYTES;
}

/**
 * A new LUKS area for `passphrase` with a random master key, laid out as QEMU 7.2 lays it out
 * (header, then eight slots of 4000-stripe key material on 4096-byte boundaries; the payload
 * offset is the area's length), with slot 0 active.
 */
export function createLuks(passphrase: Passphrase, options: CreateLuksOptions = {}): NewLuksArea {
  refuseUnusableInQemu(passphrase);
  const job = options.job ?? silentJob;
  const cipher = luksCipher(options.cipher ?? DEFAULT_LUKS_CIPHER);
  const hash = options.hash ?? 'sha256';
  const iterTimeMs = options.iterTimeMs ?? DEFAULT_ITER_TIME_MS;
  const masterKey = new Uint8Array(nodeCrypto().randomBytes(cipher.keyBytes));
  const masterKeyDigestSalt = new Uint8Array(nodeCrypto().randomBytes(LUKS_SALT_BYTES));
  const masterKeyDigestIterations = options.digestIterations ?? iterationsForTime(hash, LUKS_DIGEST_BYTES, iterTimeMs, 8);
  job.throwIfCancelled();
  const masterKeyDigest = pbkdf2(hash, masterKey, masterKeyDigestSalt, masterKeyDigestIterations, LUKS_DIGEST_BYTES);
  const slotSectors = keyMaterialAlignedSectors(cipher.keyBytes, LUKS_STRIPES);
  const keySlots: LuksKeySlot[] = Array.from({ length: LUKS_KEY_SLOT_COUNT }, (_, index) => ({
    active: false,
    iterations: 0,
    salt: new Uint8Array(LUKS_SALT_BYTES),
    keyMaterialOffsetSectors: LUKS_ALIGN_SECTORS + index * slotSectors,
    stripes: LUKS_STRIPES,
  }));
  const payloadOffsetSectors = LUKS_ALIGN_SECTORS + LUKS_KEY_SLOT_COUNT * slotSectors;
  const blank: LuksHeader = { cipher, hash, payloadOffsetSectors, masterKeyDigest, masterKeyDigestSalt, masterKeyDigestIterations, uuid: options.uuid ?? nodeCrypto().randomUUID(), keySlots };
  const area = new Uint8Array(payloadOffsetSectors * LUKS_SECTOR_BYTES);
  const change = storeKeySlot(blank, 0, masterKey, passphrase, options);
  for (const write of change.writes) area.set(write.bytes, write.offsetInArea);
  // Never hand out a header this engine (and so QEMU's checks, which ours include) would refuse.
  parseLuksHeader(area.subarray(0, LUKS_PHDR_BYTES), area.length);
  return { header: change.header, area, masterKey };
}

/**
 * Stores `masterKey` (checked against the header's digest) under `passphrase` in the first free
 * slot, or `slot` if given and free; QEMU 7.2's amend does the same.
 */
export function addLuksKeySlot(header: LuksHeader, masterKey: Uint8Array, passphrase: Passphrase, options: KeySlotIterations & { slot?: number } = {}): LuksKeySlotChange {
  if (!masterKeyMatches(header, masterKey)) throw new Qcow2Error('INVALID_ARGUMENT', 'That is not this image\'s master key (its digest does not match)');
  let slot = options.slot;
  if (slot === undefined) {
    slot = header.keySlots.findIndex((candidate) => !candidate.active);
    if (slot < 0) throw new Qcow2Error('INVALID_ARGUMENT', `All ${LUKS_KEY_SLOT_COUNT} key slots are in use: erase one first`);
  } else if (!Number.isInteger(slot) || slot < 0 || slot >= LUKS_KEY_SLOT_COUNT) {
    throw new Qcow2Error('INVALID_ARGUMENT', `Key slot ${slot} does not exist (0 to ${LUKS_KEY_SLOT_COUNT - 1})`);
  } else if ((header.keySlots[slot] as LuksKeySlot).active) {
    throw new Qcow2Error('INVALID_ARGUMENT', `Key slot ${slot} is in use: erase it first`);
  }
  return storeKeySlot(header, slot, masterKey, passphrase, options);
}

/**
 * Disables `slot` and overwrites its key material with random bytes `passes` times (QEMU: 40),
 * header first. Refuses a slot already erased and the last active slot (that would lock the image
 * for good).
 */
export function eraseLuksKeySlot(header: LuksHeader, slot: number, passes = LUKS_ERASE_PASSES): LuksKeySlotChange {
  const target = header.keySlots[slot];
  if (!Number.isInteger(slot) || target === undefined) throw new Qcow2Error('INVALID_ARGUMENT', `Key slot ${slot} does not exist (0 to ${LUKS_KEY_SLOT_COUNT - 1})`);
  if (!target.active) throw new Qcow2Error('INVALID_ARGUMENT', `Key slot ${slot} is already erased`);
  if (activeSlots(header).length === 1) throw new Qcow2Error('INVALID_ARGUMENT', `Key slot ${slot} is the last active one: erasing it would lock the image for good`);
  if (!Number.isInteger(passes) || passes < 1) throw new Qcow2Error('INVALID_ARGUMENT', `An erase needs at least one pass, not ${passes}`);
  const erased: LuksKeySlot = { ...target, active: false, iterations: 0, salt: new Uint8Array(LUKS_SALT_BYTES) };
  const updated = withSlot(header, slot, erased);
  const materialOffset = target.keyMaterialOffsetSectors * LUKS_SECTOR_BYTES;
  const materialLength = keyMaterialBytes(header, target);
  function* writes(): Generator<LuksAreaWrite> {
    yield { offsetInArea: 0, bytes: serializeLuksHeader(updated), flushAfter: true };
    const garbage = new Uint8Array(materialLength);
    for (let pass = 0; pass < passes; pass++) {
      nodeCrypto().randomFillSync(garbage);
      yield { offsetInArea: materialOffset, bytes: garbage, flushAfter: true };
    }
  }
  return { header: updated, slot, writes: writes() };
}

function storeKeySlot(header: LuksHeader, slot: number, masterKey: Uint8Array, passphrase: Passphrase, options: KeySlotIterations): LuksKeySlotChange {
  const job = options.job ?? silentJob;
  const target = header.keySlots[slot] as LuksKeySlot;
  const { keyBytes } = header.cipher;
  if ((keyBytes * target.stripes) % 16 !== 0) {
    throw new Qcow2Error('UNSUPPORTED_FEATURE', `Key slot ${slot}: ${target.stripes} stripes of a ${keyBytes}-byte key do not fill whole cipher blocks`);
  }
  refuseUnusableInQemu(passphrase);
  const secret = passphraseBytes(passphrase);
  const salt = new Uint8Array(nodeCrypto().randomBytes(LUKS_SALT_BYTES));
  let slotKey: Uint8Array | null = null;
  let material: Uint8Array | null = null;
  try {
    const iterations = options.iterations ?? iterationsForTime(header.hash, keyBytes, options.iterTimeMs ?? DEFAULT_ITER_TIME_MS);
    job.throwIfCancelled();
    slotKey = pbkdf2(header.hash, secret, salt, iterations, keyBytes);
    material = afSplit(masterKey, target.stripes, header.hash);
    const encrypted = cryptKeyMaterial(header.cipher, slotKey, material, 'encrypt');
    const updated = withSlot(header, slot, { ...target, active: true, iterations, salt });
    const writes: LuksAreaWrite[] = [
      { offsetInArea: target.keyMaterialOffsetSectors * LUKS_SECTOR_BYTES, bytes: encrypted, flushAfter: true },
      { offsetInArea: 0, bytes: serializeLuksHeader(updated), flushAfter: true },
    ];
    return { header: updated, slot, writes };
  } finally {
    secret.fill(0);
    slotKey?.fill(0);
    material?.fill(0);
  }
}

/** The master key if `secret` opens `slot`, else null. */
function openKeySlot(header: LuksHeader, slot: LuksKeySlot, readArea: LuksAreaReader, secret: Uint8Array): Uint8Array | null {
  const { keyBytes } = header.cipher;
  const slotKey = pbkdf2(header.hash, secret, slot.salt, slot.iterations, keyBytes);
  const stored = readArea(slot.keyMaterialOffsetSectors * LUKS_SECTOR_BYTES, keyMaterialBytes(header, slot));
  const material = cryptKeyMaterial(header.cipher, slotKey, stored, 'decrypt');
  slotKey.fill(0);
  const candidate = afMerge(material, keyBytes, slot.stripes, header.hash);
  material.fill(0);
  if (masterKeyMatches(header, candidate)) return candidate;
  candidate.fill(0);
  return null;
}

/**
 * Key material through the header's cipher, sectors numbered from 0. Material that ends inside a
 * sector is padded to whole sectors (cryptsetup's layout); the prefix of a sector encrypts the
 * same either way in XTS and CBC, so the first material.length bytes are what QEMU computes.
 */
function cryptKeyMaterial(cipher: LuksCipher, key: Uint8Array, material: Uint8Array, direction: 'encrypt' | 'decrypt'): Uint8Array {
  const padded = new Uint8Array(Math.ceil(material.length / LUKS_SECTOR_BYTES) * LUKS_SECTOR_BYTES);
  padded.set(material);
  const sectors = createSectorCipher(cipher, key);
  if (direction === 'encrypt') sectors.encryptSectors(padded, 0);
  else sectors.decryptSectors(padded, 0);
  sectors.close();
  return padded.subarray(0, material.length);
}

function luksCipher(choice: LuksCipherChoice): LuksCipher {
  const aesBytes = choice.aesKeyBits / 8;
  const keyBytes = choice.mode === 'xts' ? aesBytes * 2 : aesBytes;
  const ivHash = choice.ivGenerator === 'essiv' ? (choice.ivHash ?? 'sha256') : (choice.ivHash ?? null);
  const cipher: LuksCipher = { name: 'aes', mode: choice.mode, ivGenerator: choice.ivGenerator, ivHash, keyBytes };
  // QEMU 7.2 encrypts key material in whole sectors and aborts on aes-192-cbc's 96000 bytes.
  if ((keyBytes * LUKS_STRIPES) % LUKS_SECTOR_BYTES !== 0) {
    throw new Qcow2Error('UNSUPPORTED_FEATURE', `${describeLuksCipher(cipher)}: QEMU cannot open LUKS images whose key material (${keyBytes} × ${LUKS_STRIPES} bytes) is not whole sectors`);
  }
  // The sector cipher refuses what it cannot do (another mode, ESSIV with another hash).
  createSectorCipher(cipher, new Uint8Array(keyBytes)).close();
  return cipher;
}

function activeSlots(header: LuksHeader): number[] {
  return header.keySlots.flatMap((slot, index) => (slot.active ? [index] : []));
}

function withSlot(header: LuksHeader, index: number, slot: LuksKeySlot): LuksHeader {
  return { ...header, keySlots: header.keySlots.map((existing, position) => (position === index ? slot : existing)) };
}

/**
 * A new key slot's passphrase must be one QEMU can give: it reads a secret as UTF-8 text and
 * refuses one that is not valid UTF-8 or holds a NUL byte (glib's g_utf8_validate), so a slot
 * under any other could only ever be opened by Cowbell. A string with a lone surrogate half would
 * be stored as U+FFFD's bytes, which no one could type.
 */
function refuseUnusableInQemu(passphrase: Passphrase): void {
  const usable = typeof passphrase === 'string' ? !/[\uD800-\uDFFF]/u.test(passphrase) && !passphrase.includes('\0') : isUtf8(passphrase) && !passphrase.includes(0);
  if (!usable) {
    throw new Qcow2Error('INVALID_ARGUMENT', 'QEMU reads a passphrase as UTF-8 text without NUL characters, and this one is not: QEMU could never open the disk with it. Choose another (nothing was changed)');
  }
}

/** Our own copy, zeroed when done: never the caller's bytes (Buffer#slice would be a view of them). */
function passphraseBytes(passphrase: Passphrase): Uint8Array {
  return typeof passphrase === 'string' ? encoder.encode(passphrase) : new Uint8Array(passphrase);
}
