/**
 * Reparse points: symbolic links and junctions (mount points) are name surrogates whose target is
 * stored in the attribute; other tags (deduplication, WOF compression, cloud files) keep the content
 * elsewhere. Also the Interix symlinks ntfs-3g writes by default: a system file holding "IntxLNK\1"
 * and the UTF-16 target.
 */
import { decodeUtf16, LeBytes } from './bytes.ts';
import { WOF_REPARSE_TAG, type WofInfo } from './wof.ts';

export const REPARSE_TAG = { mountPoint: 0xa0000003, symlink: 0xa000000c } as const;
const NAME_SURROGATE = 0x20000000;

export interface ReparsePoint {
  tag: number;
  /** Whether the tag names another file (a link); such a file is shown as a symlink. */
  isNameSurrogate: boolean;
  /** The link's target when the tag is a symlink or junction and its data reads. */
  target: string | null;
  /** For a WOF tag (System Compression, WIMBoot): its provider and algorithm, or null where they do not read. */
  wof?: WofInfo | null;
}

export function parseReparsePoint(value: Uint8Array, what: string): ReparsePoint {
  const bytes = new LeBytes(value, `${what} $REPARSE_POINT`);
  const tag = bytes.u32(0);
  const reparsePoint = { tag, isNameSurrogate: (tag & NAME_SURROGATE) !== 0 };
  if (tag === WOF_REPARSE_TAG) return { ...reparsePoint, target: null, wof: wofInfo(bytes) };
  const pathBufferStart = tag === REPARSE_TAG.symlink ? 20 : tag === REPARSE_TAG.mountPoint ? 16 : null;
  if (pathBufferStart === null) return { ...reparsePoint, target: null };
  try {
    const dataLength = bytes.u16(4);
    const data = new LeBytes(bytes.slice(0, 8 + dataLength), `${what} reparse data`);
    const name = (offsetField: number): string => {
      const offset = data.u16(offsetField);
      const length = data.u16(offsetField + 2);
      if (length % 2 !== 0) return '';
      return decodeUtf16(data.slice(pathBufferStart + offset, length));
    };
    const printName = name(12);
    const target = printName !== '' ? printName : name(8).replace(/^\\\?\?\\/, '');
    return { ...reparsePoint, target: target === '' ? null : target };
  } catch {
    // An unreadable link stays a link of unknown target (kind "other"), not a broken volume.
    return { ...reparsePoint, target: null };
  }
}

/** WOF_EXTERNAL_INFO (version 1, provider) and, for the file provider, its version and algorithm. */
function wofInfo(bytes: LeBytes): WofInfo | null {
  try {
    if (bytes.u16(4) < 16 || bytes.u32(8) !== 1) return null;
    return { provider: bytes.u32(12), algorithm: bytes.u32(20) };
  } catch {
    return null;
  }
}

const INTERIX_MAGIC = [0x49, 0x6e, 0x74, 0x78, 0x4c, 0x4e, 0x4b, 0x01]; // "IntxLNK\1"
/** An Interix link target of PATH_MAX UTF-16 units at most. */
export const INTERIX_MAX_SIZE = INTERIX_MAGIC.length + 2 * 4096;

export function isInterixSymlinkHeader(head: Uint8Array): boolean {
  return head.length >= INTERIX_MAGIC.length && INTERIX_MAGIC.every((byte, index) => head[index] === byte);
}

export function interixTarget(content: Uint8Array): string | null {
  if (!isInterixSymlinkHeader(content) || (content.length - INTERIX_MAGIC.length) % 2 !== 0) return null;
  const target = decodeUtf16(content.subarray(INTERIX_MAGIC.length));
  return target === '' ? null : target;
}
