/** Reparse data that cannot be read makes a link of unknown target, not a broken volume; FILETIME converts exactly. */
import { describe, expect, it } from 'vitest';
import { filetimeToMs } from '../../../../src/shared/qcow2/files/ntfs/attribute-values.ts';
import { parseReparsePoint, REPARSE_TAG } from '../../../../src/shared/qcow2/files/ntfs/reparse.ts';

function symlinkData(target: string, options: { dataLength?: number; printLength?: number } = {}): Uint8Array {
  const name = Buffer.from(target, 'utf16le');
  const body = Buffer.alloc(12 + name.length * 2);
  body.writeUInt16LE(0, 0);
  body.writeUInt16LE(name.length, 2);
  body.writeUInt16LE(name.length, 4);
  body.writeUInt16LE(options.printLength ?? name.length, 6);
  body.writeUInt32LE(1, 8);
  name.copy(body, 12);
  name.copy(body, 12 + name.length);
  const header = Buffer.alloc(8);
  header.writeUInt32LE(REPARSE_TAG.symlink, 0);
  header.writeUInt16LE(options.dataLength ?? body.length, 4);
  return new Uint8Array(Buffer.concat([header, body]));
}

describe('reparse points', () => {
  it('read a symlink target from its print name', () => {
    expect(parseReparsePoint(symlinkData('..\\a\\b.txt'), 'test')).toEqual({ tag: REPARSE_TAG.symlink, isNameSurrogate: true, target: '..\\a\\b.txt' });
  });

  it('give no target (kind "other") when the names lie past the reparse data, or the data length past the attribute', () => {
    expect(parseReparsePoint(symlinkData('target', { printLength: 4000 }), 'test').target).toBeNull();
    expect(parseReparsePoint(symlinkData('target', { dataLength: 60_000 }), 'test').target).toBeNull();
    expect(parseReparsePoint(new Uint8Array([0x0c, 0x00, 0x00, 0xa0]), 'test')).toMatchObject({ isNameSurrogate: true, target: null });
  });

  it('know a tag that keeps content elsewhere (WOF) is no link', () => {
    const wof = new Uint8Array(16);
    new DataView(wof.buffer).setUint32(0, 0x80000017, true);
    // Version 0 in its WOF_EXTERNAL_INFO: not one Windows writes, so no provider is read from it.
    expect(parseReparsePoint(wof, 'test')).toEqual({ tag: 0x80000017, isNameSurrogate: false, target: null, wof: null });
    const xpress = new Uint8Array(24);
    const view = new DataView(xpress.buffer);
    view.setUint32(0, 0x80000017, true);
    view.setUint16(4, 16, true);
    for (const [at, value] of [[8, 1], [12, 2], [16, 1], [20, 3]]) view.setUint32(at as number, value as number, true);
    expect(parseReparsePoint(xpress, 'test')).toEqual({ tag: 0x80000017, isNameSurrogate: false, target: null, wof: { provider: 2, algorithm: 3 } });
    expect(parseReparsePoint(xpress.subarray(0, 20), 'test').wof).toBeNull();
  });
});

describe('FILETIME', () => {
  it('counts 100 ns from 1601: the Unix epoch is 116444736000000000, and 0 means unset', () => {
    expect(filetimeToMs(116_444_736_000_000_000n)).toBe(0);
    expect(filetimeToMs(116_444_736_000_000_000n + 15_000_000n)).toBe(1500);
    expect(filetimeToMs(0n)).toBeNull();
  });
});
