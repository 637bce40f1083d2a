/**
 * The header of a rewritten image: the source's, with what stays valid kept and what cannot be
 * carried refused or dropped. Kept as QEMU keeps them: the backing file and its format, the
 * feature-name table, header fields and extensions Cowbell does not know (block/qcow2.c keeps
 * unknown extensions). Persistent bitmaps describe writes to the old file: refused unless the
 * caller asks to drop them. Autoclear bits are cleared (the spec's rule for a writer that does not
 * maintain them); the dirty and corrupt bits do not carry over (the new refcounts are exact).
 */
import * as path from 'node:path';
import { Qcow2Error } from '../errors.ts';
import { EXT_BITMAPS, EXT_CRYPTO_HEADER, EXT_DATA_FILE, type Header } from '../format/header.ts';
import { INCOMPAT_COMPRESSION, INCOMPAT_CORRUPT, INCOMPAT_DATA_FILE, INCOMPAT_DIRTY } from '../format/limits.ts';
import type { CompressionType } from '../codec/compression.ts';
import { resolveBackingPath } from '../image/image.ts';

export interface OutputHeaderOptions {
  sourcePath: string;
  targetPath: string;
  compressionType: CompressionType;
  /** Leave persistent dirty bitmaps behind instead of refusing. */
  dropBitmaps: boolean;
}

/** Refuses what a rewrite cannot carry, before anything is written. */
export function assertRewritable(header: Header, options: Pick<OutputHeaderOptions, 'dropBitmaps' | 'compressionType'>): void {
  if ((header.incompatibleFeatures & INCOMPAT_CORRUPT) !== 0n) {
    throw new Qcow2Error('CORRUPT', 'The disk is marked corrupt; check and repair it first');
  }
  if ((header.incompatibleFeatures & INCOMPAT_DATA_FILE) !== 0n || header.extensions.some((extension) => extension.type === EXT_DATA_FILE)) {
    throw new Qcow2Error('UNSUPPORTED_FEATURE', 'The disk keeps its data in an external data file, which Cowbell cannot rewrite');
  }
  if (header.cryptMethod !== 0 || header.extensions.some((extension) => extension.type === EXT_CRYPTO_HEADER)) {
    throw new Qcow2Error('UNSUPPORTED_FEATURE', 'The disk is encrypted; Cowbell cannot compress or compact encrypted disks yet');
  }
  if (!options.dropBitmaps && header.extensions.some((extension) => extension.type === EXT_BITMAPS)) {
    throw new Qcow2Error(
      'UNSUPPORTED_FEATURE',
      'The disk has persistent dirty bitmaps (incremental backups), which a rewritten disk cannot keep; drop them explicitly (--drop-bitmaps) to go on, and take a full backup next',
    );
  }
  if (options.compressionType === 1 && header.version !== 3) {
    throw new Qcow2Error('INVALID_ARGUMENT', 'zstd compression needs a compat 1.1 (version 3) image');
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
  return {
    ...source,
    backingFile: backingNameFor(source.backingFile, options.sourcePath, options.targetPath),
    incompatibleFeatures: incompatible,
    autoclearFeatures: 0n,
    compressionType: options.compressionType,
    // A v3 header that had no room for the compression type gets it (QEMU writes 112-byte headers).
    headerLength: source.version === 3 && options.compressionType !== 0 ? Math.max(source.headerLength, 112) : source.headerLength,
    extensions: source.extensions.filter((extension) => extension.type !== EXT_BITMAPS).map((extension) => ({ ...extension })),
    l1TableOffset: 0,
    refcountTableOffset: 0,
    refcountTableClusters: 0,
    snapshotsOffset: 0,
    snapshotCount: 0,
  };
}

function backingNameFor(name: string | null, sourcePath: string, targetPath: string): string | null {
  if (name === null || path.isAbsolute(name)) return name;
  if (path.resolve(path.dirname(sourcePath)) === path.resolve(path.dirname(targetPath))) return name;
  return path.relative(path.dirname(path.resolve(targetPath)), path.resolve(resolveBackingPath(sourcePath, name)));
}
