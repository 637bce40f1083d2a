/**
 * A compat 0.10 (version 2) disk upgraded to compat 1.1 (version 3) on the way through a rewrite
 * (RewriteRequest.version 3), judged against `qemu-img amend -o compat=1.1` of the same disk: the
 * same header fields and extensions (the feature name table only above 4 KiB clusters), the same
 * snapshots with the same v3 extra data (an entry of an old QEMU had none, or half), qemu-img check
 * clean, every state's guest data as before, Cowbell's tree and notes kept, a VM state QEMU still
 * loads. The way back (version 3 to 2) and zstd on a version 2 disk without the upgrade are refused.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readImageInfo } from '../../../src/shared/qcow2/image/info.ts';
import { rewriteImage } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { readSnapshotTree, takeSnapshot } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { thrownQcow2Error } from '../../helpers/outcomes.ts';
import { cutSnapshotExtraData, readBytes, readU32, snapshotTable } from '../../helpers/qcow2-poke.ts';
import { qemuImg, qemuInfo, qemuIo, qemuMap, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { loadVm, saveVm } from '../../helpers/qemu-system.ts';
import { expectCheckClean, fileHash, rawSnapshotEntries } from '../../helpers/snapshot-scenario.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

const MiB = 1024 * 1024;

interface UpgradeCase {
  clusterSize: number;
  backing: boolean;
  /** A snapshot taken by QEMU's savevm, with a VM state (a few hundred KiB: the 64 KiB case only). */
  vmState: boolean;
}

const CASES: UpgradeCase[] = [
  { clusterSize: 64 * 1024, backing: false, vmState: true },
  { clusterSize: 4096, backing: true, vmState: false },
  { clusterSize: 512, backing: false, vmState: false },
  { clusterSize: 2 * MiB, backing: true, vmState: false },
];

const caseName = (testCase: UpgradeCase): string => `${testCase.clusterSize / 1024} KiB clusters${testCase.backing ? ', over a backing file' : ''}${testCase.vmState ? ', a savevm snapshot' : ''}`;

/**
 * A version 2 disk with a history: data, zeros written over the backing file, a compressed cluster;
 * a snapshot as QEMU before 1.1 wrote it (no extra data), one with half of v3's (16 bytes), one of
 * Cowbell's with a note, and (vmState) one with a VM state.
 */
async function versionTwoDisk(name: string, testCase: UpgradeCase): Promise<string> {
  const image = folder.file(name);
  const backingArgs: string[] = [];
  if (testCase.backing) {
    const base = folder.file(`${name}.base.qcow2`);
    await qemuImg(['create', '-q', '-f', 'qcow2', base, String(8 * MiB)]);
    await qemuIo(base, [`write -P 0x11 0 ${8 * MiB}`]);
    backingArgs.push('-b', base, '-F', 'qcow2');
  }
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `compat=0.10,cluster_size=${testCase.clusterSize}`, ...backingArgs, image, String(8 * MiB)]);
  const compressedAt = 6 * MiB;
  await qemuIo(image, [`write -P 1 0 ${MiB}`, `write -P 0 ${2 * MiB} ${2 * MiB}`, `write -c -P 7 ${compressedAt} ${testCase.clusterSize}`]);
  await qemuImg(['snapshot', '-c', 'old', image]);
  await qemuIo(image, [`write -P 2 ${MiB / 2} ${MiB}`]);
  await qemuImg(['snapshot', '-c', 'sixteen', image]);
  await qemuIo(image, [`write -P 3 ${4 * MiB} ${MiB / 2}`]);
  takeSnapshot(image, 'noted', undefined, 'before the update');
  await qemuIo(image, [`write -P 4 ${5 * MiB} ${MiB / 2}`]);
  if (testCase.vmState) await saveVm(image, 'running');
  cutSnapshotExtraData(image, [0, 16]);
  expect(snapshotTable(image).map((entry) => entry.extraBytes).slice(0, 2)).toEqual([0, 16]);
  await expectCheckClean(expect, image, `${name} before the upgrade`);
  return image;
}

