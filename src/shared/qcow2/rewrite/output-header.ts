/**
 * The header of a rewritten image: the source's, with what stays valid kept and what cannot be
 * carried refused or dropped. Kept as QEMU keeps them: the backing file and its format, the
 * feature-name table, header fields and extensions Cowbell does not know (block/qcow2.c keeps
 * unknown extensions). Persistent bitmaps describe writes to the old file: refused unless the
 * caller asks to drop them. Autoclear bits are cleared (the spec's rule for a writer that does not
 * maintain them); the dirty and corrupt bits do not carry over (the new refcounts are exact).
 * A version 2 image may become version 3 on the way, as `qemu-img amend -o compat=1.1` makes it:
 * the tables stay as they are (v3 reads v2's entries alike), the header grows to QEMU's 112 bytes
 * with a feature name table, and every snapshot entry gets the extra data v3 requires (tree-record.ts
 * fills it). The way back is refused: v2 has no zero clusters, no disk size per snapshot, no zstd.
 */
import * as path from 'node:path';
import { Qcow2Error } from '../errors.ts';
import { CRYPTO_HEADER_EXTENSION_BYTES } from '../format/crypto-header-extension.ts';
import { featureNameTable, hasRoomForFeatureNameTable } from '../format/feature-name-table.ts';
import { EXT_BACKING_FORMAT, EXT_BITMAPS, EXT_CRYPTO_HEADER, EXT_DATA_FILE, EXT_FEATURE_TABLE, V3_HEADER_LENGTH, serializeHeaderArea, type Header, type HeaderExtension } from '../format/header.ts';
import { AUTOCLEAR_BITMAPS, INCOMPAT_COMPRESSION, INCOMPAT_CORRUPT, INCOMPAT_DATA_FILE, INCOMPAT_DIRTY } from '../format/limits.ts';
import type { CompressionType } from '../codec/compression.ts';
import { pathSegments, physicalPath, withPhysicalFolder } from '../io/file-identity.ts';

export interface OutputHeaderOptions {
  sourcePath: string;
  targetPath: string;
  compressionType: CompressionType;
  /** Leave persistent dirty bitmaps behind instead of refusing. */
  dropBitmaps: boolean;
  /** The new image's encryption: LUKS (its area's extension is filled in by the writer) or none. */
  encryption: 'luks' | 'none';
  /** The new image's qcow2 version: 3 upgrades a version 2 source; 2 for a version 3 source is refused. */
  version: 2 | 3;
}

/** Refuses what a rewrite cannot carry, before anything is written. */
export function assertRewritable(header: Header, options: Pick<OutputHeaderOptions, 'dropBitmaps' | 'compressionType' | 'version'>): void {
  if (options.version < header.version) {
    throw new Qcow2Error('UNSUPPORTED_FEATURE', 'A compat 1.1 (version 3) disk cannot be rewritten as compat 0.10 (version 2): version 2 has no room for what version 3 records (zero clusters, each snapshot\'s disk size); nothing was changed');
  }
  if ((header.incompatibleFeatures & INCOMPAT_CORRUPT) !== 0n) {
    throw new Qcow2Error('CORRUPT', 'The disk is marked corrupt; check and repair it first');
  }
  if ((header.incompatibleFeatures & INCOMPAT_DATA_FILE) !== 0n || header.extensions.some((extension) => extension.type === EXT_DATA_FILE)) {
    // Its data cannot be compressed there (QEMU refuses compressed clusters with a data file), and
    // moving it into the new file would orphan the data file a VM's configuration may name.
    throw new Qcow2Error(
      'UNSUPPORTED_FEATURE',
      'The disk keeps its data in an external data file, which a compress, compact, encrypt or decrypt cannot carry; convert it to a new self-contained image first (cowbell convert copies the data in)',
    );
  }
  // Without the autoclear bit the bitmaps are already stale (a program that did not keep them wrote
  // the disk): QEMU ignores them, and the copy has nothing left to lose by leaving them out.
  const liveBitmaps = (header.autoclearFeatures & AUTOCLEAR_BITMAPS) !== 0n && header.extensions.some((extension) => extension.type === EXT_BITMAPS);
  if (!options.dropBitmaps && liveBitmaps) {
    throw new Qcow2Error('HAS_BITMAPS', 'The disk has persistent dirty bitmaps (incremental backups), which a rewritten disk cannot keep; nothing was changed');
  }
  if (options.compressionType === 1 && options.version !== 3) {
    throw new Qcow2Error('NEEDS_VERSION_3', 'zstd compression needs a compat 1.1 (version 3) image');
  }
}

