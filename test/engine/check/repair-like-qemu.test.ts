/**
 * Issue 21, part 2: images qemu-img check -r all makes clean, Cowbell's repair makes clean too —
 * rebuilding where qemu-img rebuilds, discarding what qemu-img discards and naming it in the
 * report — and every guest range qemu-img's own repair of a copy keeps reads the same through
 * Cowbell afterwards. Each case is built with qemu-img and qemu-io, then damaged by hand.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../../src/cli/run.ts';
import { checkExitCode, checkImagePath } from '../../../src/shared/qcow2/check/check.ts';
import type { CheckResult } from '../../../src/shared/qcow2/model.ts';
import * as poke from '../../helpers/qcow2-poke.ts';
import { firstDifference, qemuCheck, qemuImg, qemuInfo, qemuIo, tempDir } from '../../helpers/qemu.ts';
import { buildWithSnapshots, damages, type Damage } from '../../helpers/repair-damage.ts';
import { ACTIVE, cowbellStates, keptRangeMismatches, qemuStates, referenceStates } from '../../helpers/repair-comparison.ts';

const folder = tempDir();
afterAll(() => folder.cleanup());

const KiB = 1024;

interface RepairCase {
  damage: Damage;
  /** What is done, beyond a clean image. */
  outcome: string;
  /** What the report must say was lost. */
  lost(result: CheckResult): void;
}

function damage(name: string): Damage {
  const found = damages.find((candidate) => candidate.name.startsWith(name));
  if (found === undefined) throw new Error(`no damage ${name}`);
  return found;
}

const cases: RepairCase[] = [
  {
    damage: damage('no refcount table'),
    outcome: 'rebuilt',
    lost: (result) => expect(result.lost).toBeUndefined(),
  },
  {
    damage: damage('a refcount table of zero clusters'),
    outcome: 'rebuilt',
    lost: (result) => expect(result.lost).toBeUndefined(),
  },
  {
    damage: damage('a snapshot table past'),
    outcome: 'its snapshots dropped and reported',
    lost(result) {
      expect(result.lost).toEqual([
        { what: 'snapshot', 'snapshot-id': null, 'snapshot-name': null, reason: 'its snapshot table entry lies past the end of the file' },
        { what: 'snapshot', 'snapshot-id': null, 'snapshot-name': null, reason: 'its snapshot table entry lies past the end of the file' },
      ]);
    },
  },
  {
    damage: damage('a version 2 image botched'),
    outcome: 'the entries completed',
    lost: (result) => expect(result.lost).toBeUndefined(),
  },
  {
    damage: damage('an inactive L2 table'),
    outcome: 'the snapshot loses what the overwritten entries mapped, the guest keeps its data',
    lost(result) {
      expect(result.lost).toEqual([
        // 512 bytes of guest data: 64 entries of 4 KiB clusters; the other 448 entries stay sound.
        { what: 'range', 'snapshot-id': '1', 'snapshot-name': 'one', 'guest-offset': 0, length: 256 * KiB, reason: 'guest data overwrote the table that mapped it' },
      ]);
    },
  },
  {
    damage: damage('an L2 table two snapshots share'),
    outcome: 'both snapshots keep the sound entries, and the loss of each is reported',
    lost(result) {
      const range = { 'guest-offset': 0, length: 256 * KiB, reason: 'guest data overwrote the table that mapped it' };
      expect(result.lost).toEqual([
        { what: 'range', 'snapshot-id': '1', 'snapshot-name': 'one', ...range },
        { what: 'range', 'snapshot-id': '2', 'snapshot-name': 'two', ...range },
      ]);
    },
  },
];

