/**
 * FAT seeds for the fuzzer (issue 22): small FAT12/16/32 volumes made by mkfs.fat and mtools, and
 * where their structures are (boot sector fields, the FAT entries of every chain, every folder
 * entry), found by walking the clean volume with the reader itself, so mutations can aim there.
 */
import * as fs from 'node:fs';
import { parseBootSector, type FatGeometry } from '../../../src/shared/qcow2/files/fat/boot-sector.ts';
import { FAT_READER } from '../../../src/shared/qcow2/files/fat/fat-reader.ts';
import type { GuestFilesystem } from '../../../src/shared/qcow2/files/filesystem.ts';
import { buildFatScenario, bytesVolume } from '../files/fat-fixtures.ts';

export interface BootField {
  name: string;
  offset: number;
  size: 1 | 2 | 4;
}

const COMMON_FIELDS: BootField[] = [
  { name: 'jump', offset: 0, size: 1 },
  { name: 'bytes per sector', offset: 11, size: 2 },
  { name: 'sectors per cluster', offset: 13, size: 1 },
  { name: 'reserved sectors', offset: 14, size: 2 },
  { name: 'FAT count', offset: 16, size: 1 },
  { name: 'root entries', offset: 17, size: 2 },
  { name: 'total sectors 16', offset: 19, size: 2 },
  { name: 'sectors per FAT 16', offset: 22, size: 2 },
  { name: 'total sectors 32', offset: 32, size: 4 },
  { name: 'signature', offset: 510, size: 2 },
];
const FAT32_FIELDS: BootField[] = [
  { name: 'sectors per FAT 32', offset: 36, size: 4 },
  { name: 'extended flags', offset: 40, size: 2 },
  { name: 'root cluster', offset: 44, size: 4 },
  { name: 'extended signature', offset: 66, size: 1 },
];

/** One file's or folder's chain: its clusters in order. */
export interface ChainSpot {
  path: string;
  isFolder: boolean;
  clusters: number[];
}

export interface FatLayout {
  geometry: FatGeometry;
  fileSize: number;
  bootFields: BootField[];
  chains: ChainSpot[];
  /** Offsets of every used 32-byte folder slot (8.3 and long-name ones). */
  folderSlots: number[];
  /** Where each structure starts and ends: truncation points. */
  boundaries: number[];
}

export interface FatSeed {
  name: string;
  bytes: Uint8Array;
  layout: FatLayout;
}

async function collect(filesystem: GuestFilesystem, geometry: FatGeometry, bytes: Uint8Array, layout: FatLayout, path: string): Promise<void> {
  const clusterOf = (offset: number): number => (offset - geometry.dataOffset) / geometry.clusterBytes + 2;
  const folderRanges = (await filesystem.extents?.(path)) ?? [];
  if (path !== '/' || geometry.rootRegion === null) layout.chains.push({ path, isFolder: true, clusters: expand(folderRanges, geometry.clusterBytes).map(clusterOf) });
  for (const range of folderRanges) {
    layout.boundaries.push(range.offset, range.offset + range.length);
    for (let at = range.offset; at < range.offset + range.length; at += 32) if (bytes[at] !== 0) layout.folderSlots.push(at);
  }
  for (const entry of await filesystem.list(path)) {
    if (entry.kind === 'directory') await collect(filesystem, geometry, bytes, layout, entry.path);
    else layout.chains.push({ path: entry.path, isFolder: false, clusters: expand((await filesystem.extents?.(entry.path)) ?? [], geometry.clusterBytes).map(clusterOf) });
  }
}

function expand(ranges: { offset: number; length: number }[], clusterBytes: number): number[] {
  const offsets: number[] = [];
  for (const range of ranges) for (let at = range.offset; at < range.offset + range.length; at += clusterBytes) offsets.push(at);
  return offsets;
}

export async function readFatLayout(bytes: Uint8Array): Promise<FatLayout> {
  const geometry = parseBootSector(bytes.subarray(0, 512), bytes.length);
  const layout: FatLayout = {
    geometry,
    fileSize: bytes.length,
    bootFields: geometry.width === 32 ? [...COMMON_FIELDS, ...FAT32_FIELDS] : COMMON_FIELDS,
    chains: [],
    folderSlots: [],
    boundaries: [0, 511, 512, geometry.fatOffset, geometry.fatOffset + geometry.fatBytes, geometry.dataOffset, bytes.length - 1],
  };
  const filesystem = await FAT_READER.open(bytesVolume(bytes));
  await collect(filesystem, geometry, bytes, layout, '/');
  return layout;
}

export const FAT_SEED_NAMES = ['fat12-small', 'fat16-small', 'fat32-small'] as const;

export async function buildFatSeeds(folder: string): Promise<Map<string, FatSeed>> {
  const seeds = new Map<string, FatSeed>();
  for (const width of [12, 16, 32] as const) {
    const scenario = await buildFatScenario(folder, width, { small: true });
    const bytes = new Uint8Array(fs.readFileSync(scenario.image));
    const name = `fat${width}-small`;
    seeds.set(name, { name, bytes, layout: await readFatLayout(bytes) });
  }
  return seeds;
}
