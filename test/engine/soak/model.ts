/**
 * The soak's model-based test: random guest writes, zero writes, discards, snapshot create,
 * apply and delete, and close/reopen, run on the real engine (over an in-memory file) and on a
 * plain model — the current disk's bytes and every snapshot's — with fast-check's fc.commands,
 * which shrinks a failing run to a minimal sequence of commands. Every so many steps the engine's
 * view of every state is compared with the model; less often the file goes to `qemu-img check`
 * (which must find it clean) and qemu-img reads the current disk and a snapshot back.
 */
import * as fs from 'node:fs';
import fc from 'fast-check';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { applySnapshot, createSnapshot, deleteSnapshot } from '../../../src/shared/qcow2/snapshots/snapshots.ts';
import { applyToImage, applyToModel, type DiscardSemantics, type GuestOp } from '../../helpers/guest-model.ts';
import { MemoryBlockFile } from '../../helpers/memory-block-file.ts';
import { firstDifference, qemuCheck, rawOf } from '../../helpers/qemu.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';

export interface SoakConfig {
  name: string;
  /** qemu-img create -o options. */
  options: string;
  clusterSize: number;
  virtualSize: number;
  version: 2 | 3;
  /** An empty image, one qemu-img compressed from data (convert -c), or an overlay on a raw backing file with data. */
  start: 'empty' | 'compressed' | 'backing';
}

export interface SoakSettings {
  /** Compare the engine's view of every state with the model every n steps. */
  compareEvery: number;
  /** qemu-img check and qemu-img reads every n steps (and at the end of every run). */
  qemuEvery: number;
  maxSnapshots: number;
}

export interface SoakCounts {
  runs: number;
  steps: number;
  byKind: Record<string, number>;
  compares: number;
  qemuChecks: number;
  qemuReads: number;
}

export function newCounts(): SoakCounts {
  return { runs: 0, steps: 0, byKind: {}, compares: 0, qemuChecks: 0, qemuReads: 0 };
}

export interface Model {
  current: Uint8Array;
  /** Snapshot name → its guest bytes, in creation order. */
  snapshots: Map<string, Uint8Array>;
  nextName: number;
}

export interface Real {
  image: Qcow2Image;
  file: MemoryBlockFile;
  /** Where the file goes for qemu-img. */
  diskPath: string;
  steps: number;
}

interface Context {
  config: SoakConfig;
  settings: SoakSettings;
  counts: SoakCounts;
  semantics: DiscardSemantics;
}

// ------------------------------------------------------------------ checking

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

function mismatch(what: string, actual: Uint8Array, expected: Uint8Array): Error {
  return new Error(`${what} differs from the model at byte ${firstDifference(actual, expected)}`);
}

/** The engine's current disk and every snapshot, against the model. */
function compareThroughEngine(context: Context, model: Model, real: Real): void {
  context.counts.compares++;
  const names = real.image.snapshots.map((entry) => entry.name);
  if (JSON.stringify(names) !== JSON.stringify([...model.snapshots.keys()])) throw new Error(`snapshots are [${names.join(', ')}], the model has [${[...model.snapshots.keys()].join(', ')}]`);
  const current = real.image.read(0, real.image.virtualSize);
  if (!sameBytes(current, model.current)) throw mismatch('the current disk', current, model.current);
  for (const entry of real.image.snapshots) {
    const expected = model.snapshots.get(entry.name) ?? new Uint8Array(0);
    const reader = real.image.snapshotReader(entry);
    const data = new Uint8Array(reader.virtualSize);
    reader.readInto(data, 0);
    if (!sameBytes(data, expected)) throw mismatch(`snapshot ${entry.name}`, data, expected);
  }
}

