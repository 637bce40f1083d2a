/**
 * Shared pieces of the fast-check properties checked against qemu: the seed and run count, guest
 * operations for qemu-io, and removing one run's files.
 */
import * as fs from 'node:fs';
import fc from 'fast-check';
import type { TempDir } from './qemu.ts';

export interface PropertySettings {
  seed: number;
  runs: number;
}

/** COWBELL_FC_SEED and COWBELL_FC_RUNS override a property's defaults, so a failure replays and a long campaign needs no edit. */
export function propertySettings(defaultSeed: number, defaultRuns: number): PropertySettings {
  return { seed: Number(process.env.COWBELL_FC_SEED ?? defaultSeed), runs: Number(process.env.COWBELL_FC_RUNS ?? defaultRuns) };
}

export interface QemuIoOp {
  kind: 'write' | 'zero' | 'discard';
  offset: number;
  length: number;
  /** The byte a write fills its range with. */
  pattern: number;
}

/** A write (twice as likely), zero write or discard of whole sectors inside a disk of `diskBytes`, at most `maxSectors` long. */
export function qemuIoOpArbitrary(diskBytes: number, maxSectors: number, minPattern = 1): fc.Arbitrary<QemuIoOp> {
  return fc
    .record({
      kind: fc.constantFrom<QemuIoOp['kind']>('write', 'write', 'zero', 'discard'),
      sector: fc.nat(diskBytes / 512 - 1),
      sectors: fc.integer({ min: 1, max: maxSectors }),
      pattern: fc.integer({ min: minPattern, max: 255 }),
    })
    .map(({ kind, sector, sectors, pattern }) => ({ kind, offset: sector * 512, length: Math.min(sectors * 512, diskBytes - sector * 512), pattern }));
}

export function qemuIoCommand(op: QemuIoOp): string {
  if (op.kind === 'write') return `write -P ${op.pattern} ${op.offset} ${op.length}`;
  if (op.kind === 'zero') return `write -z ${op.offset} ${op.length}`;
  return `discard ${op.offset} ${op.length}`;
}

/** Removes the files one run made (named with `prefix`), so hundreds of runs do not fill the disk. */
export function removeRunFiles(folder: TempDir, prefix: string): void {
  for (const file of fs.readdirSync(folder.path)) if (file.startsWith(prefix)) fs.rmSync(folder.file(file));
}