/** The header extensions as they lie after the fixed header: type and bytes, in order (read here, not by the engine). */
function headerExtensions(image: string): { type: number; data: string }[] {
  const version = readU32(image, 4);
  let position = version === 2 ? 72 : readU32(image, 100);
  const extensions: { type: number; data: string }[] = [];
  for (;;) {
    const type = readU32(image, position);
    if (type === 0) return extensions;
    const length = readU32(image, position + 4);
    extensions.push({ type, data: Buffer.from(readBytes(image, position + 8, length)).toString('hex') });
    position += 8 + Math.ceil(length / 8) * 8;
  }
}

/** Each snapshot's extra data size and its first 24 bytes (vm_state_size_large, disk_size, icount), by id. */
function standardExtraData(image: string): Map<string, { size: number; standard: string }> {
  const standard = new Map<string, { size: number; standard: string }>();
  for (const [id, entry] of rawSnapshotEntries(image)) {
    const size = Buffer.from(entry).readUInt32BE(36);
    standard.set(id, { size, standard: Buffer.from(entry.subarray(40, 40 + Math.min(size, 24))).toString('hex') });
  }
  return standard;
}

async function guestStates(image: string, names: string[]): Promise<Map<string, Uint8Array>> {
  const states = new Map<string, Uint8Array>([['current', await rawOf(image)]]);
  for (const name of names) states.set(name, await rawOf(image, { snapshot: name }));
  return states;
}

const treeRows = (image: string) =>
  readSnapshotTree(image)
    .snapshots.map((node) => ({ name: node.name, parentId: node.parentId, note: node.note }))
    .sort((a, b) => a.name.localeCompare(b.name));

