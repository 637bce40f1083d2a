/**
 * Property: on any chain base ← [mid ←] top that qemu-img and qemu-io make in which some qcow2 file
 * is LUKS-encrypted (all under one passphrase; the base raw, plain or encrypted, each file with its
 * own cluster size and history), Cowbell given the passphrase reads the top as qemu-img does, and
 * its operations on the top — guest writes, zero writes and discards, snapshots taken, reverted
 * to and deleted, resizes, a compact, an encrypt or decrypt in place, a convert to a standalone
 * image, commits and rebases — leave every qcow2 file clean by qemu-img check and the top, in its
 * current state and in each snapshot, reading as a model of the guest says, decrypted by qemu-img.
 * Commit and safe rebase, given the passphrase, leave every file of the chain reading as qemu-img's
 * own commit or rebase leaves a copy of it (a rebase onto an encrypted file, which qemu-img 7.2
 * cannot open as a new backing file, is held to the model alone); they refuse only where a snapshot
 * of the top would change (INVALID_ARGUMENT). Any refusal (that one, an encrypt under a passphrase
 * the encrypted files below do not open, a compress of an encrypted image) leaves every file byte
 * for byte as it was.
 * Seeded: COWBELL_FC_SEED replays a failure, COWBELL_FC_RUNS runs a longer campaign.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitSteps } from '../../../src/shared/qcow2/chain/commit.ts';
import { rebaseSteps } from '../../../src/shared/qcow2/chain/rebase.ts';
import { convertImage } from '../../../src/shared/qcow2/convert/convert.ts';
import type { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { rewriteImage, type CompressionPolicy } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { resizeImagePath } from '../../../src/shared/qcow2/snapshots/resize.ts';
import { removeSnapshot, revertToSnapshot, takeSnapshot } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { runSteps } from '../../../src/shared/qcow2/steps.ts';
import { applyToImage, applyToModel, type GuestOp } from '../../helpers/guest-model.ts';
import { fileHash } from '../../helpers/image-locks.ts';
import { propertySettings, qemuIoCommand, qemuIoOpArbitrary, type QemuIoOp } from '../../helpers/property-cases.ts';
import { qemuImg, qemuImgTimingPbkdf2, rawOf, runTool, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { expectSameBytes, refusalOf } from '../../helpers/outcomes.ts';
import { secret } from '../../helpers/encrypted-images.ts';

const { seed: SEED, runs: RUNS } = propertySettings(20261209, 6);
const KiB = 1024;
const UNIT = 64 * KiB;
const MAX_UNITS = 6;
const PASS = 'moo-chain-pass';
const OTHER_PASS = 'another-pass';
const QUICK_KEY = { iterations: 1000, digestIterations: 1000 } as const;
const SECRET = secret('sec0', PASS);

let folder: TempDir;
beforeAll(async () => {
  folder = tempDir();
  await Promise.all(LUKS_CLUSTER_BYTES.map((clusterBytes) => makeLuksTemplate(clusterBytes)));
});
afterAll(() => folder.cleanup());

type Layer = 'base' | 'mid' | 'top';
type Kind = 'raw' | 'plain' | 'luks';

interface FileShape {
  kind: Kind;
  clusterBytes: number;
  /** Size in units below the top's (the top's own: 0). */
  shrink: number;
  writes: QemuIoOp[];
}

type Step =
  | { kind: 'guest'; op: QemuIoOp }
  | { kind: 'take' }
  | { kind: 'revert'; pick: number }
  | { kind: 'delete'; pick: number }
  | { kind: 'resize'; units: number }
  | { kind: 'compact'; policy: CompressionPolicy }
  | { kind: 'encrypt' }
  | { kind: 'encrypt under another passphrase' }
  | { kind: 'decrypt' }
  | { kind: 'convert' }
  | { kind: 'commit'; keepOverlay: boolean }
  | { kind: 'commit into base' }
  | { kind: 'rebase onto base' }
  | { kind: 'rebase onto nothing' };

interface ChainCase {
  units: number;
  base: FileShape;
  mid: FileShape | null;
  top: FileShape;
  steps: Step[];
}

