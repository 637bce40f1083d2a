/**
 * Better than QEMU here. qemu-img 7.2's `snapshot -a` copies the snapshot's L1 table — with the
 * stale COPIED flags it was saved with — over the active one, and fixes the flags only at its
 * very end. Killed in between, it leaves active L1 entries with COPIED on L2 tables the snapshot
 * shares (refcount 2); QEMU trusts the flag, so its next guest write updates the shared L2 table
 * in place and changes the snapshot's own data.
 *
 * The first test reproduces that on the real qemu-img, so it stays a known fact: if the state
 * cannot be produced in a bounded number of tries it fails, saying so (a pass would otherwise
 * claim a fact it did not see). The second runs Cowbell's apply on the same image cut at every
 * write and walks the L1/L2 tables and refcounts of each crash state: no COPIED flag on a shared
 * cluster, ever — and the same "crash, then write through QEMU" leaves the snapshot intact.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeBlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { applySnapshot, findSnapshot } from '../../../src/shared/qcow2/snapshots/snapshots.ts';
import { crashPoints, crashState, describeCrashPoint, FaultFile, type CrashPoint } from '../../helpers/fault-file.ts';
import { qemuImg, qemuIo, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { walkImage } from './image-walk.ts';
import { crashSettings } from './runner.ts';

const SNAPSHOT_FILL = 0x11;
const QEMU_WRITE = 'write -P 0xee 0 512';

let folder: TempDir;
let basePath: string;

/** The issue's sequence: 512-byte clusters, three snapshots each over 24 MiB of its own data. */
async function buildBase(imagePath: string): Promise<void> {
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', imagePath, '24M']);
  const fills = [SNAPSHOT_FILL, 0x22, 0x33, 0x44];
  for (const [index, fill] of fills.entries()) {
    // cache=unsafe only speeds up the setup (no flush per cluster); the image is the same.
    await new Promise<void>((resolve, reject) => {
      const child = spawn('qemu-io', ['-t', 'unsafe', '-c', `write -P ${fill} 0 24M`, imagePath], { stdio: 'ignore' });
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`qemu-io exited with ${code}`))));
    });
    if (index < 3) await qemuImg(['snapshot', '-c', `s${index + 1}`, imagePath]);
  }
}

/**
 * Runs `qemu-img snapshot -a s1` and kills it with SIGKILL: after `kill.afterMs`, or the moment
 * `kill.when()` is true (polled while it runs), or never. Returns how long it ran.
 */
async function qemuApply(imagePath: string, kill: { afterMs?: number; when?: () => boolean } = {}): Promise<{ ms: number; killed: boolean }> {
  const start = performance.now();
  const child = spawn('qemu-img', ['snapshot', '-a', 's1', imagePath], { stdio: 'ignore' });
  const exited = new Promise<{ ms: number; killed: boolean }>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (_code, signal) => resolve({ ms: performance.now() - start, killed: signal === 'SIGKILL' }));
  });
  const timer = kill.afterMs === undefined ? null : setTimeout(() => child.kill('SIGKILL'), kill.afterMs);
  if (kill.when !== undefined) {
    // A synchronous poll: qemu-img runs on regardless, and no timer can lag behind it.
    while (child.exitCode === null && child.signalCode === null && performance.now() - start < 60_000) {
      if (kill.when()) {
        child.kill('SIGKILL');
        break;
      }
    }
  }
  const result = await exited;
  if (timer !== null) clearTimeout(timer);
  return result;
}

/** True once the image's active L1 table on disk starts with `firstEntry` (qemu-img has copied the snapshot's L1 over it). */
function activeL1StartsWith(imagePath: string, l1Offset: number, firstEntry: Uint8Array): () => boolean {
  const probe = new Uint8Array(8);
  return () => {
    const fd = fs.openSync(imagePath, 'r');
    try {
      fs.readSync(fd, probe, 0, 8, l1Offset);
    } finally {
      fs.closeSync(fd);
    }
    return probe.every((byte, index) => byte === firstEntry[index]);
  };
}

function staleCopiedEntries(imagePath: string): number {
  const file = NodeBlockFile.open(imagePath, { readOnly: true });
  try {
    return walkImage(file, { countReferences: false }).staleCopiedL1Entries;
  } finally {
    file.close();
  }
}

beforeAll(async () => {
  folder = tempDir();
  basePath = folder.file('base.qcow2');
  await buildBase(basePath);
}, 120_000);
afterAll(() => folder.cleanup());

