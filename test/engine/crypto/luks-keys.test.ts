import { describe, expect, it } from 'vitest';
import type { LuksAreaReader } from '../../../src/shared/qcow2/crypto/luks-area.ts';
import {
  addLuksKeySlot,
  createLuks,
  eraseLuksKeySlot,
  luksSlotsOpenedBy,
  masterKeyMatches,
  unlockLuks,
  type LuksCipherChoice,
} from '../../../src/shared/qcow2/crypto/luks-keys.ts';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { LUKS_PHDR_BYTES, parseLuksHeader, type LuksHeader } from '../../../src/shared/qcow2/format/luks-header.ts';
import type { JobContext } from '../../../src/shared/qcow2/job-context.ts';

/** Small counts keep these unit tests fast; the iter-time path has its own test. */
const FAST = { iterations: 1000, digestIterations: 1000 };

function codeOf(action: () => unknown): string | undefined {
  try {
    action();
  } catch (error) {
    return error instanceof Qcow2Error ? error.code : `untyped: ${String(error)}`;
  }
  return undefined;
}

/** An area in memory, with the writes of key-slot changes applied to it. */
class MemoryArea {
  readonly bytes: Uint8Array;
  header: LuksHeader;

  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
    this.header = parseLuksHeader(bytes.subarray(0, LUKS_PHDR_BYTES), bytes.length);
  }

  readonly read: LuksAreaReader = (offset, length) => this.bytes.slice(offset, offset + length);

  apply(change: { header: LuksHeader; writes: Iterable<{ offsetInArea: number; bytes: Uint8Array }> }): void {
    for (const write of change.writes) this.bytes.set(write.bytes, write.offsetInArea);
    this.header = parseLuksHeader(this.bytes.subarray(0, LUKS_PHDR_BYTES), this.bytes.length);
    expect(this.header).toEqual(change.header);
  }
}

const CHOICES: LuksCipherChoice[] = [];
for (const aesKeyBits of [128, 192, 256] as const) {
  for (const mode of ['xts', 'cbc'] as const) {
    for (const ivGenerator of ['plain', 'plain64', 'essiv'] as const) if (!(aesKeyBits === 192 && mode === 'cbc')) CHOICES.push({ aesKeyBits, mode, ivGenerator });
  }
}