/** qemu-img's verdict and reads on the file as it is now (flushed). */
async function compareThroughQemu(context: Context, model: Model, real: Real): Promise<void> {
  real.image.flush();
  fs.writeFileSync(real.diskPath, real.file.contents());
  const check = await qemuCheck(real.diskPath);
  context.counts.qemuChecks++;
  if (check.code !== 0) throw new Error(`qemu-img check is not clean after ${real.steps} steps:\n${check.output}`);
  const current = await rawOf(real.diskPath);
  context.counts.qemuReads++;
  if (!sameBytes(current, model.current)) throw mismatch('qemu-img reads the current disk, which', current, model.current);
  // One snapshot per visit, a different one each time.
  const names = [...model.snapshots.keys()];
  const name = names[real.steps % Math.max(1, names.length)];
  if (name !== undefined) {
    const data = await rawOf(real.diskPath, { snapshot: name });
    context.counts.qemuReads++;
    const expected = model.snapshots.get(name) ?? new Uint8Array(0);
    if (!sameBytes(data, expected)) throw mismatch(`qemu-img reads snapshot ${name}, which`, data, expected);
  }
}

async function afterStep(context: Context, model: Model, real: Real, kind: string): Promise<void> {
  real.steps++;
  context.counts.steps++;
  context.counts.byKind[kind] = (context.counts.byKind[kind] ?? 0) + 1;
  if (real.steps % context.settings.compareEvery === 0) compareThroughEngine(context, model, real);
  if (real.steps % context.settings.qemuEvery === 0) await compareThroughQemu(context, model, real);
}

// ------------------------------------------------------------------ commands

type SoakCommand = fc.AsyncCommand<Model, Real, false>;

class GuestCommand implements SoakCommand {
  readonly context: Context;
  readonly op: GuestOp;

  constructor(context: Context, op: GuestOp) {
    this.context = context;
    this.op = op;
  }

  check(): boolean {
    return true;
  }

  async run(model: Model, real: Real): Promise<void> {
    applyToImage(real.image, this.op);
    applyToModel(model.current, this.op, this.context.semantics);
    await afterStep(this.context, model, real, this.op.kind);
  }

  toString(): string {
    const length = this.op.kind === 'write' ? this.op.data.length : this.op.length;
    return `${this.op.kind}(${this.op.offset}, ${length})`;
  }
}

class CreateCommand implements SoakCommand {
  readonly context: Context;

  constructor(context: Context) {
    this.context = context;
  }

  check(model: Readonly<Model>): boolean {
    return model.snapshots.size < this.context.settings.maxSnapshots;
  }

  async run(model: Model, real: Real): Promise<void> {
    const name = `s${model.nextName++}`;
    createSnapshot(real.image, { name });
    model.snapshots.set(name, model.current.slice());
    await afterStep(this.context, model, real, 'snapshot create');
  }

  toString(): string {
    return 'create';
  }
}

/** Apply or delete the `pick`-th snapshot (modulo how many there are). */
class SnapshotCommand implements SoakCommand {
  readonly context: Context;
  readonly action: 'apply' | 'delete';
  readonly pick: number;

  constructor(context: Context, action: 'apply' | 'delete', pick: number) {
    this.context = context;
    this.action = action;
    this.pick = pick;
  }

  check(model: Readonly<Model>): boolean {
    return model.snapshots.size > 0;
  }

  async run(model: Model, real: Real): Promise<void> {
    const names = [...model.snapshots.keys()];
    const name = names[this.pick % names.length] ?? '';
    if (this.action === 'apply') {
      applySnapshot(real.image, name);
      model.current = (model.snapshots.get(name) ?? new Uint8Array(0)).slice();
    } else {
      deleteSnapshot(real.image, name);
      model.snapshots.delete(name);
    }
    await afterStep(this.context, model, real, `snapshot ${this.action}`);
  }

  toString(): string {
    return `${this.action}(#${this.pick})`;
  }
}

/** Close (which flushes) and open the bytes again: what is on disk is all there is. */
class ReopenCommand implements SoakCommand {
  readonly context: Context;

  constructor(context: Context) {
    this.context = context;
  }

  check(): boolean {
    return true;
  }

