import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../helpers/cli.ts';

const launcher = fileURLToPath(new URL('../../bin/cowbell', import.meta.url));
// Debian's Node 20 (when installed) has no type stripping: the launcher must re-execute on Node 24.
const oldNode = spawnSync('/usr/bin/node', ['-p', 'Boolean(process.features.typescript)'], { encoding: 'utf8' });
const hasOldNode = oldNode.status === 0 && oldNode.stdout.trim() === 'false';

let folder = '';
let image = '';

beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'cowbell-cli-'));
  image = join(folder, 'disk.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=128k', image, '1G']);
  execFileSync('qemu-img', ['snapshot', '-c', 'fresh-install', image]);
  execFileSync('qemu-img', ['snapshot', '-c', 'after updates', image]);
  await writeFile(join(folder, 'notes.txt'), 'not an image');
});
afterAll(() => rm(folder, { recursive: true, force: true }));

describe('cowbell info', () => {
  it('--json agrees with qemu-img info --output=json on sizes and snapshot names', async () => {
    const qemu = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', image], { encoding: 'utf8' })) as Record<string, unknown>;
    const { code, out, err } = await run('info', '--json', image);
    expect({ code, err }).toEqual({ code: 0, err: '' });
    const ours = JSON.parse(out) as Record<string, unknown>;
    expect(ours['virtual-size']).toBe(qemu['virtual-size']);
    expect(ours['cluster-size']).toBe(131072);
    expect(ours['cluster-size']).toBe(qemu['cluster-size']);
    const names = (value: unknown) => (value as { name: string }[]).map((snapshot) => snapshot.name);
    expect(names(ours.snapshots)).toEqual(['fresh-install', 'after updates']);
    expect(names(ours.snapshots)).toEqual(names(qemu.snapshots));
  });

  it('prints the human form like qemu-img info', async () => {
    const { code, out } = await run('info', image);
    expect(code).toBe(0);
    expect(out).toContain(`image: ${image}\n`);
    expect(out).toContain('virtual size: 1 GiB (1073741824 bytes)\n');
    expect(out).toContain('cluster_size: 131072\n');
    expect(out).toMatch(/^1 +fresh-install +0 B /m);
    expect(out).toMatch(/^2 +after updates +0 B /m);
    expect(out).toContain('    compat: 1.1\n');
  });

  it('lists Cowbell\'s snapshot notes below the table, one line each, and leaves the table as qemu-img has it', async () => {
    const noted = join(folder, 'noted.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', noted, '1M']);
    execFileSync('qemu-img', ['snapshot', '-c', 'plain', noted]);
    expect((await run('snapshot', 'create', '--note', 'before the upgrade\nkernel 6.1', noted, 'noted')).code).toBe(0);
    const { code, out } = await run('info', noted);
    expect(code).toBe(0);
    const lines = out.split('\n');
    const notes = lines.indexOf('Snapshot notes:');
    expect(notes).toBeGreaterThan(lines.findIndex((line) => /^2 +noted /.test(line)));
    expect(lines[notes + 1]).toBe('    2 noted: before the upgrade / kernel 6.1');
    expect(lines[notes + 2]).toBe('Format specific information:');
    expect(out).not.toContain('plain:');
    const json = JSON.parse((await run('info', '--json', noted)).out) as { snapshots: { name: string; note?: string }[] };
    expect(json.snapshots.map((snapshot) => snapshot.note)).toEqual([undefined, 'before the upgrade\nkernel 6.1']);
    // Without notes, no notes block.
    expect((await run('info', image)).out).not.toContain('Snapshot notes:');
  });

  it.each([
    ['a missing file', ['info', '/no/such/disk.qcow2'], 1, /^cowbell: .*no such file\n$/],
    ['a file that is not qcow2', ['info', 'NOTES'], 1, /^cowbell: .*qcow2.*\n$/i],
    ['no image', ['info'], 2, /^cowbell: info: missing argument/],
    ['an unknown option', ['info', '--frobnicate', 'x'], 2, /^cowbell: .*--frobnicate/],
    ['an unknown command', ['defrag', 'x'], 2, /^cowbell: unknown command 'defrag'/],
  ])('fails on %s with one line on stderr and a meaningful exit code', async (_what, argv, expectedCode, message) => {
    const resolved = argv.map((arg) => (arg === 'NOTES' ? join(folder, 'notes.txt') : arg));
    const { code, out, err } = await run(...resolved);
    expect(code).toBe(expectedCode);
    expect(out).toBe('');
    expect(err).toMatch(message);
    expect(err.trimEnd().split('\n')).toHaveLength(1);
  });
});