describe('LUKS key slots', () => {
  it.each(CHOICES.map((choice) => [`aes-${choice.aesKeyBits}-${choice.mode}-${choice.ivGenerator}`, choice] as const))(
    'a new %s area unlocks with its passphrase into its master key, and not with another',
    (_label, cipher) => {
      const created = createLuks('correct horse', { ...FAST, cipher, hash: cipher.mode === 'cbc' ? 'sha512' : 'sha256' });
      const area = new MemoryArea(created.area);
      expect(area.header).toEqual(created.header);
      expect(created.area.length).toBe(created.header.payloadOffsetSectors * 512);
      const unlocked = unlockLuks(area.header, area.read, 'correct horse');
      expect(unlocked.slot).toBe(0);
      expect(unlocked.masterKey).toEqual(created.masterKey);
      expect(codeOf(() => unlockLuks(area.header, area.read, 'correct horse!'))).toBe('BAD_PASSPHRASE');
    },
  );

  it('refuses aes-192-cbc, whose key material QEMU 7.2 cannot read (not whole sectors)', () => {
    expect(codeOf(() => createLuks('x', { ...FAST, cipher: { aesKeyBits: 192, mode: 'cbc', ivGenerator: 'plain64' } }))).toBe('UNSUPPORTED_FEATURE');
    expect(codeOf(() => createLuks('x', { ...FAST, cipher: { aesKeyBits: 256, mode: 'xts', ivGenerator: 'essiv', ivHash: 'sha1' } }))).toBe('UNSUPPORTED_FEATURE');
  });

  it('adds slots in the first free place until all eight are used; each passphrase opens its own; a wrong master key or a used slot is refused', () => {
    const created = createLuks('pass-0', FAST);
    const area = new MemoryArea(created.area);
    expect(codeOf(() => addLuksKeySlot(area.header, new Uint8Array(64), 'x', FAST))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => addLuksKeySlot(area.header, created.masterKey, 'x', { ...FAST, slot: 0 }))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => addLuksKeySlot(area.header, created.masterKey, 'x', { ...FAST, slot: 8 }))).toBe('INVALID_ARGUMENT');
    const explicit = addLuksKeySlot(area.header, created.masterKey, 'pass-5', { ...FAST, slot: 5 });
    expect(explicit.slot).toBe(5);
    area.apply(explicit);
    for (const expected of [1, 2, 3, 4, 6, 7]) {
      const change = addLuksKeySlot(area.header, created.masterKey, `pass-${expected}`, FAST);
      expect(change.slot).toBe(expected);
      area.apply(change);
    }
    expect(codeOf(() => addLuksKeySlot(area.header, created.masterKey, 'ninth', FAST))).toBe('INVALID_ARGUMENT');
    for (const slot of [0, 3, 7]) {
      const unlocked = unlockLuks(area.header, area.read, `pass-${slot}`);
      expect(unlocked).toEqual({ slot, masterKey: created.masterKey });
    }
    expect(luksSlotsOpenedBy(area.header, area.read, 'pass-6')).toEqual([6]);
    expect(masterKeyMatches(area.header, created.masterKey)).toBe(true);
  });

  it('a new key slot takes only a passphrase QEMU can give: UTF-8 text without NUL (bytes or string), else INVALID_ARGUMENT before any key is made', () => {
    for (const bad of [Uint8Array.of(0x70, 0xff, 0xfe), Uint8Array.of(0xc3), new TextEncoder().encode('moo\0cow'), 'lone \uD800 half', 'moo\0cow']) {
      expect(codeOf(() => createLuks(bad, FAST))).toBe('INVALID_ARGUMENT');
    }
    const created = createLuks(new TextEncoder().encode('pässwörd 🐄'), FAST);
    const area = new MemoryArea(created.area);
    expect(codeOf(() => addLuksKeySlot(area.header, created.masterKey, Uint8Array.of(0x80), FAST))).toBe('INVALID_ARGUMENT');
    area.apply(addLuksKeySlot(area.header, created.masterKey, 'zweite 🔔', FAST));
    expect(unlockLuks(area.header, area.read, 'pässwörd 🐄').slot).toBe(0);
    expect(unlockLuks(area.header, area.read, 'zweite 🔔').slot).toBe(1);
  });

  it('an erase disables the slot in the header first, then overwrites its key material; the last active slot is refused', () => {
    const created = createLuks('old', FAST);
    const area = new MemoryArea(created.area);
    area.apply(addLuksKeySlot(area.header, created.masterKey, 'new', FAST));
    const slot0 = area.header.keySlots[0];
    if (slot0 === undefined) throw new Error('no slot 0');
    const materialAt = slot0.keyMaterialOffsetSectors * 512;
    const materialBefore = area.bytes.slice(materialAt, materialAt + 64 * 4000);
    const change = eraseLuksKeySlot(area.header, 0, 3);
    const writes = [...change.writes].map((write) => ({ offsetInArea: write.offsetInArea, length: write.bytes.length, flushAfter: write.flushAfter }));
    expect(writes).toEqual([
      { offsetInArea: 0, length: LUKS_PHDR_BYTES, flushAfter: true },
      ...Array.from({ length: 3 }, () => ({ offsetInArea: materialAt, length: 64 * 4000, flushAfter: true })),
    ]);
    area.apply(eraseLuksKeySlot(area.header, 0, 3));
    expect(area.header.keySlots[0]).toMatchObject({ active: false, iterations: 0, salt: new Uint8Array(32), stripes: 4000 });
    expect(Buffer.from(area.bytes.subarray(materialAt, materialAt + 64 * 4000)).equals(Buffer.from(materialBefore))).toBe(false);
    expect(codeOf(() => unlockLuks(area.header, area.read, 'old'))).toBe('BAD_PASSPHRASE');
    expect(unlockLuks(area.header, area.read, 'new').slot).toBe(1);
    expect(codeOf(() => eraseLuksKeySlot(area.header, 0))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => eraseLuksKeySlot(area.header, 1))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => eraseLuksKeySlot(area.header, 9))).toBe('INVALID_ARGUMENT');
  });

  it('picks iteration counts for an iter-time as QEMU does (at least 1000; the digest an eighth of a 20-byte output\'s rate)', () => {
    const created = createLuks('timed', { iterTimeMs: 30 });
    const slot = created.header.keySlots[0];
    expect(slot?.iterations).toBeGreaterThanOrEqual(1000);
    expect(created.header.masterKeyDigestIterations).toBeGreaterThanOrEqual(1000);
    // 64-byte slot keys cost two SHA-256 blocks per iteration: the slot gets ~half a 20-byte rate × 8, the digest rate / 8.
    expect(slot?.iterations ?? 0).toBeGreaterThanOrEqual(created.header.masterKeyDigestIterations);
    const area = new MemoryArea(created.area);
    expect(unlockLuks(area.header, area.read, 'timed').masterKey).toEqual(created.masterKey);
    expect(codeOf(() => createLuks('x', { iterTimeMs: 0 }))).toBe('INVALID_ARGUMENT');
  });

  it('reports progress per key slot and stops with CANCELLED between slots', () => {
    const created = createLuks('a', FAST);
    const area = new MemoryArea(created.area);
    area.apply(addLuksKeySlot(area.header, created.masterKey, 'b', FAST));
    const progress: number[] = [];
    const watching: JobContext = { progress: (_stage, done) => progress.push(done), throwIfCancelled: () => {} };
    expect(unlockLuks(area.header, area.read, 'b', watching).slot).toBe(1);
    expect(progress).toEqual([0, 1]);
    let checks = 0;
    const cancelling: JobContext = {
      progress: () => {},
      throwIfCancelled: () => {
        if (++checks === 2) throw new Qcow2Error('CANCELLED', 'Cancelled');
      },
    };
    expect(codeOf(() => unlockLuks(area.header, area.read, 'b', cancelling))).toBe('CANCELLED');
  });
});
