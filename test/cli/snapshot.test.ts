/**
 * `cowbell snapshot list|create|apply|delete|rename|note`, `cowbell usage` and `cowbell diff`, checked
 * against what qemu-img then sees. The changes and one failure run as a user runs them (bin/cowbell
 * in its own process, for real exit codes); the rest through runCli in this process, which is
 * what bin/cowbell runs (each process costs about half a second of CPU on Node start-up).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../src/cli/run.ts';
import { describeTree } from '../../src/cli/commands/snapshot.ts';
import type { SnapshotNode, SnapshotTree } from '../../src/shared/qcow2/model.ts';
import { takeSnapshot } from '../../src/shared/qcow2/snapshots/operations.ts';
import { firstDifference, qemuImg, qemuInfo, qemuIo, rawOf, tempDir, type TempDir } from '../helpers/qemu.ts';
import { expectCheckClean, fileHash } from '../helpers/snapshot-scenario.ts';

const launcher = fileURLToPath(new URL('../../bin/cowbell', import.meta.url));
// Each bin/cowbell run starts a Node process (about a second on a busy 2-core machine).
vi.setConfig({ testTimeout: 60_000 });

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

function cowbell(...args: string[]): { code: number | null; out: string; err: string } {
  const result = spawnSync(launcher, args, { encoding: 'utf8' });
  return { code: result.status, out: result.stdout, err: result.stderr };
}

async function inProcess(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(args, { out: (text) => (out += text), err: (text) => (err += text) });
  return { code, out, err };
}

async function qemuNames(image: string): Promise<string[]> {
  return ((await qemuInfo(image)).snapshots ?? []).map((snapshot) => snapshot.name);
}

async function imageWithTwoSnapshots(name: string): Promise<string> {
  const image = folder.file(name);
  await qemuImg(['create', '-q', '-f', 'qcow2', image, '8M']);
  await qemuIo(image, ['write -P 1 0 1M']);
  takeSnapshot(image, 'installed');
  await qemuIo(image, ['write -P 2 512k 1M']);
  await qemuImg(['snapshot', '-c', 'updated', image]);
  await qemuIo(image, ['write -P 3 4M 64k']);
  return image;
}

describe('cowbell snapshot list --json', () => {
  it('has the keys the issue names, with their types, and the tree as recorded and inferred', async () => {
    const image = await imageWithTwoSnapshots('list.qcow2');
    const { code, out, err } = await inProcess('snapshot', 'list', '--json', image);
    expect({ code, err }).toEqual({ code: 0, err: '' });
    const listed = JSON.parse(out) as { snapshots: Record<string, unknown>[]; currentParentId: unknown };
    expect(Object.keys(listed)).toEqual(expect.arrayContaining(['snapshots', 'currentParentId']));
    const keys = ['id', 'name', 'parentId', 'parentInferred', 'date', 'vmClock', 'vmStateSize', 'exclusiveBytes', 'sharedBytes'];
    for (const snapshot of listed.snapshots) {
      expect(Object.keys(snapshot)).toEqual(expect.arrayContaining(keys));
      expect(snapshot).toMatchObject({
        id: expect.any(String),
        name: expect.any(String),
        parentInferred: expect.any(Boolean),
        date: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
        vmClock: 0,
        vmStateSize: 0,
        exclusiveBytes: expect.any(Number),
        sharedBytes: expect.any(Number),
      });
    }
    expect(listed.snapshots.map((snapshot) => [snapshot.name, snapshot.parentId, snapshot.parentInferred])).toEqual([
      ['installed', null, false],
      ['updated', '1', true],
    ]);
    // After qemu-img's snapshot and a write, the current state descends from "updated" (inferred).
    expect(listed.currentParentId).toBe('2');
  });

  it('prints the tree for people, with "you are here" under the current state\'s parent', async () => {
    const image = await imageWithTwoSnapshots('list-text.qcow2');
    const { code, out } = await inProcess('snapshot', 'list', image);
    expect(code).toBe(0);
    expect(out).toMatch(/^1 +installed /m);
    expect(out).toMatch(/^ {2}2 +updated .*\(parent inferred\)$/m);
    expect(out).toMatch(/^ {4}\* you are here/m);
  });
});

describe('cowbell snapshot create, apply, rename, delete', () => {
  let errorImage: string | undefined;

  it('exit 0 and change the image as qemu-img then sees it', async () => {
    const image = await imageWithTwoSnapshots('ops.qcow2');
    const atCreate = await rawOf(image);
    let result = cowbell('snapshot', 'create', image, 'before cleanup');
    expect(result).toEqual({ code: 0, out: 'Created snapshot "before cleanup" (id 3)\n', err: '' });
    expect(await qemuNames(image)).toEqual(['installed', 'updated', 'before cleanup']);

    result = cowbell('snapshot', 'apply', image, 'installed');
    expect(result).toMatchObject({ code: 0, err: '' });
    expect(firstDifference(await rawOf(image), await rawOf(image, { snapshot: 'installed' }))).toBe(-1);

    result = cowbell('snapshot', 'rename', image, 'before cleanup', 'pre-cleanup');
    expect(result).toMatchObject({ code: 0, err: '' });
    expect(await qemuNames(image)).toEqual(['installed', 'updated', 'pre-cleanup']);
    expect(firstDifference(await rawOf(image, { snapshot: 'pre-cleanup' }), atCreate)).toBe(-1);

    result = cowbell('snapshot', 'delete', image, 'updated');
    expect(result).toMatchObject({ code: 0, err: '' });
    expect(await qemuNames(image)).toEqual(['installed', 'pre-cleanup']);
    await expectCheckClean(expect, image, 'after the CLI operations');
  });

  it.each([
    ['a duplicate name', ['snapshot', 'create', 'IMG', 'installed'], /already exists/],
    ['an unknown snapshot to apply', ['snapshot', 'apply', 'IMG', 'nope'], /no snapshot named "nope"/],
    ['an unknown snapshot to delete', ['snapshot', 'delete', 'IMG', 'nope'], /no snapshot named "nope"/],
    ['a rename onto an existing name', ['snapshot', 'rename', 'IMG', 'installed', 'updated'], /already exists/],
    ['a missing image', ['snapshot', 'list', '/no/such/disk.qcow2'], /no such file/i],
    ['an unknown snapshot to diff', ['diff', 'IMG', 'installed', 'nope'], /no snapshot named "nope"/],
  ])('fail on %s: one line on stderr, exit 1, the file unchanged', async (_what, args, message) => {
    errorImage ??= await imageWithTwoSnapshots('errors.qcow2');
    const image = errorImage;
    const before = fileHash(image);
    const result = await inProcess(...args.map((arg) => (arg === 'IMG' ? image : arg)));
    expect(result.code).toBe(1);
    expect(result.out).toBe('');
    expect(result.err).toMatch(message);
    expect(result.err).toMatch(/^cowbell: /);
    expect(result.err.trimEnd().split('\n')).toHaveLength(1);
    expect(fileHash(image)).toBe(before);
  });

  it('bin/cowbell: a duplicate name exits 1 with one line on stderr and no stack trace, the file unchanged', async () => {
    errorImage ??= await imageWithTwoSnapshots('errors.qcow2');
    const before = fileHash(errorImage);
    const result = cowbell('snapshot', 'create', errorImage, 'updated');
    expect(result).toEqual({ code: 1, out: '', err: 'cowbell: A snapshot named "updated" already exists\n' });
    expect(fileHash(errorImage)).toBe(before);
  });

  it('a wrong number of arguments is a usage error (exit 2)', async () => {
    const result = await inProcess('snapshot', 'rename', folder.file('any.qcow2'), 'only-one');
    expect(result.code).toBe(2);
    expect(result.err.trimEnd().split('\n')).toHaveLength(1);
  });
});

describe('a snapshot named like another snapshot\'s id', () => {
  // qemu-img reads "2" as an id for `snapshot -a` and as a name for `snapshot -d`: a bare "2" that is
  // both must not revert to (losing the current data) or delete the snapshot the user did not mean.
  async function imageWithConfusableNames(name: string): Promise<string> {
    const image = folder.file(name);
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '1M']);
    await qemuIo(image, ['write -P 1 0 4k']);
    await qemuImg(['snapshot', '-c', '2', image]);
    await qemuIo(image, ['write -P 2 0 4k']);
    await qemuImg(['snapshot', '-c', 'x', image]);
    await qemuIo(image, ['write -P 3 0 4k']);
    return image;
  }

  it('a bare NAME_OR_ID that is both is refused with both named, the file unchanged; snapshot.id= and snapshot.name= say which', async () => {
    const image = await imageWithConfusableNames('confusable.qcow2');
    const before = fileHash(image);
    for (const action of ['apply', 'delete']) {
      const refused = await inProcess('snapshot', action, image, '2');
      expect(refused.code).toBe(1);
      expect(refused.err).toMatch(/"2" is the name of snapshot 1 \("2"\) and the id of snapshot 2 \("x"\).*snapshot\.id=2/);
    }
    expect((await inProcess('snapshot', 'rename', image, '2', 'y')).code).toBe(1);
    expect((await inProcess('diff', image, '2', 'current')).code).toBe(1);
    expect(fileHash(image)).toBe(before);

    expect((await inProcess('snapshot', 'apply', image, 'snapshot.id=2')).code).toBe(0);
    expect(firstDifference(await rawOf(image), await rawOf(image, { snapshot: 'x' }))).toBe(-1);
    expect((await inProcess('snapshot', 'delete', image, 'snapshot.name=2')).code).toBe(0);
    expect(await qemuNames(image)).toEqual(['x']);
    await expectCheckClean(expect, image, 'after snapshot.id= and snapshot.name=');
    // With the confusion gone, the bare form works again.
    expect((await inProcess('snapshot', 'rename', image, '2', 'kept')).code).toBe(0);
    expect(await qemuNames(image)).toEqual(['kept']);
  });

  it('convert -l snapshot.id= copies that snapshot even where its name is shared', async () => {
    const image = await imageWithConfusableNames('confusable-convert.qcow2');
    await qemuImg(['snapshot', '-c', 'x', image]);
    const ours = folder.file('confusable-convert.raw');
    const theirs = folder.file('confusable-convert-qemu.raw');
    expect(await inProcess('convert', '-l', 'snapshot.id=2', '-O', 'raw', image, ours)).toEqual({ code: 0, out: '', err: '' });
    await qemuImg(['convert', '-l', 'snapshot.id=2', '-O', 'raw', image, theirs]);
    const copied = new Uint8Array(readFileSync(ours));
    expect(copied[0]).toBe(2);
    expect(firstDifference(copied, new Uint8Array(readFileSync(theirs)))).toBe(-1);
  });
});

describe('snapshot names that read as something else', () => {
  it('"snapshot.id=1" and "current" are refused as new names; a qemu-made "snapshot.id=1" makes snapshot.id=1 mean two: refused, nothing deleted', async () => {
    const image = folder.file('reads-as-reference.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '1M']);
    expect((await inProcess('snapshot', 'create', image, 'precious')).code).toBe(0);
    for (const name of ['snapshot.id=1', 'snapshot.name=precious', 'current']) {
      const refused = await inProcess('snapshot', 'create', image, name);
      expect(refused.code, name).toBe(1);
      expect(refused.err).toMatch(/choose another name/);
      expect((await inProcess('snapshot', 'rename', image, 'precious', name)).code, name).toBe(1);
    }
    expect(await qemuNames(image)).toEqual(['precious']);
    await qemuImg(['snapshot', '-c', 'snapshot.id=1', image]);
    const before = fileHash(image);
    const refused = await inProcess('snapshot', 'delete', image, 'snapshot.id=1');
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/leads to snapshot 1 \("precious"\) but is also the name of snapshot 2/);
    expect(fileHash(image)).toBe(before);
    expect((await inProcess('snapshot', 'delete', image, 'snapshot.id=2')).code).toBe(0);
    expect(await qemuNames(image)).toEqual(['precious']);
  });
});

describe('snapshot names that hold terminal controls', () => {
  it('reach the terminal escaped in every listing and message, and --json still gives the name as it is', async () => {
    const image = folder.file('controls.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '8M']);
    await qemuIo(image, ['write -P 1 0 1M']);
    // Retitles a terminal window and clears the screen; then a C1 CSI (which JSON.stringify leaves raw).
    const hostile = 'a\u001b]0;pwned\u0007\u001b[2Jb\u009bc';
    await qemuImg(['snapshot', '-c', hostile, image]);
    // Control characters other than line breaks and tabs.
    const rawControls = (text: string): string[] =>
      [...text].filter((character) => {
        const code = character.charCodeAt(0);
        return (code < 0x20 && character !== '\n' && character !== '\t') || (code >= 0x7f && code <= 0x9f);
      });
    for (const args of [['snapshot', 'list'], ['info'], ['usage'], ['snapshot', 'note']]) {
      const run = await inProcess(...args, image, ...(args[1] === 'note' ? [hostile, 'a note'] : []));
      expect(rawControls(run.out + run.err), args.join(' ')).toEqual([]);
      expect(run.out + run.err, args.join(' ')).toContain('a\\x1b]0;pwned\\x07\\x1b[2Jb\\x9bc');
    }
    // A line break in a name is no fake row in a listing.
    await qemuImg(['snapshot', '-c', 'x\n2    fake-row', image]);
    expect((await inProcess('snapshot', 'list', image)).out).toContain('x\\x0a2    fake-row');
    await qemuImg(['snapshot', '-d', 'x\n2    fake-row', image]);
    const listed = await inProcess('snapshot', 'list', '--json', image);
    expect(rawControls(listed.out)).toEqual([]);
    expect((JSON.parse(listed.out) as { snapshots: { name: string }[] }).snapshots.map((snapshot) => snapshot.name)).toEqual([hostile]);
  });
});

describe('cowbell snapshot create --note, snapshot note', () => {
  it('a note set on create and changed, cleared or refused later; list shows it in --json and under its snapshot for people', async () => {
    const image = await imageWithTwoSnapshots('notes.qcow2');
    const created = cowbell('snapshot', 'create', '--note', 'before the upgrade\nsecond line', image, 'noted');
    expect(created).toEqual({ code: 0, out: 'Created snapshot "noted" (id 3) with a note\n', err: '' });
    let result = await inProcess('snapshot', 'note', image, '1', `Fresh install ✓ ${'long '.repeat(30)}\u001b[31m`);
    // Said by name and id, whichever was given (here the id).
    expect(result).toEqual({ code: 0, out: 'Set the note of snapshot "installed" (id 1)\n', err: '' });

    result = await inProcess('snapshot', 'list', '--json', image);
    const listed = JSON.parse(result.out) as { snapshots: { name: string; note?: string }[] };
    expect(listed.snapshots.map((snapshot) => [snapshot.name, snapshot.note])).toEqual([
      ['installed', `Fresh install ✓ ${'long '.repeat(30)}\u001b[31m`],
      ['updated', undefined],
      ['noted', 'before the upgrade\nsecond line'],
    ]);
    // For people: one line under the snapshot, line breaks shown as " / ", no escape sequences, a long note cut short.
    result = await inProcess('snapshot', 'list', image);
    const lines = result.out.split('\n');
    const under = (name: string): string => lines[lines.findIndex((line) => line.includes(` ${name}  `)) + 1] ?? '';
    expect(under('noted')).toMatch(/^ +“before the upgrade \/ second line”$/);
    expect(under('installed')).toMatch(/^ +“Fresh install ✓ long long .*…”$/);
    expect(result.out).not.toContain('\u001b');
    expect(under('updated')).not.toContain('“');

    result = await inProcess('snapshot', 'note', image, 'noted', '');
    expect(result).toEqual({ code: 0, out: 'Cleared the note of snapshot "noted" (id 3)\n', err: '' });
    // With --json, what was done as JSON (the snapshot acted on), nothing else on stdout.
    result = await inProcess('snapshot', 'note', '--json', image, 'snapshot.id=3', 'again');
    expect(JSON.parse(result.out)).toEqual({ action: 'note', id: '3', name: 'noted', note: 'again' });
    result = await inProcess('snapshot', 'rename', '--json', image, 'noted', 'renamed');
    expect(JSON.parse(result.out)).toEqual({ action: 'rename', id: '3', name: 'noted', newName: 'renamed' });
    result = await inProcess('snapshot', 'rename', '--json', image, 'renamed', 'noted');
    expect(JSON.parse(result.out)).toMatchObject({ action: 'rename', id: '3' });
    expect((await inProcess('snapshot', 'note', image, 'noted', '')).code).toBe(0);
    const before = fileHash(image);
    result = await inProcess('snapshot', 'note', image, 'updated', 'x'.repeat(513));
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/^cowbell: .*at most 512 bytes/);
    result = await inProcess('snapshot', 'apply', '--note', 'x', image, 'installed');
    expect(result.code).toBe(2);
    expect(fileHash(image)).toBe(before);
    const tree = JSON.parse((await inProcess('snapshot', 'list', '--json', image)).out) as { snapshots: { name: string; note?: string }[] };
    expect(tree.snapshots.map((snapshot) => snapshot.note)).toEqual([`Fresh install ✓ ${'long '.repeat(30)}\u001b[31m`, undefined, undefined]);
    await expectCheckClean(expect, image, 'after the notes');
    expect(await qemuNames(image)).toEqual(['installed', 'updated', 'noted']);
  });
});

describe('cowbell usage and diff', () => {
  it('usage --json gives the whole space picture; diff --json the ranges between two states', async () => {
    const image = await imageWithTwoSnapshots('usage.qcow2');
    const usage = await inProcess('usage', '--json', image);
    expect(usage.code).toBe(0);
    const report = JSON.parse(usage.out) as Record<string, unknown>;
    expect(Object.keys(report)).toEqual(expect.arrayContaining(['virtualSize', 'fileSize', 'allocatedBytes', 'metadataBytes', 'leakedBytes', 'current', 'snapshots']));
    expect(report).toMatchObject({ virtualSize: 8 * 1024 * 1024, leakedBytes: 0 });
    const text = await inProcess('usage', image);
    expect(text.out).toMatch(/^current state: +own /m);
    expect(text.out).toMatch(/^snapshot updated: own /m);
    // "updated" differs from "installed" by the 1 MiB written at 512 KiB; the current state from "updated" by one cluster at 4 MiB.
    expect(JSON.parse((await inProcess('diff', '--json', image, 'installed', 'updated')).out)).toEqual({ ranges: [{ offset: 512 * 1024, length: 1024 * 1024 }], bytes: 1024 * 1024 });
    expect(JSON.parse((await inProcess('diff', '--json', image, 'updated', 'current')).out)).toEqual({ ranges: [{ offset: 4 * 1024 * 1024, length: 65536 }], bytes: 65536 });
  });
});

describe('cowbell snapshot list, on parents another program made strange', () => {
  const node = (id: string, name: string, parentId: string | null): SnapshotNode => ({ id, name, parentId, parentInferred: false, date: '2026-12-05T00:00:00.000Z', vmClock: 0, vmStateSize: 0, exclusiveBytes: 0, sharedBytes: 0 });
  const tree = (snapshots: SnapshotNode[], currentParentId: string | null): SnapshotTree => ({ snapshots, currentParentId, currentParentInferred: false, current: { exclusiveBytes: 0, sharedBytes: 0 } });

  it('two snapshots with one id (each its own parent by id) are each listed once, without recursing', () => {
    const text = describeTree(tree([node('1', 'a', null), node('1', 'b', '1')], '1'));
    expect(text.match(/^ *1 +[ab] /gm)).toHaveLength(2);
  });

  it('snapshots whose recorded parents loop are listed after the others, none hidden', () => {
    const text = describeTree(tree([node('1', 'a', null), node('2', 'b', '3'), node('3', 'c', '2')], '3'));
    for (const name of ['a', 'b', 'c']) expect(text).toMatch(new RegExp(`^ *\\d +${name} `, 'm'));
    expect(text).toContain('* you are here');
  });

  it('a line of 300 snapshots indents no deeper than a few dozen spaces', () => {
    const line = Array.from({ length: 300 }, (_, index) => node(String(index + 1), `s${index + 1}`, index === 0 ? null : String(index)));
    const text = describeTree(tree(line, '300'));
    expect(text.split('\n').length).toBeGreaterThan(300);
    expect(Math.max(...text.split('\n').map((row) => row.length - row.trimStart().length))).toBeLessThanOrEqual(50);
  });
});