describe('repairs at least what qemu-img check -r all repairs', { timeout: 120_000 }, () => {
  const bases = { '0.10': folder.file('base-v2.qcow2'), '1.1': folder.file('base-v3.qcow2') };
  beforeAll(async () => {
    await buildWithSnapshots(bases['0.10'], '0.10');
    await buildWithSnapshots(bases['1.1'], '1.1');
  }, 60_000);

  for (const [index, testCase] of cases.entries()) {
    it(`${testCase.damage.name}: ${testCase.outcome}`, async () => {
      const damaged = folder.file(`case-${index}.qcow2`);
      if (testCase.damage.build) await testCase.damage.build(damaged);
      else fs.copyFileSync(bases[testCase.damage.compat], damaged);
      const original = await qemuStates(damaged);
      await testCase.damage.apply(damaged);
      expect((await qemuCheck(damaged)).code, 'the damage is real').toBeGreaterThan(0);

      const byQemu = folder.file(`case-${index}-qemu.qcow2`);
      const byCowbell = folder.file(`case-${index}-cowbell.qcow2`);
      fs.copyFileSync(damaged, byQemu);
      fs.copyFileSync(damaged, byCowbell);
      const reference = referenceStates(await qemuStates(damaged), original);
      await qemuImg(['check', '-q', '-r', 'all', byQemu], { okCodes: [0, 1, 2, 3] });
      expect((await qemuCheck(byQemu)).code, "qemu-img's own repair makes it clean").toBe(0);

      // Checked, not refused: a corruption found (exit 2), as qemu-img finds one.
      const found = checkImagePath(byCowbell);
      expect(checkExitCode(found), found.messages.slice(0, 5).join('\n')).toBe(2);

      const repaired = checkImagePath(byCowbell, { repair: 'all' });
      expect(checkExitCode(repaired), repaired.messages.slice(-5).join('\n')).toBe(0);
      const qemuAfterOurs = await qemuCheck(byCowbell);
      expect(qemuAfterOurs.code, qemuAfterOurs.output).toBe(0);
      expect(checkExitCode(checkImagePath(byCowbell))).toBe(0);
      testCase.lost(repaired);

      const ours = cowbellStates(byCowbell);
      expect(keptRangeMismatches(reference, await qemuStates(byQemu), ours)).toEqual([]);
      // qemu-img reads Cowbell's repair as Cowbell does.
      const theirsOfOurs = await qemuStates(byCowbell);
      for (const [key, bytes] of ours) expect(firstDifference(theirsOfOurs.get(key) ?? new Uint8Array(0), bytes ?? new Uint8Array(1)), key).toBe(-1);
    });
  }

  it('the botched v3 image keeps both snapshots, their data and their names; qemu-img sees the completed extra data', async () => {
    const path = folder.file('botched.qcow2');
    fs.copyFileSync(bases['0.10'], path);
    const before = await qemuStates(path);
    await damage('a version 2 image botched').apply(path);
    checkImagePath(path, { repair: 'all' });
    expect(poke.snapshotTable(path).map((entry) => [entry.id, entry.name, entry.extraBytes])).toEqual([
      ['1', 'one', 24],
      ['2', 'two', 24],
    ]);
    const after = cowbellStates(path);
    for (const key of ['1/one', '2/two', ACTIVE]) expect(firstDifference(after.get(key) ?? new Uint8Array(0), before.get(key) ?? new Uint8Array(1)), key).toBe(-1);
    expect((await qemuInfo(path)).snapshots?.map((snapshot) => snapshot.name)).toEqual(['one', 'two']);
  });

  it('a file cut one byte short inside its last snapshot\'s name: clean as qemu-img reads it (zeros past the end), every snapshot kept by check, -r leaks and -r all', async () => {
    const path = folder.file('short-by-one.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', path, '8M']);
    await qemuIo(path, ['write -P 0xaa 0 1M']);
    await qemuImg(['snapshot', '-c', 's1', path]);
    await qemuIo(path, ['write -P 0xbb 0 1M']);
    // The snapshot table is the last thing in the file: the cut takes the last byte of "s2".
    await qemuImg(['snapshot', '-c', 's2', path]);
    fs.truncateSync(path, fs.statSync(path).size - 1);
    expect((await qemuCheck(path)).code, 'qemu-img finds nothing wrong').toBe(0);
    const before = await qemuStates(path);
    expect(checkExitCode(checkImagePath(path))).toBe(0);
    for (const repair of ['leaks', 'all'] as const) {
      const copy = folder.file(`short-by-one-${repair}.qcow2`);
      fs.copyFileSync(path, copy);
      const repaired = checkImagePath(copy, { repair });
      expect(checkExitCode(repaired), repaired.messages.join('\n')).toBe(0);
      expect(repaired.lost).toBeUndefined();
      expect((await qemuCheck(copy)).code, `qemu-img check after -r ${repair}`).toBe(0);
      expect((await qemuInfo(copy)).snapshots?.map((snapshot) => [snapshot.id, snapshot.name])).toEqual([['1', 's1'], ['2', 's']]);
      const after = cowbellStates(copy);
      expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
      for (const [key, bytes] of before) expect(firstDifference(after.get(key) ?? new Uint8Array(0), bytes ?? new Uint8Array(1)), key).toBe(-1);
    }
  });

  it('a garbage id length in the first snapshot entry (it swallows the next): -r all repairs as qemu-img does, the same snapshots left', async () => {
    const path = folder.file('swallowing-id.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', path, '1M']);
    await qemuIo(path, ['write -P 0x11 0 64k']);
    await qemuImg(['snapshot', '-c', 'snapA', path]);
    await qemuIo(path, ['write -P 0x22 0 32k']);
    await qemuImg(['snapshot', '-c', 'snapBBBBBBBB', path]);
    const tableOffset = Number(poke.readU64(path, 64));
    const handle = fs.openSync(path, 'r+');
    fs.writeSync(handle, Uint8Array.of(0xff, 0xff), 0, 2, tableOffset + 12);
    fs.closeSync(handle);
    fs.truncateSync(path, fs.statSync(path).size + 70_000);
    const byQemu = folder.file('swallowing-id-qemu.qcow2');
    fs.copyFileSync(path, byQemu);
    await qemuImg(['check', '-q', '-r', 'all', byQemu], { okCodes: [0, 1, 2, 3] });
    const repaired = checkImagePath(path, { repair: 'all' });
    expect(checkExitCode(repaired), repaired.messages.slice(-5).join('\n')).toBe(0);
    expect((await qemuCheck(path)).code).toBe(0);
    const names = async (file: string) => (await qemuInfo(file)).snapshots?.map((snapshot) => [snapshot.id, snapshot.name]);
    expect(await names(path)).toEqual(await names(byQemu));
  });

  it('an L1 entry naming a data cluster (its bytes read as a broken L2 table): one -r all moves the data away and repairs the entries, clean, the guest data kept', async () => {
    const path = folder.file('l1-on-data.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', path, '1G']);
    await qemuIo(path, ['write -P 0x15 0 64k', 'write -P 0x77 64k 64k']);
    const before = await qemuStates(path);
    const l1Offset = Number(poke.readU64(path, 40));
    const l2Offset = Number(poke.readU64(path, l1Offset) & 0x00ff_ffff_ffff_fe00n);
    const dataOffset = poke.readU64(path, l2Offset) & 0x00ff_ffff_ffff_fe00n;
    poke.writeU64(path, l1Offset + 8, (1n << 63n) | dataOffset);
    const repaired = checkImagePath(path, { repair: 'all' });
    expect(checkExitCode(repaired), repaired.messages.slice(-3).join('\n')).toBe(0);
    expect((await qemuCheck(path)).code).toBe(0);
    const after = await qemuStates(path);
    const guest = after.get(ACTIVE) ?? new Uint8Array(0);
    expect(firstDifference(guest.subarray(0, 128 * KiB), (before.get(ACTIVE) ?? new Uint8Array(1)).subarray(0, 128 * KiB))).toBe(-1);
  });

  it('a compressed cluster whose sector count runs onto an L1 table: -r all shortens it to its data, clean for both tools, every state reads the same, and the disk takes writes again', async () => {
    // qemu-img's repair raises the L1 table's refcount and calls that clean; Cowbell saw an L1
    // table used as guest data, exit 2, and refused every write.
    const path = folder.file('compressed-span.qcow2');
    const recipe = damage('a compressed cluster whose sector count');
    await recipe.build?.(path);
    await recipe.apply(path);
    const before = await qemuStates(path);
    expect((await qemuCheck(path)).code).toBe(2);

    const repaired = checkImagePath(path, { repair: 'all' });
    expect(checkExitCode(repaired), repaired.messages.slice(-3).join('\n')).toBe(0);
    expect(repaired.messages.join('\n')).toMatch(/its compressed data takes \d+ sectors?, not the \d+ that ran onto cluster/);
    expect((await qemuCheck(path)).code).toBe(0);
    expect(checkExitCode(checkImagePath(path))).toBe(0);
    const after = await qemuStates(path);
    expect([...after.keys()]).toEqual([...before.keys()]);
    for (const [state, bytes] of before) expect(firstDifference(after.get(state) ?? new Uint8Array(0), bytes ?? new Uint8Array(1)), state).toBe(-1);
    const io = { out: () => {}, err: (text: string) => expect.fail(text) };
    expect(await runCli(['snapshot', 'create', path, 'two'], io)).toBe(0);
    expect((await qemuCheck(path)).code).toBe(0);
  });

  it("a snapshot naming an earlier snapshot's L1 table: -r all gives it a copy of its own (qemu-img's raises the refcounts of one table both states would change), clean for both tools, each state reads as before, and writes go ahead", async () => {
    const path = folder.file('shared-snapshot-l1.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', path, '8M']);
    await qemuIo(path, ['write -P 0x31 0 1M']);
    await qemuImg(['snapshot', '-c', 'one', path]);
    await qemuIo(path, ['write -P 0x32 1M 1M']);
    await qemuImg(['snapshot', '-c', 'two', path]);
    const [one, two] = poke.snapshotTable(path);
    if (one === undefined || two === undefined) throw new Error('snapshots missing');
    poke.writeU64(path, two.position, BigInt(one.l1Offset));
    const before = await qemuStates(path);

    const repaired = checkImagePath(path, { repair: 'all' });
    expect(checkExitCode(repaired), repaired.messages.slice(-3).join('\n')).toBe(0);
    expect((await qemuCheck(path)).code).toBe(0);
    const [oneAfter, twoAfter] = poke.snapshotTable(path);
    expect(twoAfter?.l1Offset).not.toBe(oneAfter?.l1Offset);
    const after = await qemuStates(path);
    expect([...after.keys()]).toEqual([...before.keys()]);
    for (const [state, bytes] of before) expect(firstDifference(after.get(state) ?? new Uint8Array(0), bytes ?? new Uint8Array(1)), state).toBe(-1);
    expect(await runCli(['snapshot', 'create', path, 'three'], { out: () => {}, err: (text: string) => expect.fail(text) })).toBe(0);
    await qemuIo(path, ['write -P 0x33 0 2M']);
    expect((await qemuCheck(path)).code).toBe(0);
  });

  it('-r leaks with snapshot entries it cannot use frees none of their clusters (they look leaked while the table still names them)', async () => {
    const path = folder.file('leaks-with-dropped.qcow2');
    fs.copyFileSync(bases['1.1'], path);
    const before = await qemuStates(path);
    const tableOffset = poke.readU64(path, 64);
    await damage('a snapshot table past').apply(path);
    const repaired = checkImagePath(path, { repair: 'leaks' });
    expect(checkExitCode(repaired)).toBe(2);
    expect(repaired.messages.join('\n')).toMatch(/run the check with --repair all/);
    // The table's offset put back: every refcount is as it was, and so is every snapshot's data.
    poke.writeU64(path, 64, tableOffset);
    expect((await qemuCheck(path)).code, 'qemu-img check with the table back').toBe(0);
    const after = await qemuStates(path);
    for (const [key, bytes] of before) expect(firstDifference(after.get(key) ?? new Uint8Array(0), bytes ?? new Uint8Array(1)), key).toBe(-1);
  });

  // Was: one entry with a field out of range dropped it and every entry after it, healthy ones too.
  it('-r all drops only a snapshot entry with a field no file can have (an L1 offset of 2^60); the entries after it and their data stay', async () => {
    const path = folder.file('one-bad-entry.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', path, '4M']);
    await qemuIo(path, ['write -P 0xaa 0 1M']);
    await qemuImg(['snapshot', '-c', 's1', path]);
    await qemuIo(path, ['write -P 0xbb 0 1M']);
    await qemuImg(['snapshot', '-c', 's2', path]);
    await qemuIo(path, ['write -P 0xcc 0 1M']);
    const before = await qemuStates(path);
    const table = Number(poke.readU64(path, 64));
    poke.writeU64(path, table, 1n << 60n);
    const repaired = checkImagePath(path, { repair: 'all' });
    expect(repaired.lost?.map((loss) => loss['snapshot-name'])).toEqual(['s1']);
    expect((await qemuCheck(path)).code).toBe(0);
    expect((await qemuInfo(path)).snapshots?.map((snapshot) => snapshot.name)).toEqual(['s2']);
    const after = await qemuStates(path);
    for (const key of [...before.keys()].filter((name) => name !== '1/s1')) {
      expect(firstDifference(after.get(key) ?? new Uint8Array(0), before.get(key) ?? new Uint8Array(1)), key).toBe(-1);
    }
  });

  it('cowbell check -r all prints what was lost, and --json carries it', async () => {
    const path = folder.file('cli.qcow2');
    fs.copyFileSync(bases['1.1'], path);
    await damage('an inactive L2 table').apply(path);
    const copy = folder.file('cli-copy.qcow2');
    fs.copyFileSync(path, copy);
    const out: string[] = [];
    const err: string[] = [];
    const io = { out: (text: string) => out.push(text), err: (text: string) => err.push(text) };
    expect(await runCli(['check', '-r', 'all', path], io)).toBe(0);
    expect(out.join('')).toContain('Lost in the repair');
    expect(out.join('')).toContain('snapshot 1 "one": guest bytes 0-262144 now read as zeros (guest data overwrote the table that mapped it)');
    out.length = 0;
    expect(await runCli(['check', '--json', '-r', 'all', copy], io)).toBe(0);
    const report = JSON.parse(out.join('')) as CheckResult;
    expect(report.lost).toEqual([{ what: 'range', 'snapshot-id': '1', 'snapshot-name': 'one', 'guest-offset': 0, length: 256 * KiB, reason: 'guest data overwrote the table that mapped it' }]);
  });
});
