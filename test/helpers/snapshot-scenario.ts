/**
 * One disk image that qemu-img/qemu-io and Cowbell take turns on, with a model of what the guest
 * holds now and of what it held when each snapshot was taken, and the checks every step must
 * pass: `qemu-img check` clean, both tools list the same snapshots, every snapshot and the
 * current state read back as modelled through qemu-img convert and through Cowbell's readers.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import type { ExpectStatic } from 'vitest';
import { parseHeader } from '../../src/shared/qcow2/format/header.ts';
import { snapshotEntrySize, parseSnapshotTable } from '../../src/shared/qcow2/format/snapshot-table.ts';
import { Qcow2Image } from '../../src/shared/qcow2/image/image.ts';
import { readImageInfo } from '../../src/shared/qcow2/image/info.ts';
import type { SnapshotTree } from '../../src/shared/qcow2/model.ts';
import { changeSnapshotName, readSnapshotTree, removeSnapshot, revertToSnapshot, takeSnapshot } from '../../src/shared/qcow2/snapshots/operations.ts';
import { applyToImage, applyToModel, randomGuestOps, type DiscardSemantics } from './guest-model.ts';
import { firstDifference, inBatches, qemuCheck, qemuImg, qemuInfo, qemuIo, rawOf, type QemuInfo } from './qemu.ts';
import { SeededRandom } from './seeded-random.ts';

export function fileHash(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** `qemu-img check` finds no leaks, no corruptions and exits 0. */
export async function expectCheckClean(expect: ExpectStatic, image: string, label = ''): Promise<void> {
  const check = await qemuCheck(image);
  expect(check.output, `${label}: qemu-img check`).not.toMatch(/ERROR|Leaked/);
  expect(check.code, `${label}: qemu-img check exit code\n${check.output}`).toBe(0);
  expect(check.report?.leaks ?? 0, `${label}: leaks`).toBe(0);
  expect(check.report?.corruptions ?? 0, `${label}: corruptions`).toBe(0);
}

/** The snapshot table entries exactly as on disk, by id (for byte-for-byte comparisons). */
export function rawSnapshotEntries(image: string): Map<string, Uint8Array> {
  const bytes = new Uint8Array(fs.readFileSync(image));
  const header = parseHeader(bytes.subarray(0, Math.min(bytes.length, 1024 * 1024)), bytes.length);
  const table = bytes.subarray(header.snapshotsOffset);
  const entries = parseSnapshotTable(table, header.snapshotCount, header.version);
  const raw = new Map<string, Uint8Array>();
  let position = 0;
  const encoder = new TextEncoder();
  for (const entry of entries) {
    // The entry itself, without the padding to 8 bytes that follows it (QEMU leaves that unwritten after the last one).
    const length = 40 + entry.extraData.length + encoder.encode(entry.id).length + encoder.encode(entry.name).length;
    raw.set(entry.id, table.slice(position, position + length));
    position += snapshotEntrySize(entry);
  }
  return raw;
}

type QemuSnapshot = NonNullable<QemuInfo['snapshots']>[number];

function isoDate(snapshot: QemuSnapshot): string {
  return new Date(snapshot['date-sec'] * 1000 + Math.floor(snapshot['date-nsec'] / 1_000_000)).toISOString();
}

/**
 * qemu-img and Cowbell list the same snapshots: `qemu-img info --output=json` equals Cowbell's
 * info field for field (ids, names, dates, VM clock, VM state size, icount), and Cowbell's tree
 * has the same ids, names, dates, VM clock and VM state size; with `textListing`, every snapshot
 * is on its own line of `qemu-img snapshot -l` too. Returns the tree.
 */
