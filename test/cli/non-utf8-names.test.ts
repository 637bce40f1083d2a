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

describe('an argument typed on the command line that is not UTF-8', () => {
  // Node reads $'caf\xe9' as "caf\uFFFD": delete removed the snapshot literally so named, and a path
  // led to another file whose name holds a real U+FFFD (a compact replaced that other disk).
  it('is refused, exit 2, nothing done — through the bundle or the source, and through the Node bin/cowbell starts', async () => {
    const dir = folder.file('typed');
    fs.mkdirSync(dir);
    const image = `${dir}/typed.qcow2`;
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '4M']);
    bash(`qemu-img snapshot -c $'caf\\xe9' "$1" && qemu-img snapshot -c $'caf\\xef\\xbf\\xbd' "$1"`, image);
    // A disk whose name holds a real U+FFFD, beside the one typed with a Latin-1 byte.
    bash(`cd "$1" && qemu-img create -q -f qcow2 $'disk\\xe9.qcow2' 4M && qemu-img create -q -f qcow2 $'disk\\xef\\xbf\\xbd.qcow2' 8M`, dir);
    const before = fs.readdirSync(dir).map((name) => [name, fs.statSync(`${dir}/${name}`).size]);
    const runs: [string, string][] = [
      ['"$0" snapshot delete "$1" $\'caf\\xe9\'', image],
      ['cd "$1" && "$0" compact $\'disk\\xe9.qcow2\'', dir],
    ];
    for (const [script, argument] of runs) {
      for (const node of [[], ['/usr/bin/node']]) {
        if (node.length > 0 && !fs.existsSync('/usr/bin/node')) continue;
        const command = node.length > 0 ? script.replace('"$0"', `${node[0]} "$0"`) : script;
        const result = spawnSync('bash', ['-c', command, launcher, argument], { encoding: 'utf8' });
        expect(result.status, `${command}: ${result.stderr}`).toBe(2);
        expect(result.stderr).toMatch(/argument \d holds bytes that are not UTF-8/);
      }
    }
    expect(qemuListsName(image, LATIN1_NAME)).toBe(true);
    expect(qemuListsName(image, Buffer.from('caf\uFFFD', 'utf8'))).toBe(true);
    expect(fs.readdirSync(dir).map((name) => [name, fs.statSync(`${dir}/${name}`).size])).toEqual(before);
  });

  it('is told from a U+FFFD typed as such (its UTF-8 bytes), which stays', () => {
    const typed = ['snapshot', 'delete', 'img', 'caf\uFFFD'];
    const asTyped = (last: Uint8Array) => (count: number) => [...typed.slice(0, 3).map((part) => new Uint8Array(Buffer.from(part))), last].slice(4 - count);
    expect(() => exactArguments(typed, asTyped(new Uint8Array(LATIN1_NAME)))).toThrow(/argument 4 holds bytes that are not UTF-8.*snapshot\.id=ID/);
    expect(exactArguments(typed, asTyped(new Uint8Array(Buffer.from('caf\uFFFD', 'utf8'))))).toEqual(typed);
    expect(() => exactArguments(typed, () => null)).toThrow(/not UTF-8/);
    expect(exactArguments(['plain', 'café'], () => null)).toEqual(['plain', 'café']);
  });

  it('bin/cowbell passes the original bytes to the Node it starts (its own Node decoded them already)', () => {
    const saved = process.env.COWBELL_ARGUMENT_BYTES;
    try {
      process.env.COWBELL_ARGUMENT_BYTES = ['snapshot', 'img'].map((part) => Buffer.from(part).toString('base64')).concat(LATIN1_NAME.toString('base64')).join(',');
      expect(() => exactArguments(['snapshot', 'img', 'caf\uFFFD'])).toThrow(/argument 3 holds bytes that are not UTF-8/);
      process.env.COWBELL_ARGUMENT_BYTES = ['snapshot', 'img', 'caf\uFFFD'].map((part) => Buffer.from(part).toString('base64')).join(',');
      expect(exactArguments(['snapshot', 'img', 'caf\uFFFD'])).toEqual(['snapshot', 'img', 'caf\uFFFD']);
    } finally {
      if (saved === undefined) delete process.env.COWBELL_ARGUMENT_BYTES;
      else process.env.COWBELL_ARGUMENT_BYTES = saved;
    }
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