  async run(model: Model, real: Real): Promise<void> {
    real.image.close();
    real.file = new MemoryBlockFile(real.diskPath, real.file.contents());
    real.image = Qcow2Image.openFile(real.file);
    if (real.image.readOnly) throw new Error(`the image reopened read-only: ${real.image.readOnlyReason ?? ''}`);
    await afterStep(this.context, model, real, 'reopen');
  }

  toString(): string {
    return 'reopen';
  }
}

function rangeArbitrary(config: SoakConfig): fc.Arbitrary<{ offset: number; length: number }> {
  const { clusterSize, virtualSize } = config;
  const grain = fc.constantFrom(clusterSize, Math.max(512, clusterSize / 32), 1);
  return fc.tuple(grain, fc.nat(virtualSize - 1), fc.integer({ min: 1, max: 3 * clusterSize })).map(([step, rawOffset, rawLength]) => {
    const offset = Math.floor(rawOffset / step) * step;
    return { offset, length: Math.min(virtualSize - offset, Math.max(1, Math.ceil(rawLength / step) * step)) };
  });
}

export function soakCommands(config: SoakConfig, settings: SoakSettings, counts: SoakCounts, maxCommands: number): fc.Arbitrary<Iterable<SoakCommand>> {
  const context: Context = { config, settings, counts, semantics: semanticsOf(config) };
  const range = rangeArbitrary(config);
  return fc.commands(
    [
      fc.tuple(range, fc.nat()).map(([{ offset, length }, seed]) => new GuestCommand(context, { kind: 'write', offset, data: new SeededRandom(seed).bytes(length) })),
      fc.tuple(range, fc.nat()).map(([{ offset, length }, seed]) => new GuestCommand(context, { kind: 'write', offset, data: new SeededRandom(seed).bytes(length) })),
      range.map(({ offset, length }) => new GuestCommand(context, { kind: 'zero', offset, length })),
      range.map(({ offset, length }) => new GuestCommand(context, { kind: 'discard', offset, length })),
      fc.constant(null).map(() => new CreateCommand(context)),
      fc.nat().map((pick) => new SnapshotCommand(context, 'apply', pick)),
      fc.nat().map((pick) => new SnapshotCommand(context, 'delete', pick)),
      fc.constant(null).map(() => new ReopenCommand(context)),
    ],
    { maxCommands, size: 'max' },
  );
}

function semanticsOf(config: SoakConfig): DiscardSemantics {
  return { clusterSize: config.clusterSize, virtualSize: config.virtualSize, version: config.version, hasBacking: config.start === 'backing' };
}

export interface SoakStart {
  /** The image file's bytes. */
  image: Uint8Array;
  /** What the guest reads from it. */
  data: Uint8Array;
}

/**
 * One run: a fresh copy of the starting image (its backing file, if any, beside `diskPath`), the
 * commands, then a full comparison (so that shrinking sees the failure).
 */
export async function runSoak(start: SoakStart, diskPath: string, config: SoakConfig, settings: SoakSettings, counts: SoakCounts, commands: Iterable<SoakCommand>): Promise<void> {
  counts.runs++;
  const context: Context = { config, settings, counts, semantics: semanticsOf(config) };
  const file = new MemoryBlockFile(diskPath, start.image);
  const real: Real = { image: Qcow2Image.openFile(file), file, diskPath, steps: 0 };
  const model: Model = { current: start.data.slice(), snapshots: new Map(), nextName: 1 };
  try {
    await fc.asyncModelRun(() => ({ model, real }), commands);
    compareThroughEngine(context, model, real);
    await compareThroughQemu(context, model, real);
  } finally {
    real.image.close();
  }
}

export function describeCounts(label: string, counts: SoakCounts): string {
  const kinds = Object.entries(counts.byKind)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([kind, count]) => `${kind} ${count}`)
    .join(', ');
  return `soak ${label}: ${counts.steps} steps in ${counts.runs} runs (${kinds}); ${counts.compares} engine comparisons of every state, ${counts.qemuChecks} qemu-img checks, ${counts.qemuReads} qemu-img reads`;
}
