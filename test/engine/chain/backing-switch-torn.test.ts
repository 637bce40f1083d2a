/**
 * A rebase's header switch against a power cut that tears writes into 512-byte sectors (a disk
 * promises no more than a sector written whole). Every write of the overlay is recorded with the
 * flushes between them; for each stretch between two flushes, every subset of the sectors it
 * changed is laid over the file as the last flush left it, and each such file must be an image
 * qemu-img checks clean that reads the guest data as before. Was: adding a backing-format
 * extension (QEMU puts it first) shifted every extension after it, and the one write that switched
 * the header spanned two sectors: with only the second on disk the overlay named no backing file
 * at all (read zeros, both checkers clean), or a data-file name was cut in two (unopenable).
 */
import * as fs from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { rebaseSteps } from '../../../src/shared/qcow2/chain/rebase.ts';
import type { BlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { defaultOpenFile } from '../../../src/shared/qcow2/image/image.ts';
import { runSteps } from '../../../src/shared/qcow2/steps.ts';
import { qemuCompare, qemuImg, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { wrapFile } from '../../helpers/wrapped-file.ts';

const SECTOR = 512;
let folder: TempDir;
beforeEach(() => {
  folder = tempDir();
});
afterEach(() => folder.cleanup());

type Event = { kind: 'write'; position: number; bytes: Uint8Array } | { kind: 'flush' };

/** Opens files as usual, recording the writes and flushes of `recorded`. */
function recordingOpen(recorded: string, events: Event[]): (filePath: string, readOnly: boolean) => BlockFile {
  return (filePath, readOnly) => {
    const file = defaultOpenFile(filePath, readOnly);
    if (filePath !== recorded) return file;
    return wrapFile(file, {
      write: (buffer, position) => {
        events.push({ kind: 'write', position, bytes: buffer.slice() });
        file.write(buffer, position);
      },
      flush: () => {
        events.push({ kind: 'flush' });
        file.flush();
      },
    });
  };
}

/** Every file a power cut can leave: per stretch between flushes, each subset of the sectors it changed over the last flushed file. */
function tornStates(initial: Uint8Array, events: readonly Event[], powerCuts = true): { label: string; bytes: Uint8Array }[] {
  const states: { label: string; bytes: Uint8Array }[] = [];
  let durable = Buffer.from(initial);
  let stretch = 0;
  let pending: Extract<Event, { kind: 'write' }>[] = [];
  const settle = (): void => {
    let end = durable.length;
    for (const write of pending) end = Math.max(end, write.position + write.bytes.length);
    const before = Buffer.alloc(end);
    durable.copy(before);
    const after = Buffer.from(before);
    for (const write of pending) after.set(write.bytes, write.position);
    const changed: number[] = [];
    for (let from = 0; from < end; from += SECTOR) if (!after.subarray(from, from + SECTOR).equals(before.subarray(from, from + SECTOR))) changed.push(from / SECTOR);
    expect(changed.length, `stretch ${stretch}: few enough sectors to try every subset`).toBeLessThanOrEqual(10);
    // Mask 0 is the file as the last flush left it: where a kill (not only a power cut) can stop.
    for (let mask = 0; mask < (powerCuts ? 2 ** changed.length - 1 : 1); mask++) {
      const state = Buffer.from(before);
      changed.forEach((sector, index) => {
        if ((mask & (1 << index)) !== 0) after.copy(state, sector * SECTOR, sector * SECTOR, sector * SECTOR + SECTOR);
      });
      states.push({ label: `stretch ${stretch}, sectors ${changed.filter((_, index) => (mask & (1 << index)) !== 0).join(',')} of ${changed.join(',')}`, bytes: state });
    }
    durable = after;
    pending = [];
    stretch++;
  };
  for (const event of events) {
    if (event.kind === 'write') pending.push(event);
    else settle();
  }
  settle();
  return states;
}

/** Runs the rebase with its writes recorded, then checks every torn state of the overlay against the original. */
async function expectNoTornState(top: string, request: { backingFile: string | null; backingFormat?: 'qcow2' | 'raw'; unsafe?: boolean }, powerCuts = true): Promise<number> {
  const original = folder.file('original.qcow2');
  fs.copyFileSync(top, original);
  const initial = fs.readFileSync(top);
  const events: Event[] = [];
  runSteps(rebaseSteps({ image: top, ...request, openFile: recordingOpen(top, events) }));
  expect(events.filter((event) => event.kind === 'write').length, 'the rebase wrote the header').toBeGreaterThan(0);
  const states = tornStates(initial, events, powerCuts);
  const problems: string[] = [];
  for (const state of states) {
    fs.writeFileSync(top, state.bytes);
    const check = await qemuImg(['check', top], { okCodes: [0, 1, 2, 3] });
    if (check.code !== 0 && check.code !== 3) problems.push(`${state.label}: qemu-img check ${check.code}: ${(check.stdout + check.stderr).split('\n')[0] ?? ''}`);
    else if ((await qemuCompare(original, top, { formatB: 'qcow2' })).output !== 'Images are identical.\n') problems.push(`${state.label}: the guest data changed`);
  }
  expect(problems).toEqual([]);
  fs.copyFileSync(original, folder.file('before-last-rebase.qcow2'));
  // The rebase as it finished, for the next one.
  const finished = Buffer.from(initial);
  let end = finished.length;
  for (const event of events) if (event.kind === 'write') end = Math.max(end, event.position + event.bytes.length);
  const last = Buffer.alloc(end);
  finished.copy(last);
  for (const event of events) if (event.kind === 'write') last.set(event.bytes, event.position);
  fs.writeFileSync(top, last);
  return states.length;
}

async function qcow2(name: string, options: string, writes: string[] = []): Promise<string> {
  const file = folder.file(name);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', options, file, '16M']);
  if (writes.length > 0) await qemuIo(file, writes);
  return file;
}

/** Rewrites an image's header without its backing-format extension, as QEMU 5.2–6.0 wrote one for `-b` without `-F`. */
function dropBackingFormat(image: string): void {
  const bytes = fs.readFileSync(image);
  const headerLength = bytes.readUInt32BE(100);
  const kept: Buffer[] = [];
  for (let at = headerLength; ; ) {
    const type = bytes.readUInt32BE(at);
    const length = bytes.readUInt32BE(at + 4);
    if (type === 0) break;
    const whole = 8 + Math.ceil(length / 8) * 8;
    if (type !== 0xe2792aca) kept.push(bytes.subarray(at, at + whole));
    at += whole;
  }
  const name = bytes.subarray(bytes.readUInt32BE(12), bytes.readUInt32BE(12) + bytes.readUInt32BE(16));
  const area = Buffer.concat([bytes.subarray(0, headerLength), ...kept, Buffer.alloc(8)]);
  area.writeBigUInt64BE(BigInt(area.length), 8);
  const header = Buffer.concat([area, name]);
  bytes.fill(0, 0, 4096);
  header.copy(bytes, 0);
  fs.writeFileSync(image, bytes);
}

describe('a rebase torn by a power cut into sectors', () => {
  // Was: a format changed in place, its extension past the first sector (where the appending
  // above puts it on such a header), was written after the name, each flushed: a kill between
  // them read the new file in the old format (a qcow2 file as raw; 'qco' as a format, unopenable).
  it('a backing format changed in place where its extension lies past the first sector: raw to qcow2 and back', { timeout: 60_000 }, async () => {
    await qcow2('base.qcow2', 'compat=1.1', ['write -P 0x11 0 1M']);
    await qemuImg(['convert', '-q', '-O', 'raw', folder.file('base.qcow2'), folder.file('base.raw')]);
    const top = await qcow2('top.qcow2', 'compat=1.1,backing_file=base.qcow2,backing_fmt=qcow2', ['write -P 0x31 2M 64k']);
    dropBackingFormat(top);
    // A raw file named, or a format changed in place, goes in one write, as QEMU's: a kill cannot
    // split it (a power cut tearing it across sectors can, as QEMU's), so only kills are tried.
    await expectNoTornState(top, { backingFile: 'base.raw', backingFormat: 'raw', unsafe: true }, false);
    expect(fs.readFileSync(top).readUInt32BE(504), 'the appended extension across the first sector').toBe(0xe2792aca);
    await expectNoTornState(top, { backingFile: 'base.qcow2', backingFormat: 'qcow2', unsafe: true }, false);
    await expectNoTornState(top, { backingFile: 'base.raw', backingFormat: 'raw', unsafe: true }, false);
    await expectNoTornState(top, { backingFile: 'base.qcow2', backingFormat: 'qcow2' }, false);
  });

  // Was: each switch put the new name after the old one, and in a small header cluster the third
  // no longer fitted: the whole area went in one write over two sectors, and torn, the header named
  // the first name's file (its start overwritten by the new name's). Now the names take turns at
  // two places. (Names too long for two to fit still go in one write, as QEMU writes them.)
  it('~400-byte names, crossing the first sector, switched again and again in a 1 KiB header cluster', { timeout: 120_000 }, async () => {
    const long = folder.file(`${'x'.repeat(200)}/${'y'.repeat(170)}`);
    fs.mkdirSync(long, { recursive: true });
    await qcow2('base.qcow2', 'compat=1.1', ['write -P 0x11 0 1M']);
    for (const number of [1, 2, 3, 4]) fs.copyFileSync(folder.file('base.qcow2'), `${long}/b${number}.qcow2`);
    // The first file reads otherwise: a header naming it again (its name's bytes are still in the cluster) shows.
    await qemuIo(`${long}/b1.qcow2`, ['write -P 0x99 0 64k']);
    const top = await qcow2('top.qcow2', `compat=1.1,cluster_size=1024,backing_file=${long}/b1.qcow2,backing_fmt=qcow2`, []);
    runSteps(rebaseSteps({ image: top, backingFile: `${long}/b2.qcow2`, backingFormat: 'qcow2', unsafe: true }));
    for (const number of [3, 4, 2, 3, 4]) await expectNoTornState(top, { backingFile: `${long}/b${number}.qcow2`, backingFormat: 'qcow2', unsafe: true });
  });

  it('adding the backing-format extension to a header that ends at 512 bytes (the name at 0x200): rebase -u and a safe rebase', async () => {
    await qcow2('base.qcow2', 'compat=1.1', ['write -P 0x11 0 2M']);
    await qcow2('other.qcow2', 'compat=1.1', ['write -P 0x11 0 2M']);
    for (const request of [{ backingFile: 'base.qcow2', backingFormat: 'qcow2' as const, unsafe: true }, { backingFile: 'other.qcow2', backingFormat: 'qcow2' as const }]) {
      const top = await qcow2('top.qcow2', 'compat=1.1,backing_file=base.qcow2,backing_fmt=qcow2', ['write -P 0x31 1M 512k']);
      dropBackingFormat(top);
      const header = fs.readFileSync(top).subarray(0, 1024);
      expect(header.readBigUInt64BE(8), 'the backing name right after a 512-byte area').toBe(512n);
      await expectNoTornState(top, request);
    }
  });

  it('an image with an external data file of a long name: rebase -u onto a backing file, and flattened (-b "") again', async () => {
    const long = folder.file(`${'d'.repeat(200)}/${'e'.repeat(200)}`);
    fs.mkdirSync(long, { recursive: true });
    await qcow2('base.qcow2', 'compat=1.1', []);
    const top = await qcow2('top.qcow2', `compat=1.1,data_file=${long}/data.raw`, ['write -P 0x21 0 64k']);
    await expectNoTornState(top, { backingFile: 'base.qcow2', backingFormat: 'qcow2', unsafe: true });
    await expectNoTornState(top, { backingFile: null });
  });
});
