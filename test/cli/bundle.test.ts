/**
 * The bundled command line (scripts/build-cli.ts, built by `npm ci` through `prepare`): plain
 * JavaScript that runs the same commands as the sources, the helper threads included (compressing,
 * comparing early: their modules sit beside the entry, where the bundle's entry tells the engine to find it).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCli } from '../../scripts/build-cli.ts';
import { HELPER_START_VARIABLE } from '../../src/cli/runtime.ts';
import { compressCluster } from '../../src/shared/qcow2/codec/compression.ts';
import { compressedEntrySize } from '../../src/shared/qcow2/format/entries.ts';
import { NodeBlockFile } from '../../src/shared/qcow2/io/block-file.ts';
import { startEarlyVerifier } from '../../src/shared/qcow2/rewrite/early-verify.ts';
import { qemuCheck, qemuCompare, qemuImg, tempDir, type TempDir } from '../helpers/qemu.ts';
import { makeExtImage, qcow2FromRaw } from '../helpers/guest-filesystems.ts';
import { SeededRandom, compressibleBytes } from '../helpers/seeded-random.ts';

let folder: TempDir;
let entry: string;
beforeAll(async () => {
  folder = tempDir();
  const out = folder.file('bundle');
  await buildCli(out);
  // Where npm installs it: koffi (external to the bundle) is found in node_modules above the bundle.
  fs.symlinkSync(fileURLToPath(new URL('../../node_modules', import.meta.url)), folder.file('node_modules'));
  entry = path.join(out, 'cowbell.mjs');
}, 60_000);
afterAll(() => folder.cleanup());

function cowbell(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [entry, ...args], { encoding: 'utf8' });
}

/**
 * `cowbell` waiting up to 30 s for its helper threads to start: a rewrite goes on without them
 * after HELPER_START_MS (500 ms), which a loaded machine passes, and a small job then ends before
 * they are ready. A helper module missing from the bundle never starts: the whole 30 s, then one thread is reported.
 */
function cowbellWaitingForHelpers(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [entry, ...args], { encoding: 'utf8', env: { ...process.env, [HELPER_START_VARIABLE]: '30000' } });
}

