/**
 * Names in an image are bytes: a snapshot named in a Latin-1 shell, a backing file whose Linux name
 * is not UTF-8. Cowbell decoded them with replacement characters, so taking a snapshot (or a
 * compact) wrote every such snapshot name back changed — qemu-img could no longer find it by its
 * name — and a backing file so named could not be opened. They are now kept byte for byte, shown
 * as \xHH, and such a backing file is opened by its bytes. The tools are given the raw bytes
 * through bash ($'\xe9'): Node's arguments are always UTF-8.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { exactArguments } from '../../src/cli/exact-arguments.ts';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { run } from '../helpers/cli.ts';
import { firstDifference, qemuCheck, qemuImg, qemuIo, rawOf, tempDir, type TempDir } from '../helpers/qemu.ts';

vi.setConfig({ testTimeout: 60_000 });

/** A command line run by bash, so that $'\xe9' gives qemu-img the byte itself; "$1" is `file`. */
function bash(script: string, file: string): Buffer {
  return execFileSync('bash', ['-c', script, 'bash', file]);
}

const LATIN1_NAME = Buffer.from([0x63, 0x61, 0x66, 0xe9]); // "café" in Latin-1

/** Whether qemu-img lists a snapshot whose name is exactly these bytes. */
function qemuListsName(image: string, name: Buffer): boolean {
  const listing = bash('qemu-img snapshot -l "$1"', image);
  return listing.toString('latin1').split('\n').some((line) => line.split(/ +/)[1] === name.toString('latin1'));
}

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