describe('a compat 0.10 disk upgraded to compat 1.1 by a rewrite, as qemu-img amend -o compat=1.1 upgrades it', { timeout: 180_000 }, () => {
  for (const testCase of CASES) {
    it(caseName(testCase), async () => {
      const name = `v2-${testCase.clusterSize}${testCase.backing ? '-backed' : ''}`;
      const source = await versionTwoDisk(`${name}.qcow2`, testCase);
      const amended = folder.file(`${name}-amended.qcow2`);
      fs.copyFileSync(source, amended);
      await qemuImg(['amend', '-o', 'compat=1.1', amended]);
      const names = (await qemuInfo(source)).snapshots?.map((snapshot) => snapshot.name) ?? [];
      expect(names).toEqual(['old', 'sixteen', 'noted', ...(testCase.vmState ? ['running'] : [])]);
      const states = await guestStates(source, names);
      const tree = treeRows(source);
      const sourceHash = fileHash(source);

      const output = folder.file(`${name}-upgraded.qcow2`);
      const result = rewriteImage({ source, target: output, compression: 'keep', version: 3 });
      expect(result.upgradedToVersion3).toBe(true);
      expect(fileHash(source), 'the source is untouched').toBe(sourceHash);
      await expectCheckClean(expect, output, 'upgraded');

      // The header as QEMU's upgrade writes it: version 3, 16-bit refcounts, 112 bytes, its extensions.
      expect([readU32(output, 4), readU32(output, 96), readU32(output, 100)]).toEqual([3, 4, 112]);
      expect([readU32(amended, 4), readU32(amended, 96), readU32(amended, 100)]).toEqual([3, 4, 112]);
      expect(headerExtensions(output)).toEqual(headerExtensions(amended));
      expect(headerExtensions(output).some((extension) => extension.type === 0x6803f857), 'a feature name table').toBe(testCase.clusterSize > 4096);
      const info = await qemuInfo(output);
      const reference = await qemuInfo(amended);
      expect(info['format-specific']).toEqual(reference['format-specific']);
      expect(info['backing-filename']).toBe(reference['backing-filename']);

      // The same snapshots, each with the extra data version 3 requires, as the upgrade fills it in.
      expect(info.snapshots).toEqual(reference.snapshots);
      // Cowbell reads them as qemu-img does (its info adds the note Cowbell's record holds).
      expect(readImageInfo(output).snapshots?.map(({ note: _note, ...snapshot }) => snapshot)).toEqual(info.snapshots);
      const extra = standardExtraData(output);
      const referenceExtra = standardExtraData(amended);
      for (const [id, entry] of referenceExtra) {
        expect(extra.get(id)?.standard, `snapshot ${id}: vm_state_size_large, disk_size, icount`).toBe(entry.standard);
        expect(extra.get(id)?.size ?? 0, `snapshot ${id}: extra data`).toBeGreaterThanOrEqual(24);
      }
      expect([...extra.keys()]).toEqual([...referenceExtra.keys()]);

      for (const [state, bytes] of await guestStates(output, names)) expect(bytes, `${state}'s guest data`).toEqual(states.get(state));
      if (testCase.backing) {
        // Zeros written over the backing file: stored as data in version 2 (it has no zero cluster), a zero cluster now.
        const zeros = (await qemuMap(output)).filter((entry) => entry.start < 4 * MiB && entry.start + entry.length > 2 * MiB);
        expect(zeros.map((entry) => ({ zero: entry.zero, data: entry.data, depth: entry.depth }))).toEqual([{ zero: true, data: false, depth: 0 }]);
      }
      expect(treeRows(output)).toEqual(tree);
      expect(tree.find((row) => row.name === 'noted')?.note).toBe('before the update');
      if (testCase.vmState) expect((await loadVm(output, 'running')).ok, 'QEMU loads the saved VM state').toBe(true);
    });
  }

  it('in place, and with zstd compression: the disk itself becomes version 3, compressed with zstd, every state as before', async () => {
    const source = await versionTwoDisk('in-place.qcow2', { clusterSize: 64 * 1024, backing: false, vmState: false });
    const names = ['old', 'sixteen', 'noted'];
    const states = await guestStates(source, names);
    const result = rewriteImage({ source, compression: 'compress', compressionType: 1, version: 3 });
    expect(result).toMatchObject({ inPlace: true, upgradedToVersion3: true });
    await expectCheckClean(expect, source, 'upgraded in place');
    expect((await qemuInfo(source))['format-specific']?.data).toMatchObject({ compat: '1.1', 'compression-type': 'zstd' });
    expect((await qemuImg(['check', source])).stdout).toMatch(/[1-9][\d.]*% compressed clusters/);
    for (const [state, bytes] of await guestStates(source, names)) expect(bytes, `${state}'s guest data`).toEqual(states.get(state));
    expect(fs.readdirSync(folder.path).filter((entry) => entry.startsWith('.in-place'))).toEqual([]);
  });

  it('refused, with nothing written: zstd on a version 2 disk without the upgrade (NEEDS_VERSION_3), and version 3 back to 2 (UNSUPPORTED_FEATURE)', async () => {
    const old = folder.file('stays-v2.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', old, String(8 * MiB)]);
    await qemuIo(old, [`write -P 5 0 ${MiB}`]);
    await qemuImg(['snapshot', '-c', 'one', old]);
    const recent = folder.file('stays-v3.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', recent, String(8 * MiB)]);
    await qemuIo(recent, [`write -P 6 0 ${MiB}`]);
    const hashes = [fileHash(old), fileHash(recent)];
    expect(thrownQcow2Error(() => rewriteImage({ source: old, target: folder.file('zstd.qcow2'), compression: 'compress', compressionType: 1 })).code).toBe('NEEDS_VERSION_3');
    expect(thrownQcow2Error(() => rewriteImage({ source: recent, target: folder.file('back.qcow2'), compression: 'keep', version: 2 })).code).toBe('UNSUPPORTED_FEATURE');
    expect(thrownQcow2Error(() => rewriteImage({ source: recent, compression: 'keep', version: 2 })).code).toBe('UNSUPPORTED_FEATURE');
    expect([fileHash(old), fileHash(recent)]).toEqual(hashes);
    expect(fs.existsSync(folder.file('zstd.qcow2')) || fs.existsSync(folder.file('back.qcow2'))).toBe(false);
    // Asked for the version it already has, a disk stays as it is: no upgrade reported.
    expect(rewriteImage({ source: old, target: folder.file('same.qcow2'), compression: 'keep', version: 2 }).upgradedToVersion3).toBe(false);
    expect(readU32(folder.file('same.qcow2'), 4)).toBe(2);
  });
});
