/**
 * Cowbell's record in a snapshot's extra data (format/cowbell-record.ts), written and read back:
 * the note after the other fields, in every combination of them; the bound QEMU puts on extra
 * data never crossed; records written before notes existed still read.
 */
import { describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { readCowbellRecord, withCowbellRecord, type CowbellRecord } from '../../../src/shared/qcow2/format/cowbell-record.ts';
import { MAX_SNAPSHOT_EXTRA_DATA } from '../../../src/shared/qcow2/format/limits.ts';
import { newExtraData, parseSnapshotTable, serializeSnapshotTable, type SnapshotEntry } from '../../../src/shared/qcow2/format/snapshot-table.ts';
import { MAX_SNAPSHOT_NOTE_BYTES } from '../../../src/shared/qcow2/model.ts';

const DISK = 64 * 1024 * 1024;

function entry(extraData = newExtraData(0, DISK)): SnapshotEntry {
  return {
    l1TableOffset: 0x30000,
    l1Size: 1,
    id: '7',
    name: 'seven',
    dateSec: 1_700_000_000,
    dateNsec: 5,
    vmClockNsec: 0n,
    vmStateSize32: 0,
    vmStateSizeLarge: 0n,
    diskSize: DISK,
    icount: null,
    extraData,
  };
}

const plain: CowbellRecord = { parentKnown: false, parentId: '', currentParent: false, activeL1Offset: 0, currentSinceSec: 0, currentSinceNsec: 0 };
const withParent: CowbellRecord = { ...plain, parentKnown: true, parentId: '12' };
const current: CowbellRecord = { ...withParent, currentParent: true, activeL1Offset: 0x50000, currentSinceSec: 1_700_000_100, currentSinceNsec: 7, activeL1Checksum: 0xdeadbeef };

/** Written into an entry, through a serialised snapshot table and back, then read. */
function roundTrip(record: CowbellRecord): { read: CowbellRecord | null; extraBytes: number } {
  const extraData = withCowbellRecord(entry(), record, DISK);
  const table = serializeSnapshotTable([{ ...entry(), extraData }]);
  const [parsed] = parseSnapshotTable(table, 1, 3);
  if (parsed === undefined) throw new Error('no entry parsed');
  return { read: readCowbellRecord(parsed), extraBytes: parsed.extraData.length };
}

function codeOf(work: () => unknown): string {
  try {
    work();
  } catch (error) {
    return error instanceof Qcow2Error ? error.code : `not a Qcow2Error: ${String(error)}`;
  }
  return 'no error';
}

describe("a snapshot's note in Cowbell's record", () => {
  const notes = ['Before the kernel upgrade', 'Zeile 1\nZeile 2 — mit Umlauten: äöü', '快照：升级前 🚀👩‍💻', 'x'];
  for (const [label, record] of [['no parent, not current', plain], ['a parent', withParent], ['the current parent, with the L1 checksum', current]] as const) {
    it(`reads back what was written (${label})`, () => {
      for (const note of notes) {
        const { read, extraBytes } = roundTrip({ ...record, note });
        expect(read).toMatchObject({ ...record, note });
        expect(extraBytes % 8, 'extra data padded to 8').toBe(0);
      }
      // The other fields are unchanged by a note beside them.
      const without = roundTrip(record).read;
      const withNote = roundTrip({ ...record, note: notes[2] }).read;
      expect({ ...withNote, note: undefined }).toEqual(without);
    });
  }

  it('an empty note is no note: the record is byte for byte the one written before notes existed', () => {
    for (const record of [plain, withParent, current]) {
      const none = withCowbellRecord(entry(), record, DISK);
      expect(withCowbellRecord(entry(), { ...record, note: '' }, DISK)).toEqual(none);
      expect(readCowbellRecord({ ...entry(), extraData: none })?.note).toBeUndefined();
    }
  });

  it('an old record (no note flag) still reads, fields and all', () => {
    // Written by hand as the version before notes: magic, version 1, flags 1|2|16, parent "3", L1 at 0x70000, since, checksum.
    const extra = new Uint8Array(24 + 32 + 8);
    extra.set(newExtraData(0, DISK));
    const data = new DataView(extra.buffer);
    data.setUint32(24, 0x434f5742);
    extra[28] = 1;
    extra[29] = 1 | 2 | 16;
    data.setUint16(30, 1);
    data.setBigUint64(32, 0x70000n);
    data.setUint32(40, 1_600_000_000);
    data.setUint32(44, 9);
    extra[48] = '3'.charCodeAt(0);
    data.setUint32(56, 0x12345678);
    expect(readCowbellRecord({ ...entry(), extraData: extra })).toEqual({
      parentKnown: true,
      parentId: '3',
      currentParent: true,
      activeL1Offset: 0x70000,
      currentSinceSec: 1_600_000_000,
      currentSinceNsec: 9,
      parentInferred: false,
      currentInferred: false,
      activeL1Checksum: 0x12345678,
      note: undefined,
    });
  });

  it(`takes a note of exactly ${MAX_SNAPSHOT_NOTE_BYTES} UTF-8 bytes, multi-byte characters counted as bytes, and stays inside QEMU's bound`, () => {
    const euros = `${'€'.repeat(170)}ab`;
    expect(new TextEncoder().encode(euros).length).toBe(MAX_SNAPSHOT_NOTE_BYTES);
    const { read, extraBytes } = roundTrip({ ...current, note: euros });
    expect(read?.note).toBe(euros);
    expect(extraBytes).toBeLessThanOrEqual(MAX_SNAPSHOT_EXTRA_DATA);
  });

  it('refuses a longer note with NOTE_TOO_LONG, counting bytes rather than characters', () => {
    expect(codeOf(() => withCowbellRecord(entry(), { ...current, note: 'a'.repeat(MAX_SNAPSHOT_NOTE_BYTES + 1) }, DISK))).toBe('NOTE_TOO_LONG');
    // 200 characters, 800 bytes.
    expect(codeOf(() => withCowbellRecord(entry(), { ...plain, note: '🚀'.repeat(200) }, DISK))).toBe('NOTE_TOO_LONG');
    expect(codeOf(() => withCowbellRecord(entry(), { ...plain, note: 'a\0b' }, DISK))).toBe('INVALID_ARGUMENT');
  });

  it('never writes extra data over 1024 bytes: a parent id long enough to push a full note past it is refused', () => {
    const longParent: CowbellRecord = { ...current, parentId: '9'.repeat(480), note: 'n'.repeat(MAX_SNAPSHOT_NOTE_BYTES) };
    expect(codeOf(() => withCowbellRecord(entry(), longParent, DISK))).toBe('NOTE_TOO_LONG');
    expect(roundTrip({ ...longParent, note: 'short' }).extraBytes).toBeLessThanOrEqual(MAX_SNAPSHOT_EXTRA_DATA);
  });

  it('a note cut short (its length past the extra data) reads as none, the rest of the record intact', () => {
    const extra = withCowbellRecord(entry(), { ...withParent, note: 'a note of some length' }, DISK);
    const cut = extra.subarray(0, extra.length - 8);
    expect(readCowbellRecord({ ...entry(), extraData: cut })).toMatchObject({ ...withParent, note: undefined });
  });
});