describe('better than QEMU: a snapshot apply interrupted part-way', () => {
  it("qemu-img 7.2 (known fact): killed part-way, apply leaves stale COPIED flags on shared L2 tables, and QEMU's next write changes the snapshot", async () => {
    const imagePath = folder.file('qemu.qcow2');
    const normalRuns: number[] = [];
    for (let run = 0; run < 3; run++) {
      fs.copyFileSync(basePath, imagePath);
      normalRuns.push((await qemuApply(imagePath)).ms);
    }
    // The fastest run: on a loaded machine the slow ones mostly measure waiting.
    const normalMs = Math.min(...normalRuns);
    const tries: string[] = [];
    let stale = 0;
    const attempt = async (label: string, kill: { afterMs?: number; when?: () => boolean }): Promise<void> => {
      fs.copyFileSync(basePath, imagePath);
      const { ms, killed } = await qemuApply(imagePath, kill);
      stale = killed ? staleCopiedEntries(imagePath) : 0;
      tries.push(`${label}: ${killed ? `killed after ${Math.round(ms)} ms, ${stale} stale entries` : `finished (${Math.round(ms)} ms) before the kill`}`);
    };
    // As the issue reproduced it: SIGKILL at a fraction of a normal run.
    for (const fraction of [0.8, 0.7, 0.9, 0.6]) {
      await attempt(`at ${fraction} of ${Math.round(normalMs)} ms`, { afterMs: Math.round(normalMs * fraction) });
      if (stale > 0) break;
    }
    // Run times swing widely on a shared machine; then kill the moment the snapshot's L1 is on disk.
    if (stale === 0) {
      const image = Qcow2Image.open(basePath, { readOnly: true });
      const snapshotL1 = image.loadSnapshotL1(findSnapshot(image, 's1'));
      const l1Offset = image.l1.offset;
      image.close();
      for (let watched = 0; watched < 3 && stale === 0; watched++) {
        await attempt('when the new L1 appears on disk', { when: activeL1StartsWith(imagePath, l1Offset, snapshotL1.bytes.subarray(0, 8)) });
      }
    }
    console.log(`qemu-img snapshot -a s1: normal runs ${normalRuns.map(Math.round).join(', ')} ms; tries: ${tries.join('; ')}`);
    if (stale === 0) {
      throw new Error(`Could not reproduce qemu-img 7.2's interrupted-apply state (active L1 entries with COPIED on refcount-2 L2 tables) in ${tries.length} tries: ${tries.join('; ')}. ` + 'The known fact is unconfirmed here: a QEMU that no longer does this, or kills that all missed the window.');
    }
    console.log(`QEMU 7.2 known fact reproduced: ${stale} active L1 entries carry COPIED over L2 tables shared with snapshot s1`);

    // The next guest write through QEMU lands in the L2 table s1 shares: s1's own data changes.
    await qemuIo(imagePath, [QEMU_WRITE]);
    const snapshot = await rawOf(imagePath, { snapshot: 's1' });
    expect(snapshot[0]).toBe(0xee);
    expect(snapshot[512]).toBe(SNAPSHOT_FILL);
  }, 180_000);

  it("Cowbell's apply on the same image, cut at every write, never leaves a COPIED flag on a shared cluster, and a write through QEMU after the cut leaves the snapshot intact", async () => {
    const initial = new Uint8Array(fs.readFileSync(basePath));
    const fault = new FaultFile(basePath, initial);
    const image = Qcow2Image.openFile(fault);
    applySnapshot(image, 's1');
    image.close();
    const log = fault.log;

    // Every cut with keep-all and lose-all (and, in npm run crash, seeded random and torn losses too).
    const points = crashPoints(log, crashSettings.full ? 4 : 0, 12, crashSettings.full ? 2 : 0);
    const seen = new Set<string>();
    const problems: string[] = [];
    for (const point of points) {
      const state = crashState(basePath, initial, log, point);
      const signature = state.signature();
      if (seen.has(signature)) continue;
      seen.add(signature);
      // Every state gets the COPIED walk; a sample also the full count of references against refcounts.
      const walk = walkImage(state, { countReferences: seen.size % (crashSettings.full ? 10 : 100) === 1 });
      for (const finding of walk.harmful) if (problems.length < 10) problems.push(`${describeCrashPoint(log, point)}: ${finding.kind}: ${finding.message}`);
    }
    console.log(`crash: Cowbell snapshot apply on the 24 MiB x 3 snapshot image: ${points.length} crash states tried (${seen.size} distinct images from ${log.length} logged events)`);
    expect(problems).toEqual([]);

    // The same sequence as QEMU's: power cut part-way (at the fractions of the log QEMU was killed
    // at), then a write through QEMU, then the snapshot as qemu-img reads it.
    const keepAll = (fraction: number): CrashPoint => ({ cut: Math.max(1, Math.round(log.length * fraction)), pattern: { kind: 'keep-all' } });
    const fractions = crashSettings.full ? [0.2, 0.4, 0.5, 0.6, 0.8, 0.9, 0.95] : [0.5, 0.8];
    const crashedPath = folder.file('cowbell.qcow2');
    for (const fraction of fractions) {
      fs.writeFileSync(crashedPath, crashState(basePath, initial, log, keepAll(fraction)).bytes());
      await qemuIo(crashedPath, [QEMU_WRITE]);
      const snapshot = await rawOf(crashedPath, { snapshot: 's1' });
      expect(snapshot.every((byte) => byte === SNAPSHOT_FILL), `s1 changed after a cut at ${fraction} of Cowbell's apply and a write through QEMU`).toBe(true);
    }
  }, crashSettings.full ? 3600_000 : 300_000);
});