export async function expectSameSnapshots(expect: ExpectStatic, image: string, label = '', options: { textListing?: boolean } = {}): Promise<SnapshotTree> {
  const qemu = [...((await qemuInfo(image)).snapshots ?? [])].sort((a, b) => Number(a.id) - Number(b.id));
  const ours = [...(readImageInfo(image).snapshots ?? [])].sort((a, b) => Number(a.id) - Number(b.id));
  expect(ours, `${label}: Cowbell's info against qemu-img info`).toEqual(qemu);
  const tree = readSnapshotTree(image);
  const treeRows = [...tree.snapshots]
    .sort((a, b) => Number(a.id) - Number(b.id))
    .map((node) => ({ id: node.id, name: node.name, date: node.date, vmClock: node.vmClock, vmStateSize: node.vmStateSize }));
  const qemuRows = qemu.map((snapshot) => ({
    id: snapshot.id,
    name: snapshot.name,
    date: isoDate(snapshot),
    vmClock: snapshot['vm-clock-sec'] * 1e9 + snapshot['vm-clock-nsec'],
    vmStateSize: snapshot['vm-state-size'],
  }));
  expect(treeRows, `${label}: Cowbell's tree against qemu-img info`).toEqual(qemuRows);
  if (options.textListing) {
    const listed = await qemuImg(['snapshot', '-l', image]);
    for (const snapshot of qemu) expect(listed.stdout, `${label}: qemu-img snapshot -l`).toMatch(new RegExp(`^${snapshot.id} +${escapeRegExp(snapshot.name)} `, 'm'));
  }
  return tree;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export interface ScenarioOptions {
  image: string;
  clusterSize: number;
  version: 2 | 3;
  hasBacking: boolean;
  /** What the guest reads before any step (zeros, the backing file, or convert's source). */
  initial: Uint8Array;
  seed: number;
}

export class SnapshotScenario {
  readonly image: string;
  model: Uint8Array;
  /** What the guest held when each snapshot (by its current name) was taken. */
  readonly taken = new Map<string, Uint8Array>();
  private readonly random: SeededRandom;
  private readonly semantics: DiscardSemantics;
  private readonly clusterSize: number;

  constructor(options: ScenarioOptions) {
    this.image = options.image;
    this.model = options.initial.slice();
    this.random = new SeededRandom(options.seed);
    this.clusterSize = options.clusterSize;
    this.semantics = { clusterSize: options.clusterSize, virtualSize: options.initial.length, version: options.version, hasBacking: options.hasBacking };
  }

  get size(): number {
    return this.model.length;
  }

  /** Pattern writes and one zero write through qemu-io, at unaligned offsets up to three clusters long. */
  async qemuWrite(count = 3): Promise<void> {
    const commands: string[] = [];
    for (let index = 0; index < count; index++) {
      const offset = this.random.int(0, this.size - 1);
      const length = Math.max(1, Math.min(this.size - offset, this.random.int(1, 3 * this.clusterSize)));
      const pattern = this.random.int(1, 256);
      commands.push(`write -P ${pattern} ${offset} ${length}`);
      this.model.fill(pattern, offset, offset + length);
    }
    const zeroOffset = this.random.int(0, this.size - 1);
    const zeroLength = Math.min(this.size - zeroOffset, this.clusterSize + 100);
    commands.push(`write -z ${zeroOffset} ${zeroLength}`);
    this.model.fill(0, zeroOffset, zeroOffset + zeroLength);
    await qemuIo(this.image, commands);
  }

  /** Random writes, zero writes and discards through the engine, in one session. */
  engineWrite(count = 4): void {
    const image = Qcow2Image.open(this.image);
    try {
      this.engineWriteOpen(image, count);
    } finally {
      image.close();
    }
  }

  /** The same, on an image the caller keeps open (several operations in one session). */
  engineWriteOpen(image: Qcow2Image, count = 4): void {
    for (const op of randomGuestOps(this.random, this.size, this.clusterSize, count)) {
      applyToImage(image, op);
      applyToModel(this.model, op, this.semantics);
    }
  }

  cowbellCreate(name: string): string {
    const created = takeSnapshot(this.image, name);
    this.taken.set(name, this.model.slice());
    return created.id;
  }

  async qemuCreate(name: string): Promise<void> {
    await qemuImg(['snapshot', '-c', name, this.image]);
    this.taken.set(name, this.model.slice());
  }

  cowbellApply(name: string): void {
    revertToSnapshot(this.image, name);
    this.model = this.takenOf(name).slice();
  }

  async qemuApply(name: string): Promise<void> {
    await qemuImg(['snapshot', '-a', name, this.image]);
    this.model = this.takenOf(name).slice();
  }

  cowbellDelete(name: string): void {
    removeSnapshot(this.image, name);
    this.taken.delete(name);
  }

  async qemuDelete(name: string): Promise<void> {
    await qemuImg(['snapshot', '-d', name, this.image]);
    this.taken.delete(name);
  }

  cowbellRename(name: string, newName: string): void {
    changeSnapshotName(this.image, name, newName);
    this.taken.set(newName, this.takenOf(name));
    this.taken.delete(name);
  }

  /** Bookkeeping for operations a test runs on an image it opened itself. */
  recordCreated(name: string): void {
    this.taken.set(name, this.model.slice());
  }

  recordApplied(name: string): void {
    this.model = this.takenOf(name).slice();
  }

  recordDeleted(name: string): void {
    this.taken.delete(name);
  }

  takenOf(name: string): Uint8Array {
    const bytes = this.taken.get(name);
    if (bytes === undefined) throw new Error(`the scenario has no snapshot named ${name}`);
    return bytes;
  }

  /** Every check a step must pass; returns Cowbell's tree for further assertions. */
  async verify(expect: ExpectStatic, label: string): Promise<SnapshotTree> {
    await expectCheckClean(expect, this.image, label);
    const tree = await expectSameSnapshots(expect, this.image, label);
    expect(tree.snapshots.map((node) => node.name).sort(), `${label}: snapshot names`).toEqual([...this.taken.keys()].sort());
    await this.expectData(expect, label);
    return tree;
  }

  /** Each snapshot and the current state hold what the model says, seen by qemu-img and by Cowbell. */
  async expectData(expect: ExpectStatic, label: string): Promise<void> {
    const names = [...this.taken.keys()];
    const qemuViews = await inBatches(
      [() => rawOf(this.image), ...names.map((name) => () => rawOf(this.image, { snapshot: name }))],
      2,
    );
    expect(firstDifference(qemuViews[0] ?? new Uint8Array(), this.model), `${label}: first wrong byte of the current state (qemu-img)`).toBe(-1);
    names.forEach((name, index) => {
      expect(firstDifference(qemuViews[index + 1] ?? new Uint8Array(), this.takenOf(name)), `${label}: first wrong byte of snapshot ${name} (qemu-img)`).toBe(-1);
    });
    const image = Qcow2Image.open(this.image, { readOnly: true });
    try {
      expect(firstDifference(image.read(0, image.virtualSize), this.model), `${label}: first wrong byte of the current state (Cowbell)`).toBe(-1);
      for (const entry of image.snapshots) {
        const reader = image.snapshotReader(entry);
        const bytes = new Uint8Array(reader.virtualSize);
        reader.readInto(bytes, 0);
        expect(firstDifference(bytes, this.takenOf(entry.name)), `${label}: first wrong byte of snapshot ${entry.name} (Cowbell)`).toBe(-1);
      }
    } finally {
      image.close();
    }
  }
}