/**
 * The new header (offsets of tables to be filled in by the writer). A relative backing file name
 * is rewritten when the output lands in another folder, so it still names the same file.
 */
export function outputHeader(source: Header, options: OutputHeaderOptions): Header {
  assertRewritable(source, options);
  let incompatible = source.incompatibleFeatures & ~(INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_COMPRESSION);
  if (options.compressionType === 1) incompatible |= INCOMPAT_COMPRESSION;
  const upgraded = source.version === 2 && options.version === 3;
  const header: Header = {
    ...source,
    version: options.version,
    backingFile: backingNameFor(source.backingFile, options.sourcePath, options.targetPath),
    incompatibleFeatures: incompatible,
    autoclearFeatures: 0n,
    compressionType: options.compressionType,
    // A v3 header that had no room for the compression type gets it (QEMU writes 112-byte headers).
    headerLength: upgraded ? V3_HEADER_LENGTH : source.version === 3 && options.compressionType !== 0 ? Math.max(source.headerLength, V3_HEADER_LENGTH) : source.headerLength,
    cryptMethod: options.encryption === 'luks' ? 2 : 0,
    extensions: outputExtensions(source, options.encryption, upgraded),
    l1TableOffset: 0,
    refcountTableOffset: 0,
    refcountTableClusters: 0,
    snapshotsOffset: 0,
    snapshotCount: 0,
  };
  // Refused before anything is written where the header area no longer fits its cluster (a version
  // 3 header is 40 bytes longer, the feature name table 392): the backing file name must still fit.
  serializeHeaderArea({ ...header });
  return header;
}

/**
 * The source's extensions less the bitmaps; the LUKS area's pointer where the new image is LUKS
 * (in the source's place, or first), with its offset still to be written.
 */
function outputExtensions(source: Header, encryption: 'luks' | 'none', upgraded: boolean): HeaderExtension[] {
  const kept = source.extensions.filter((extension) => extension.type !== EXT_BITMAPS && extension.type !== EXT_CRYPTO_HEADER).map((extension) => ({ ...extension }));
  // Where QEMU's upgrade puts it: after the backing format (and the LUKS pointer, placed below), before extensions it does not know.
  if (upgraded && hasRoomForFeatureNameTable(2 ** source.clusterBits) && !kept.some((extension) => extension.type === EXT_FEATURE_TABLE)) {
    const at = kept.findIndex((extension) => extension.type !== EXT_BACKING_FORMAT);
    kept.splice(at < 0 ? kept.length : at, 0, featureNameTable());
  }
  if (encryption === 'none') return kept;
  const pointer = { type: EXT_CRYPTO_HEADER, data: new Uint8Array(CRYPTO_HEADER_EXTENSION_BYTES) };
  const at = source.extensions.findIndex((extension) => extension.type === EXT_CRYPTO_HEADER);
  kept.splice(at < 0 ? 0 : Math.min(at, kept.length), 0, pointer);
  return kept;
}

/**
 * A relative backing name for a copy in another folder: from there to the same file. The two
 * folders are taken as the kernel resolves them (a '..' in the name then climbs from where a linked
 * folder really is); the name's own links (base.qcow2 -> base-v1.qcow2, current/ -> v1/) are kept.
 */
function backingNameFor(name: string | null, sourcePath: string, targetPath: string): string | null {
  if (name === null || path.isAbsolute(name)) return name;
  const sourceFolder = physicalPath(path.dirname(sourcePath));
  const targetFolder = physicalPath(path.dirname(targetPath));
  if (sourceFolder === targetFolder) return name;
  // 'cur/../base.qcow2' with cur a linked folder: the kernel climbs from where cur really is, and
  // path.resolve's folding of the text would name another file (a decoy, or none).
  const backing = climbsAfterDescending(name)
    ? withPhysicalFolder(`${sourceFolder}${path.sep}${name}`)
    : path.resolve(sourceFolder, name);
  return path.relative(targetFolder, backing);
}

/** Whether a '..' in a relative name comes after a folder's name (leading ones climb from the image's own, physical, folder). */
function climbsAfterDescending(name: string): boolean {
  let descended = false;
  for (const part of pathSegments(name)) {
    if (part === '..' && descended) return true;
    if (part !== '..' && part !== '.' && part !== '') descended = true;
  }
  return false;
}