describe('a snapshot name that is not UTF-8', () => {
  it('survives snapshot create, rename, delete, compact, compress and convert byte for byte; qemu-img still reverts to it by name', async () => {
    const image = folder.file('latin1.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '64M']);
    await qemuIo(image, ['write -P 0x11 0 1M']);
    bash(`qemu-img snapshot -c $'caf\\xe9' "$1"`, image);
    await qemuIo(image, ['write -P 0x22 0 1M']);
    await qemuImg(['snapshot', '-c', 'other', image]);

    const listed = await run('snapshot', 'list', image);
    expect(listed.out).toContain('caf\\xe9');
    const json = JSON.parse((await run('snapshot', 'list', '--json', image)).out) as { snapshots: { name: string }[] };
    expect(json.snapshots.map((snapshot) => snapshot.name)).toContain('caf\udce9');

    const steps: string[][] = [
      ['snapshot', 'create', image, 'new'],
      ['snapshot', 'rename', image, 'other', 'renamed'],
      ['snapshot', 'delete', image, 'new'],
      ['compact', image],
      ['compress', image],
    ];
    for (const step of steps) {
      const result = await run(...step);
      expect(result.code, `${step.join(' ')}: ${result.err}`).toBe(0);
      expect(qemuListsName(image, LATIN1_NAME), step.join(' ')).toBe(true);
      expect((await qemuCheck(image)).code, step.join(" ")).toBe(0);
    }
    const converted = folder.file('latin1-converted.qcow2');
    expect((await run('convert', '-O', 'qcow2', image, converted)).code).toBe(0);
    expect(qemuListsName(converted, LATIN1_NAME)).toBe(true);

    // qemu-img finds it by its bytes and reads the state it holds.
    bash(`qemu-img snapshot -a $'caf\\xe9' "$1"`, converted);
    expect((await rawOf(converted)).subarray(0, 1024 * 1024).every((byte) => byte === 0x11)).toBe(true);
  });
});

const launcher = fileURLToPath(new URL('../../bin/cowbell', import.meta.url));

describe('a name typed on the command line that is not UTF-8', () => {
  it('names exactly that snapshot (Node made it "caf\uFFFD", and delete removed the snapshot literally so named)', async () => {
    const image = folder.file('typed.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '4M']);
    bash(`qemu-img snapshot -c $'caf\\xe9' "$1" && qemu-img snapshot -c $'caf\\xef\\xbf\\xbd' "$1"`, image);
    const deleted = spawnSync('bash', ['-c', `"$0" snapshot delete "$1" $'caf\\xe9'`, launcher, image], { encoding: 'utf8' });
    expect(deleted.status, deleted.stderr).toBe(0);
    expect(qemuListsName(image, LATIN1_NAME)).toBe(false);
    expect(qemuListsName(image, Buffer.from('caf\uFFFD', 'utf8'))).toBe(true);
  });

  it('a path so named that a command cannot open says why, not "no such file"', () => {
    const dir = folder.file('odd-paths');
    fs.mkdirSync(dir);
    bash(`cd "$1" && qemu-img create -q -f qcow2 $'disk\\xe9.qcow2' 4M`, dir);
    const info = spawnSync('bash', ['-c', `cd "$1" && "$0" info $'disk\\xe9.qcow2'`, launcher, dir], { encoding: 'utf8' });
    expect(info.status).toBe(1);
    expect(info.stderr).toContain('disk\\xe9.qcow2: not found — its name is not UTF-8');
  });

  it('is read from the bytes of the command line; refused where they cannot be had, never taken for another name', () => {
    const commandLine = Buffer.concat([Buffer.from('node\0/bin/cowbell\0snapshot\0delete\0img\0', 'latin1'), LATIN1_NAME, Buffer.from([0])]);
    const typed = ['snapshot', 'delete', 'img', 'caf\uFFFD'];
    expect(exactArguments(typed, () => new Uint8Array(commandLine))).toEqual(['snapshot', 'delete', 'img', 'caf\udce9']);
    // A U+FFFD typed as such (its UTF-8 bytes) stays.
    const real = Buffer.concat([Buffer.from('node\0cowbell\0', 'latin1'), Buffer.from('caf\uFFFD\0', 'utf8')]);
    expect(exactArguments(['caf\uFFFD'], () => new Uint8Array(real))).toEqual(['caf\uFFFD']);
    expect(() => exactArguments(typed, () => null)).toThrow(/not UTF-8.*snapshot\.id=ID/);
    expect(exactArguments(['plain', 'café'], () => null)).toEqual(['plain', 'café']);
  });
});

describe('a backing file whose name is not UTF-8', () => {
  it('is opened, shown as \\xHH, read through, and its name kept by compact and commit', async () => {
    const dir = folder.file('backing');
    fs.mkdirSync(dir);
    bash(`cd "$1" && qemu-img create -q -f qcow2 $'base\\xe9.qcow2' 64M && qemu-io -c 'write -P 0x33 0 2M' $'base\\xe9.qcow2' >/dev/null && qemu-img create -q -f qcow2 -b $'base\\xe9.qcow2' -F qcow2 overlay.qcow2 && qemu-io -c 'write -P 0x44 1M 1M' overlay.qcow2 >/dev/null`, dir);
    const overlay = `${dir}/overlay.qcow2`;
    const expected = await rawOf(overlay);
    expect(expected[0]).toBe(0x33);

    const info = await run('info', overlay);
    expect(info.code, info.err).toBe(0);
    expect(info.out).toContain('backing file: base\\xe9.qcow2');
    const raw = `${dir}/overlay.raw`;
    expect((await run('convert', '-O', 'raw', overlay, raw)).code).toBe(0);
    expect(firstDifference(new Uint8Array(fs.readFileSync(raw)), expected)).toBe(-1);

    expect((await run('snapshot', 'create', overlay, 's1')).code).toBe(0);
    const compacted = await run('compact', overlay);
    expect(compacted.code, compacted.err).toBe(0);
    expect(bash('qemu-img info "$1"', overlay).includes(Buffer.from('backing file: base\xe9.qcow2', 'latin1'))).toBe(true);
    expect(firstDifference(await rawOf(overlay), expected)).toBe(-1);

    expect((await run('snapshot', 'delete', overlay, 's1')).code).toBe(0);
    const committed = await run('commit', overlay);
    expect(committed.code, committed.err).toBe(0);
    const base = bash('cd "$1" && ls', dir).toString('latin1').split('\n').find((name) => name.startsWith('base'));
    expect(Buffer.from(base ?? '', 'latin1')).toEqual(Buffer.from('base\xe9.qcow2', 'latin1'));
    expect((await qemuCheck(overlay)).code).toBe(0);
    expect(firstDifference(await rawOf(overlay), expected)).toBe(-1);
  });
});