describe('the bundled command line', () => {
  it('holds an entry, the helper threads beside it, one chunk per command and the list of its sources', () => {
    const out = path.dirname(entry);
    expect(fs.existsSync(path.join(out, 'compress-worker.mjs'))).toBe(true);
    expect(fs.existsSync(path.join(out, 'early-verify-worker.mjs'))).toBe(true);
    const chunks = fs.readdirSync(path.join(out, 'chunks'));
    for (const command of ['info', 'convert', 'compress', 'snapshot']) expect(chunks.some((name) => name.startsWith(`${command}-`))).toBe(true);
    const sources = JSON.parse(fs.readFileSync(path.join(out, 'sources.json'), 'utf8')) as [string, number][];
    expect(sources.map(([file]) => file)).toContain('src/cli/main.ts');
    expect(sources.every(([file]) => file.startsWith('src/'))).toBe(true);
  });

  it('takes built-in modules through process.getBuiltinModule: no chunk imports one statically (its ESM facade loads streams and net)', () => {
    const out = path.dirname(entry);
    const files = [path.join(out, 'cowbell.mjs'), path.join(out, 'compress-worker.mjs'), path.join(out, 'early-verify-worker.mjs'), ...fs.readdirSync(path.join(out, 'chunks')).map((name) => path.join(out, 'chunks', name))];
    const staticImports = files.filter((file) => /^import\b[^;]*from\s*"node:/m.test(fs.readFileSync(file, 'utf8')));
    expect(staticImports).toEqual([]);
    expect(files.some((file) => fs.readFileSync(file, 'utf8').includes('process.getBuiltinModule("node:fs")'))).toBe(true);
  });

  it('starts info, rebase, snapshot list and copy-out without Node\'s streams, net, worker threads or zlib (milliseconds of every short command)', async () => {
    const raw = folder.file('startup.raw');
    fs.writeFileSync(raw, Buffer.alloc(4 * 65536, 7));
    const image = folder.file('startup.qcow2');
    await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', raw, image]);
    const overlay = folder.file('startup-top.qcow2');
    await qemuImg(['create', '-f', 'qcow2', '-b', image, '-F', 'qcow2', overlay]);
    // Reports on stderr, as the process exits, the internal modules loaded after this preload ran.
    const preload = folder.file('loaded-modules.mjs');
    fs.writeFileSync(
      preload,
      [
        "import { writeSync } from 'node:fs';",
        'const before = new Set(process.moduleLoadList);',
        // Not process.stderr: creating it would load the very modules looked for.
        "process.on('exit', () => writeSync(2, `LOADED ${JSON.stringify(process.moduleLoadList.filter((name) => !before.has(name)))}\\n`));",
      ].join('\n'),
    );
    const loaded = (...args: string[]): string[] => {
      // Both outputs are pipes, as where a script reads them.
      const result = spawnSync(process.execPath, ['--import', preload, entry, ...args], { encoding: 'utf8' });
      expect(result.status, result.stderr).toBe(0);
      const line = result.stderr.split('\n').find((text) => text.startsWith('LOADED '));
      return JSON.parse(line?.slice('LOADED '.length) ?? 'null') as string[];
    };
    const extRaw = folder.file('startup-ext.raw');
    await makeExtImage(extRaw, 8, { 'hello.txt': 'hello from the guest\n' });
    const guest = folder.file('startup-ext.qcow2');
    await qcow2FromRaw(extRaw, guest);
    const copied = folder.file('hello.txt');
    for (const args of [['info', image], ['rebase', '-u', '-b', image, '-F', 'qcow2', overlay], ['snapshot', 'list', image], ['copy-out', guest, '/hello.txt', copied]]) {
      const heavy = loaded(...args).filter((name) => /\b(stream|net|worker_threads|zlib|tty)$/.test(name));
      expect(heavy, args.join(' ')).toEqual([]);
    }
    expect(fs.readFileSync(copied, 'utf8')).toBe('hello from the guest\n');
  }, 60_000);

  it('runs info, and compresses on several threads into an image qemu-img reads the same', async () => {
    const raw = folder.file('data.raw');
    const random = new SeededRandom(5);
    const parts: Uint8Array[] = [];
    for (let index = 0; index < 48; index++) parts.push(index % 2 === 0 ? compressibleBytes(65536, index) : random.bytes(65536));
    fs.writeFileSync(raw, Buffer.concat(parts));
    const image = folder.file('disk.qcow2');
    await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', raw, image]);
    await qemuImg(['snapshot', '-c', 'kept', image]);
    const info = cowbell('info', '--json', image);
    expect(info.status, info.stderr).toBe(0);
    expect((JSON.parse(info.stdout) as { 'virtual-size': number })['virtual-size']).toBe(48 * 65536);
    const output = folder.file('compressed.qcow2');
    const compress = cowbellWaitingForHelpers('compress', '--json', image, output);
    expect(compress.status, compress.stderr).toBe(0);
    const result = JSON.parse(compress.stdout) as { compressionThreads: number; snapshots: number };
    expect(result.snapshots).toBe(1);
    // The helper threads ran the bundled compress-worker.mjs (a wrong path would leave the caller alone).
    expect(result.compressionThreads).toBeGreaterThan(1);
    const check = await qemuCheck(output);
    expect(check.code).toBe(0);
    expect(check.report?.['compressed-clusters']).toBeGreaterThan(0);
    expect((await qemuCompare(output, raw)).code).toBe(0);
    const convert = cowbell('convert', '-c', '-O', 'qcow2', '--no-snapshots', image, folder.file('converted.qcow2'));
    expect(convert.status, convert.stderr).toBe(0);
    expect((await qemuCompare(folder.file('converted.qcow2'), raw)).code).toBe(0);
  }, 60_000);

  it('compacts with its early-comparing helper thread from the bundle, quietly, into an image qemu-img reads the same', async () => {
    // Above the size where a rewrite starts the helper (rewrite.ts EARLY_VERIFY_MIN_BYTES, 32 MiB).
    const raw = folder.file('compact.raw');
    fs.writeFileSync(raw, new SeededRandom(18).bytes(40 * 1024 * 1024));
    const image = folder.file('compact.qcow2');
    await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', raw, image]);
    await qemuImg(['snapshot', '-c', 'kept', image]);
    const output = folder.file('compacted.qcow2');
    const compact = cowbell('compact', image, output);
    expect(compact.status, compact.stderr).toBe(0);
    // A helper module missing from the bundle fails its thread, which the command says on stderr.
    expect(compact.stderr).toBe('');
    expect((await qemuCheck(output)).code).toBe(0);
    expect((await qemuCompare(output, raw)).code).toBe(0);
  }, 60_000);

  // Issue 23: V8 aborts the whole process when it cannot reserve a new thread's address space, so
  // under a tight `ulimit -v` the helper threads must not be started at all.
  it('has an early-comparing helper that decompresses and confirms the zstd clusters a compress hands it', () => {
    const clusterBytes = 65536;
    const bytes = compressibleBytes(3 * clusterBytes, 11);
    const sourcePath = folder.file('early-source');
    fs.writeFileSync(sourcePath, bytes);
    const compressed = [0, 1, 2].map((cluster) => compressCluster(1, bytes.subarray(cluster * clusterBytes, (cluster + 1) * clusterBytes)) ?? new Uint8Array(0));
    const at = [512, 512 + (compressed[0]?.length ?? 0), 512 + (compressed[0]?.length ?? 0) + (compressed[1]?.length ?? 0)];
    const outputPath = folder.file('early-output');
    fs.writeFileSync(outputPath, Buffer.concat([new Uint8Array(512), ...compressed, new Uint8Array(512)]));
    const source = NodeBlockFile.open(sourcePath, { readOnly: true });
    const output = NodeBlockFile.open(outputPath, { readOnly: true });
    try {
      const verifier = startEarlyVerifier(source, output, clusterBytes, 1, path.join(path.dirname(entry), 'early-verify-worker.mjs'), 30_000);
      if (verifier === null) throw new Error('no helper thread');
      compressed.forEach((stream, cluster) => verifier.addCompressed(cluster * clusterBytes, at[cluster] ?? 0, stream.length));
      expect(verifier.finish(), 'the helper ran').toBe(true);
      expect(compressed.map((stream, cluster) => verifier.confirmed.has(cluster * clusterBytes, at[cluster] ?? 0, compressedEntrySize(at[cluster] ?? 0, stream.length)))).toEqual([true, true, true]);
    } finally {
      source.close();
      output.close();
    }
  });

  it('converts and compresses under an address-space limit too tight for a helper thread, saying so once', async () => {
    const raw = folder.file('limited.raw');
    const random = new SeededRandom(23);
    const parts: Uint8Array[] = [];
    for (let index = 0; index < 1024; index++) parts.push(index % 2 === 0 ? compressibleBytes(65536, index) : random.bytes(65536));
    fs.writeFileSync(raw, Buffer.concat(parts));
    const image = folder.file('limited.qcow2');
    await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', raw, image]);
    // What this Node maps before running anything, plus room for the command itself but less than a
    // helper thread needs (HELPER_THREAD_ROOM_BYTES, 384 MiB): the process only grows from there.
    const baseline = spawnSync(process.execPath, ['-e', "process.stdout.write(/VmSize:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/self/status','utf8'))[1])"], { encoding: 'utf8' });
    const limitKiB = Number(baseline.stdout) + 320 * 1024;
    expect(limitKiB).toBeGreaterThan(320 * 1024);
    const limited = (...args: string[]) => spawnSync('bash', ['-c', `ulimit -v ${limitKiB} && exec "$0" "$@"`, process.execPath, entry, ...args], { encoding: 'utf8' });
    for (const [args, output, format] of [[['convert', '-O', 'raw'], 'limited-out.raw', 'raw'], [['convert', '-c', '-O', 'qcow2', '--no-snapshots'], 'limited-out.qcow2', 'qcow2']] as const) {
      const run = limited(...args, image, folder.file(output));
      expect({ status: run.status, signal: run.signal }, run.stderr).toEqual({ status: 0, signal: null });
      expect(run.stderr.match(/working on one thread/g)).toHaveLength(1);
      expect(run.stderr).toContain('ulimit -v');
      expect((await qemuCompare(folder.file(output), raw, { formatA: format })).code).toBe(0);
    }
    expect(fs.readdirSync(folder.path).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  }, 60_000);
});