describe('cowbell info and names that hold line breaks', () => {
  it('prints a backing file name on its one line (a line break in it forged "encrypted: yes" and a size)', async () => {
    const overlay = join(folder, 'forged.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-b', './base.qcow2\nvirtual size: 1 TiB\nencrypted: yes', '-F', 'qcow2', overlay, '64M']);
    const { code, out } = await run('info', overlay);
    expect(code).toBe(0);
    expect(out).toContain('backing file: ./base.qcow2\\x0avirtual size: 1 TiB\\x0aencrypted: yes (actual path: ');
    expect(out).not.toMatch(/^encrypted: yes$/m);
    expect(out.match(/^virtual size:/gm)).toHaveLength(1);
    // map names the file a range lives in: a backing file whose name holds a line break, on its one row.
    const base = join(folder, 'base\n0x0 0x0 0x0 fake.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', base, '64M']);
    execFileSync('qemu-io', ['-c', 'write 0 64k', base]);
    execFileSync('qemu-img', ['rebase', '-u', '-b', base, '-F', 'qcow2', overlay]);
    const mapped = await run('map', overlay);
    expect(mapped.code, mapped.err).toBe(0);
    expect(mapped.out).toContain('base\\x0a0x0 0x0 0x0 fake.qcow2');
    expect(mapped.out).not.toMatch(/^0x0 0x0 0x0 fake\.qcow2$/m);
  });
});

describe('bin/cowbell', () => {
  it('is executable and runs the CLI with no build step', () => {
    accessSync(launcher, constants.X_OK);
    const result = spawnSync(launcher, ['info', '--json', image], { encoding: 'utf8' });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ 'virtual-size': 1073741824 });
  });

  it('exits 1 with one line, no stack trace, for an engine error', () => {
    const result = spawnSync(launcher, ['info', join(folder, 'notes.txt')], { encoding: 'utf8' });
    expect(result.status).toBe(1);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(result.stderr).not.toMatch(/\bat .*\.ts:\d+/);
  });

  it.skipIf(!hasOldNode)('falls back to the Node 24 in node_modules on a Node without type stripping', () => {
    const result = spawnSync('/usr/bin/node', [launcher, 'info', '--json', image], { encoding: 'utf8' });
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ 'cluster-size': 131072 });
  });
});

describe('an image with an external data file', () => {
  it('info and map print the data file lines qemu-img prints', async () => {
    const withData = join(folder, 'with-data.qcow2');
    const data = join(folder, 'with-data.raw');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `data_file=${data},data_file_raw=on`, withData, '1M']);
    execFileSync('qemu-io', ['-c', 'write -P 0x61 0 64k', withData]);
    const qemuInfoLines = execFileSync('qemu-img', ['info', withData], { encoding: 'utf8' })
      .split('\n')
      .filter((line) => /^ {4}(refcount bits|data file|corrupt)/.test(line));
    const info = await run('info', withData);
    expect(info.code).toBe(0);
    expect(info.out.split('\n').filter((line) => /^ {4}(refcount bits|data file|corrupt)/.test(line))).toEqual(qemuInfoLines);
    expect(qemuInfoLines).toContain(`    data file: ${data}`);
    const qemuMap = execFileSync('qemu-img', ['map', withData], { encoding: 'utf8' });
    const map = await run('map', withData);
    expect({ code: map.code, out: map.out }).toEqual({ code: 0, out: qemuMap });
    expect(map.out).toContain(data);
  });
});