const opArbitrary = qemuIoOpArbitrary(MAX_UNITS * UNIT, 300);
/** The cluster sizes of the encrypted files (each LUKS file is a copy of a template, see luksTemplates). */
const LUKS_CLUSTER_BYTES = [512, 64 * KiB];
const shapeArbitrary = (kinds: Kind[]): fc.Arbitrary<FileShape> =>
  fc.record({ kind: fc.constantFrom(...kinds), clusterBytes: fc.constantFrom(512, 4 * KiB, 16 * KiB, 64 * KiB), shrink: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }) }), writes: fc.array(opArbitrary, { maxLength: 5 }) });

const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('guest' as const), op: opArbitrary }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('take' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('revert' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('resize' as const), units: fc.integer({ min: 1, max: MAX_UNITS }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('compact' as const), policy: fc.constantFrom<CompressionPolicy>('keep', 'uncompress', 'compress') }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('encrypt' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('encrypt under another passphrase' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('decrypt' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('convert' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('commit' as const), keepOverlay: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('commit into base' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('rebase onto base' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('rebase onto nothing' as const) }) },
);

const caseArbitrary: fc.Arbitrary<ChainCase> = fc
  .record({
    units: fc.integer({ min: 2, max: MAX_UNITS }),
    base: shapeArbitrary(['raw', 'plain', 'luks', 'luks']),
    mid: fc.option(shapeArbitrary(['plain', 'luks']), { nil: null, freq: 2 }),
    top: shapeArbitrary(['plain', 'luks']),
    steps: fc.array(stepArbitrary, { minLength: 1, maxLength: 8 }),
  })
  // Some qcow2 file of the chain is encrypted: a plain top over a plain chain gets a LUKS base.
  .map((chain) => {
    const encrypted = [chain.base, chain.mid, chain.top].some((shape) => shape?.kind === 'luks');
    const fit = (shape: FileShape): FileShape => (shape.kind === 'luks' && !LUKS_CLUSTER_BYTES.includes(shape.clusterBytes) ? { ...shape, clusterBytes: 64 * KiB } : shape);
    const base = encrypted ? chain.base : { ...chain.base, kind: 'luks' as const };
    return { ...chain, base: fit(base), mid: chain.mid === null ? null : fit(chain.mid), top: fit({ ...chain.top, shrink: 0 }) };
  });

interface ChainFiles {
  where: string;
  paths: Record<Layer, string>;
  /** The layers present, top first. */
  layers: Layer[];
}

function filesOf(where: string, chain: ChainCase): ChainFiles {
  const layers: Layer[] = chain.mid === null ? ['top', 'base'] : ['top', 'mid', 'base'];
  return { where, layers, paths: { base: path.join(where, chain.base.kind === 'raw' ? 'base.raw' : 'base.qcow2'), mid: path.join(where, 'mid.qcow2'), top: path.join(where, 'top.qcow2') } };
}

/** What each layer is now (the top changes kind with encrypt and decrypt, and may lose its backing file). */
interface ChainState {
  kinds: Record<Layer, Kind>;
  /** The layers the top reads through, top first. */
  layers: Layer[];
}

/** `--image-opts` for `layer` with the passphrase for every encrypted file of its chain. */
function imageOpts(files: ChainFiles, state: ChainState, layer: Layer): string {
  const below = state.layers.slice(state.layers.indexOf(layer));
  const parts = [`driver=${state.kinds[layer] === 'raw' ? 'raw' : 'qcow2'}`, `file.filename=${files.paths[layer]}`];
  below.forEach((each, depth) => {
    if (state.kinds[each] === 'luks') parts.push(`${'backing.'.repeat(depth)}encrypt.key-secret=sec0`);
  });
  return parts.join(',');
}

/** A copy of the run's files in another folder (backing names are relative), for qemu-img's own commit or rebase. */
function copyFiles(files: ChainFiles): ChainFiles {
  const where = `${files.where}-qemu`;
  fs.rmSync(where, { recursive: true, force: true });
  fs.mkdirSync(where);
  for (const layer of files.layers) fs.copyFileSync(files.paths[layer], path.join(where, path.basename(files.paths[layer])));
  return { where, layers: files.layers, paths: { base: path.join(where, path.basename(files.paths.base)), mid: path.join(where, 'mid.qcow2'), top: path.join(where, 'top.qcow2') } };
}

/**
 * qemu-img commit's -b for `layer`: the name the header above stores, which qemu-img matches first,
 * unless the file is opened with a secret (an encrypted one), whose node is then named in JSON.
 */
function qemuBaseName(files: ChainFiles, state: ChainState, layer: Layer): string {
  if (state.kinds[layer] !== 'luks') return path.basename(files.paths[layer]);
  return `json:${JSON.stringify({ 'encrypt.key-secret': 'sec0', driver: 'qcow2', file: { driver: 'file', filename: files.paths[layer] } }).replaceAll('":', '": ').replaceAll(',"', ', "')}`;
}

/** Every layer of `ours` reads as the same layer of `theirs` (qemu-img's copy after its own operation). */
async function expectSameAsQemu(ours: ChainFiles, theirs: ChainFiles, state: ChainState, layers: Layer[], what: string): Promise<void> {
  for (const layer of layers) expectSameBytes(await qemuRead(ours, state, layer), await qemuRead(theirs, state, layer), `${what}: ${layer} beside qemu-img's`);
}

/** The guest bytes of `layer` (or one of its snapshots), as qemu-img decrypts them. */
async function qemuRead(files: ChainFiles, state: ChainState, layer: Layer, snapshot?: string): Promise<Uint8Array> {
  const output = path.join(files.where, 'read.raw');
  const state_ = snapshot === undefined ? [] : ['-l', `snapshot.name=${snapshot}`];
  await runTool('qemu-img', ['convert', ...SECRET, '--image-opts', ...state_, imageOpts(files, state, layer), '-O', 'raw', output]);
  const bytes = new Uint8Array(fs.readFileSync(output));
  fs.rmSync(output);
  return bytes;
}

async function qemuCheckLayer(files: ChainFiles, state: ChainState, layer: Layer): Promise<{ code: number; output: string }> {
  const result = await runTool('qemu-img', ['check', ...SECRET, '--image-opts', imageOpts(files, state, layer)], { okCodes: [0, 1, 2, 3] });
  return { code: result.code, output: result.stdout + result.stderr };
}

/**
 * One LUKS image per cluster size, made before the runs; each run's encrypted files are copies,
 * grown and given their backing file by qemu-img. qemu-img times PBKDF2 for ~5 s at every LUKS
 * create here (even with iter-time=10), so it makes the 64 KiB one; the 512-byte one is a plain
 * qemu-img image Cowbell encrypts (with few PBKDF2 iterations: its LUKS as QEMU writes it is the
 * encrypt property's subject), so both writers' files meet in the chains.
 */
const luksTemplates = new Map<number, string>();

async function makeLuksTemplate(clusterBytes: number): Promise<void> {
  const template = folder.file(`luks-${clusterBytes}.qcow2`);
  if (clusterBytes === 64 * KiB) {
    await qemuImgTimingPbkdf2(['create', '-q', '-f', 'qcow2', ...SECRET, '-o', `cluster_size=${clusterBytes},encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10`, template, String(UNIT)]);
  } else {
    const plain = folder.file(`plain-${clusterBytes}.qcow2`);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${clusterBytes}`, plain, String(UNIT)]);
    rewriteImage({ source: plain, target: template, compression: 'keep', encryption: { kind: 'luks', passphrase: PASS, ...QUICK_KEY } });
  }
  luksTemplates.set(clusterBytes, template);
}

function luksTemplate(clusterBytes: number): string {
  const template = luksTemplates.get(clusterBytes);
  if (template === undefined) throw new Error(`no LUKS template with ${clusterBytes}-byte clusters`);
  return template;
}

async function makeChain(files: ChainFiles, chain: ChainCase): Promise<ChainState> {
  const state: ChainState = { kinds: { base: chain.base.kind, mid: chain.mid?.kind ?? 'plain', top: chain.top.kind }, layers: [] };
  for (const layer of [...files.layers].reverse()) {
    const shape = layer === 'mid' ? chain.mid : chain[layer];
    if (shape === null) continue;
    const bytes = Math.max(1, chain.units - shape.shrink) * UNIT;
    const image = files.paths[layer];
    const below = state.layers[0];
    const backing = below === undefined ? [] : ['-b', path.basename(files.paths[below]), '-F', state.kinds[below] === 'raw' ? 'raw' : 'qcow2'];
    if (shape.kind === 'raw') await qemuImg(['create', '-q', '-f', 'raw', image, String(bytes)]);
    else if (shape.kind === 'plain') await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${shape.clusterBytes}`, ...backing, image, String(bytes)]);
    else {
      fs.copyFileSync(luksTemplate(shape.clusterBytes), image);
      const alone = imageOpts(files, { kinds: state.kinds, layers: [layer] }, layer);
      if (bytes > UNIT) await runTool('qemu-img', ['resize', '-q', ...SECRET, '--image-opts', alone, String(bytes)]);
      if (below !== undefined) await runTool('qemu-img', ['rebase', '-q', ...SECRET, '--image-opts', '-u', ...backing, alone], { cwd: files.where });
    }
    state.layers.unshift(layer);
    if (shape.writes.length === 0) continue;
    const args = [...SECRET, '--image-opts'];
    for (const op of shape.writes) args.push('-c', qemuIoCommand(fitted(op, bytes)));
    const result = await runTool('qemu-io', [...args, imageOpts(files, state, layer)]);
    expect(result.stdout + result.stderr, `qemu-io on ${layer}`).not.toMatch(/error|failed/i);
  }
  return state;
}

function fitted(op: QemuIoOp, bytes: number): QemuIoOp {
  const offset = op.offset % bytes;
  return { ...op, offset, length: Math.min(op.length, bytes - offset) };
}

function guestOp(op: QemuIoOp): GuestOp {
  if (op.kind === 'write') return { kind: 'write', offset: op.offset, data: new Uint8Array(op.length).fill(op.pattern) };
  return { kind: op.kind, offset: op.offset, length: op.length };
}

function hashes(files: ChainFiles): string[] {
  return files.layers.map((layer) => fileHash(files.paths[layer]));
}

let runIndex = 0;
const tally = new Map<string, number>();
function count(what: string): void {
  tally.set(what, (tally.get(what) ?? 0) + 1);
}

async function checkCase(chain: ChainCase): Promise<void> {
  const run = ++runIndex;
  const runFolder = folder.file(`run-${run}`);
  fs.mkdirSync(runFolder, { recursive: true });
  const files = filesOf(runFolder, chain);
  const context = `run ${run}: ${JSON.stringify(chain)}`;
  const top = files.paths.top;
  try {
    const state = await makeChain(files, chain);
    let current = await qemuRead(files, state, 'top');
    // Cowbell reads the chain as qemu-img does.
    const opened = Qcow2Image.open(top, { readOnly: true, passphrase: PASS });
    try {
      expectSameBytes(opened.read(0, opened.virtualSize), current, `${context}: Cowbell's read of the top`);
    } finally {
      opened.close();
    }
    const snapshots = new Map<string, Uint8Array>();
    let named = 0;
    const pick = (index: number): string | undefined => [...snapshots.keys()][index % Math.max(1, snapshots.size)];
    const encryptedBelow = (): boolean => state.layers.slice(1).some((layer) => state.kinds[layer] === 'luks');
    for (const [index, step] of chain.steps.entries()) {
      const where = `${context}: step ${index} ${JSON.stringify(step)}`;
      const before = hashes(files);
      const refusedAlone = (error: Qcow2Error | null, label: string): boolean => {
        if (error === null) return false;
        expect(hashes(files), `${where}: the files after the refusal (${error.code} ${error.message})`).toEqual(before);
        count(`${label} refused: ${error.code} ${error.message.replace(/\/\S+/g, 'FILE').slice(0, 70)}`);
        return true;
      };
      if (step.kind === 'guest') {
        const op = fitted(step.op, current.length);
        const image = Qcow2Image.open(top, { passphrase: PASS });
        try {
          applyToImage(image, guestOp(op));
        } finally {
          image.close();
        }
        applyToModel(current, guestOp(op), { clusterSize: chain.top.clusterBytes, virtualSize: current.length, version: 3, hasBacking: state.layers.length > 1 });
        count(`guest ${op.kind}`);
      } else if (step.kind === 'take') {
        if (snapshots.size >= 4) continue;
        const name = `s${++named}`;
        takeSnapshot(top, name);
        snapshots.set(name, current.slice());
        count('take');
      } else if (step.kind === 'revert' || step.kind === 'delete') {
        const name = pick(step.pick);
        if (name === undefined) continue;
        if (step.kind === 'revert') {
          revertToSnapshot(top, name);
          current = (snapshots.get(name) ?? current).slice();
        } else {
          removeSnapshot(top, name);
          snapshots.delete(name);
        }
        count(step.kind);
      } else if (step.kind === 'resize') {
        const newSize = step.units * UNIT;
        resizeImagePath(top, newSize, { shrink: true, discardData: true }, undefined, { passphrase: PASS });
        const next = new Uint8Array(newSize);
        next.set(current.subarray(0, Math.min(current.length, newSize)));
        current = next;
        count('resize');
      } else if (step.kind === 'compact') {
        const error = refusalOf(() => rewriteImage({ source: top, compression: step.policy, passphrase: PASS }));
        // An encrypted image is never compressed (QEMU would store those clusters in the clear).
        if (step.policy === 'compress' && state.kinds.top === 'luks') expect(error?.code, `${where}: refused`).toBeDefined();
        if (refusedAlone(error, `compact ${step.policy}`)) continue;
        count(`compact ${step.policy}`);
      } else if (step.kind === 'encrypt' || step.kind === 'encrypt under another passphrase') {
        if (state.kinds.top === 'luks') continue;
        const passphrase = step.kind === 'encrypt' ? PASS : OTHER_PASS;
        const error = refusalOf(() => rewriteImage({ source: top, compression: 'keep', passphrase: PASS, encryption: { kind: 'luks', passphrase, ...QUICK_KEY } }));
        // Cowbell reads a disk and the encrypted files below it with one passphrase: another one is refused there.
        if (step.kind !== 'encrypt' && encryptedBelow()) expect(error?.code, `${where}: refused`).toBe('INVALID_ARGUMENT');
        if (step.kind === 'encrypt') expect(error, `${where}: done`).toBeNull();
        if (refusedAlone(error, step.kind)) continue;
        if (step.kind !== 'encrypt') {
          // A top under its own passphrase over no encrypted file: decrypted back at once, so the chain keeps one passphrase.
          rewriteImage({ source: top, compression: 'keep', passphrase: OTHER_PASS, encryption: { kind: 'none' } });
        } else state.kinds.top = 'luks';
        count(step.kind);
      } else if (step.kind === 'decrypt') {
        if (state.kinds.top !== 'luks') continue;
        rewriteImage({ source: top, compression: 'keep', passphrase: PASS, encryption: { kind: 'none' } });
        state.kinds.top = 'plain';
        count('decrypt');
      } else if (step.kind === 'convert') {
        const copy = path.join(runFolder, 'converted.qcow2');
        convertImage({ source: top, target: copy, targetFormat: 'qcow2', passphrase: PASS, overwrite: true });
        expectSameBytes(await rawOf(copy), current, `${where}: the converted copy`);
        fs.rmSync(copy);
        count('convert');
      } else if (step.kind === 'commit' || step.kind === 'commit into base') {
        if (state.layers.length < 2) continue;
        const target = step.kind === 'commit' ? state.layers[1]! : state.layers.at(-1)!;
        const targetBefore = await qemuRead(files, state, target);
        const theirs = copyFiles(files);
        const error = refusalOf(() => runSteps(commitSteps(step.kind === 'commit' ? { image: top, keepOverlay: step.keepOverlay, passphrase: PASS } : { image: top, base: files.paths[target], passphrase: PASS })));
        // Only a snapshot of the top that the commit would change is refused (qemu-img changes it).
        if (error !== null) expect(error.code, `${where}: refused (${error.message})`).toBe('INVALID_ARGUMENT');
        if (refusedAlone(error, step.kind)) continue;
        // The file committed into reads as the top did, over the top's size.
        const expected = targetBefore.length > current.length ? Uint8Array.from([...current, ...targetBefore.subarray(current.length)]) : current;
        expectSameBytes(await qemuRead(files, state, target), expected, `${where}: ${target} after the commit`);
        const qemuArgs = step.kind === 'commit' ? (step.keepOverlay ? ['-d'] : []) : ['-b', qemuBaseName(theirs, state, target)];
        await runTool('qemu-img', ['commit', '-q', ...SECRET, '--image-opts', ...qemuArgs, imageOpts(theirs, state, 'top')], { cwd: theirs.where });
        await expectSameAsQemu(files, theirs, state, state.layers, `${where}: after the commit`);
        fs.rmSync(theirs.where, { recursive: true });
        count(step.kind);
      } else {
        if (state.layers.length < 2 && step.kind === 'rebase onto base') continue;
        const base = state.layers.at(-1)!;
        const theirs = copyFiles(files);
        const format = state.kinds[base] === 'raw' ? 'raw' : 'qcow2';
        const error = refusalOf(() => runSteps(rebaseSteps(step.kind === 'rebase onto base' ? { image: top, backingFile: path.basename(files.paths[base]), backingFormat: format, passphrase: PASS } : { image: top, backingFile: null, passphrase: PASS })));
        if (error !== null) expect(error.code, `${where}: refused (${error.message})`).toBe('INVALID_ARGUMENT');
        if (refusedAlone(error, step.kind)) continue;
        const oldState: ChainState = { kinds: state.kinds, layers: state.layers };
        state.layers = step.kind === 'rebase onto base' && base !== 'top' ? ['top', base] : ['top'];
        // qemu-img 7.2 opens a new backing file without a secret: onto an encrypted one, only the model judges.
        if (step.kind === 'rebase onto nothing' || state.kinds[base] !== 'luks') {
          const qemuArgs = step.kind === 'rebase onto base' ? ['-b', theirs.paths[base], '-F', format] : ['-b', ''];
          await runTool('qemu-img', ['rebase', '-q', ...SECRET, '--image-opts', ...qemuArgs, imageOpts(theirs, oldState, 'top')], { cwd: theirs.where });
          await expectSameAsQemu(files, theirs, state, state.layers, `${where}: after the rebase`);
        }
        fs.rmSync(theirs.where, { recursive: true });
        count(step.kind);
      }
      // After each change the top reads as the model says.
      expectSameBytes(await qemuRead(files, state, 'top'), current, `${where}: the top`);
    }
    for (const layer of state.layers) {
      if (state.kinds[layer] === 'raw') continue;
      const check = await qemuCheckLayer(files, state, layer);
      expect(check.code, `${context}: qemu-img check of ${layer}: ${check.output}`).toBe(0);
    }
    const opened2 = Qcow2Image.open(top, { readOnly: true, passphrase: PASS });
    try {
      expectSameBytes(opened2.read(0, opened2.virtualSize), current, `${context}: Cowbell's read of the top at the end`);
    } finally {
      opened2.close();
    }
    for (const [name, bytes] of snapshots) {
      const read = await qemuRead(files, state, 'top', name);
      const length = Math.min(read.length, bytes.length);
      expectSameBytes(read.subarray(0, length), bytes.subarray(0, length), `${context}: snapshot ${name}`);
    }
  } finally {
    fs.rmSync(runFolder, { recursive: true, force: true });
  }
}

describe('chains with encrypted files, one passphrase', () => {
  it(`Cowbell reads, writes, snapshots, resizes, rewrites, converts, commits and rebases the top as qemu-img reads it, and refuses leaving every file as it was (${RUNS} runs, seed ${SEED})`, { timeout: 900_000 }, async () => {
    await fc.assert(fc.asyncProperty(caseArbitrary, checkCase), { seed: SEED, numRuns: RUNS });
    console.log(`encrypted-chain property: ${JSON.stringify([...tally])}`);
  });
});
