/**
 * `npm run dist` cannot run here (no Electron binary can be fetched), so this checks what it would
 * build: electron-builder.yml against electron-builder's own schema, the icons, and a real
 * `electron-builder --linux dir` over the built app with a stand-in Electron (a file carrying the
 * fuse wire), whose app.asar and app.asar.unpacked are then inspected and the unpacked worker run.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt } from '../../scripts/lib/build.ts';
import { ICNS_TYPES } from '../../scripts/lib/icon-files.ts';
import { unpackedPath } from '../../src/main/asar-paths.ts';

const repoRoot = resolve(import.meta.dirname, '../..');
const requireFromRepo = createRequire(join(repoRoot, 'package.json'));
const run = promisify(execFile);

interface BuilderConfig {
  appId?: string;
  productName?: string;
  directories?: { output?: string; buildResources?: string };
  files?: string[];
  asar?: boolean;
  asarUnpack?: string[];
  fileAssociations?: { ext: string; name?: string; mimeType?: string; role?: string }[];
  linux?: { target?: string[]; icon?: string };
  win?: { target?: string[]; icon?: string };
  mac?: { target?: string[]; icon?: string };
  electronFuses?: Record<string, boolean>;
}

interface ConfigApi {
  getConfig(projectDir: string, configPath: string | null, configFromOptions: unknown): Promise<BuilderConfig>;
  validateConfiguration(config: BuilderConfig, debugLogger: unknown): Promise<void>;
}

interface AsarApi {
  listPackage(archive: string, options: Record<string, never>): string[];
  extractFile(archive: string, file: string): Buffer;
}

const configApi = requireFromRepo('app-builder-lib/out/util/config/config.js') as ConfigApi;
const { DebugLogger } = requireFromRepo('builder-util') as { DebugLogger: new (enabled: boolean) => unknown };
const asar = requireFromRepo('@electron/asar') as AsarApi;

async function loadConfig(): Promise<BuilderConfig> {
  return configApi.getConfig(repoRoot, null, null);
}

describe('electron-builder.yml', () => {
  it('passes electron-builder’s own schema validation', async () => {
    const config = await loadConfig();
    await expect(configApi.validateConfiguration(config, new DebugLogger(false))).resolves.toBeUndefined();
    // The same check refuses a mistake, so a pass means something.
    const misspelt = { ...config, fileAssociation: config.fileAssociations } as BuilderConfig;
    await expect(configApi.validateConfiguration(misspelt, new DebugLogger(false))).rejects.toThrow(/unknown property 'fileAssociation'/);
    // Compiling electron-builder's schema takes seconds on a loaded machine.
  }, 30_000);

  it('builds AppImage and deb, NSIS and dmg, into dist/, as org.cowbell.app "Cowbell"', async () => {
    const config = await loadConfig();
    expect(config.appId).toBe('org.cowbell.app');
    expect(config.productName).toBe('Cowbell');
    expect(config.directories?.output).toBe('dist');
    expect(config.linux?.target).toEqual(['AppImage', 'deb']);
    expect(config.win?.target).toEqual(['nsis']);
    expect(config.mac?.target).toEqual(['dmg']);
    expect(config.asar).toBe(true);
  });

  it('offers Cowbell for .qcow2 files as their editor, with QEMU’s mime type', async () => {
    const config = await loadConfig();
    expect(config.fileAssociations).toEqual([
      expect.objectContaining({ ext: 'qcow2', mimeType: 'application/x-qemu-disk', role: 'Editor', name: 'QEMU disk image' }),
    ]);
  });
});

describe('unpackedPath', () => {
  it('moves a path inside app.asar to app.asar.unpacked, on either separator, and leaves other paths alone', () => {
    expect(unpackedPath('/opt/Cowbell/resources/app.asar/out/main/chunks/worker-1.js')).toBe(
      '/opt/Cowbell/resources/app.asar.unpacked/out/main/chunks/worker-1.js',
    );
    expect(unpackedPath('C:\\Program Files\\Cowbell\\resources\\app.asar\\out\\main\\w.js')).toBe(
      'C:\\Program Files\\Cowbell\\resources\\app.asar.unpacked\\out\\main\\w.js',
    );
    expect(unpackedPath('/work/cowbell/out/main/chunks/worker-1.js')).toBe('/work/cowbell/out/main/chunks/worker-1.js');
    expect(unpackedPath('/srv/app.asar.unpacked/out/w.js')).toBe('/srv/app.asar.unpacked/out/w.js');
  });
});

/** Width and height from a PNG's IHDR. */
function pngSize(bytes: Buffer): { width: number; height: number } {
  expect(bytes.subarray(1, 4).toString('ascii')).toBe('PNG');
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
}

describe('the icons', () => {
  it('exist in assets/ at the sizes each platform wants, from the SVG source', async () => {
    const config = await loadConfig();
    expect(existsSync(join(repoRoot, 'assets/icon.svg'))).toBe(true);
    expect(pngSize(await readFile(join(repoRoot, 'assets/icon.png')))).toEqual({ width: 1024, height: 1024 });

    const linuxFolder = join(repoRoot, config.linux?.icon ?? '');
    const linuxIcons = (await readdir(linuxFolder)).sort();
    expect(linuxIcons).toEqual(expect.arrayContaining(['16x16.png', '32x32.png', '48x48.png', '128x128.png', '256x256.png', '512x512.png']));
    for (const name of linuxIcons) {
      const side = Number(name.split('x')[0]);
      expect(pngSize(await readFile(join(linuxFolder, name))), name).toEqual({ width: side, height: side });
    }

    const ico = await readFile(join(repoRoot, config.win?.icon ?? ''));
    expect(ico.readUInt16LE(2)).toBe(1);
    const icoSizes = Array.from({ length: ico.readUInt16LE(4) }, (_, index) => ico[6 + 16 * index] || 256);
    expect(icoSizes).toEqual([16, 24, 32, 48, 64, 128, 256]);

    const icns = await readFile(join(repoRoot, config.mac?.icon ?? ''));
    expect(icns.subarray(0, 4).toString('ascii')).toBe('icns');
    expect(icns.readUInt32BE(4)).toBe(icns.length);
    const types: string[] = [];
    for (let at = 8; at < icns.length; at += icns.readUInt32BE(at + 4)) {
      const type = icns.subarray(at, at + 4).toString('ascii');
      types.push(type);
      const expected = ICNS_TYPES.find((entry) => entry.type === type)?.size;
      expect(pngSize(icns.subarray(at + 8, at + icns.readUInt32BE(at + 4))), type).toEqual({ width: expected, height: expected });
    }
    expect(types).toEqual(ICNS_TYPES.map((entry) => entry.type));
  });
});

// Electron's fuse wire as a real binary carries it: sentinel, version 1, eight fuses as '0'/'1'.
const FUSE_SENTINEL = 'dL7pKGdnNz796PbbjQWNKmHXBZaB9tsX';
const FUSE_NAMES = [
  'runAsNode',
  'enableCookieEncryption',
  'enableNodeOptionsEnvironmentVariable',
  'enableNodeCliInspectArguments',
  'enableEmbeddedAsarIntegrityValidation',
  'onlyLoadAppFromAsar',
  'loadBrowserProcessSpecificV8Snapshot',
  'grantFileProtocolExtraPrivileges',
];
const ELECTRON_DEFAULT_FUSES = '10110001';

describe('the packaged app (electron-builder --linux dir with a stand-in Electron)', () => {
  let folder = '';
  let appDir = '';
  let archive = '';
  let unpacked = '';
  let files: string[] = [];

  beforeAll(async () => {
    ensureBuilt();
    // Outside the repository, so nothing in the packaged app can resolve to the repo's node_modules.
    folder = await mkdtemp(join(tmpdir(), 'cowbell-'));
    const electronDist = join(folder, 'electron-dist');
    await mkdir(electronDist);
    await writeFile(join(electronDist, 'electron'), `#!/bin/sh\nexit 0\n${FUSE_SENTINEL}\x01\x08${ELECTRON_DEFAULT_FUSES}\n`);
    await chmod(join(electronDist, 'electron'), 0o755);
    await writeFile(join(electronDist, 'LICENSE'), '');
    await run(
      process.execPath,
      [
        requireFromRepo.resolve('electron-builder/cli.js'),
        '--linux',
        'dir',
        `-c.electronDist=${electronDist}`,
        `-c.directories.output=${join(folder, 'dist')}`,
      ],
      { cwd: repoRoot, maxBuffer: 16 * 1024 * 1024 },
    );
    appDir = join(folder, 'dist', 'linux-unpacked');
    archive = join(appDir, 'resources', 'app.asar');
    unpacked = `${archive}.unpacked`;
    files = asar.listPackage(archive, {}).map((file) => file.replace(/^[\\/]/, '').split('\\').join('/'));
  }, 120_000);

  afterAll(() => rm(folder, { recursive: true, force: true }));

  it('holds the built main, preload and renderer, with package.json’s main pointing at out/main/index.js', () => {
    const manifest = JSON.parse(asar.extractFile(archive, 'package.json').toString('utf8')) as { main?: string; type?: string };
    expect(manifest.main).toBe('out/main/index.js');
    expect(manifest.type).toBe('module');
    expect(files).toEqual(expect.arrayContaining(['out/main/index.js', 'out/preload/index.cjs', 'out/renderer/index.html']));
    expect(files.filter((file) => file.endsWith('.map'))).toEqual([]);
    expect(files.filter((file) => /^(src|test|scripts|bench|assets)\//.test(file))).toEqual([]);
  });

  it('packs main’s own dependencies, and none of the libraries Vite bundled into the renderer', () => {
    const mainSource = asar.extractFile(archive, 'out/main/index.js').toString('utf8');
    const bareImports = [...mainSource.matchAll(/^import .*? from "([^".][^"]*)";$/gm)]
      .map((match) => match[1] ?? '')
      .filter((name) => !name.startsWith('node:') && name !== 'electron' && name !== 'path');
    expect(bareImports.length).toBeGreaterThan(0);
    for (const name of bareImports) expect(files, name).toContain(`node_modules/${name}/package.json`);
    for (const name of ['vue', 'echarts', 'zrender', 'pinia', 'typescript', 'd3-hierarchy']) {
      expect(files.some((file) => file.startsWith(`node_modules/${name}/`)), name).toBe(false);
    }
  });

  it('unpacks every asarUnpack entry: the worker chunk main points at, koffi and its native binary', async () => {
    const config = await loadConfig();
    expect(config.asarUnpack).toEqual(['out/main/chunks/**', 'node_modules/koffi/**', 'node_modules/@koromix/**']);
    const mainSource = asar.extractFile(archive, 'out/main/index.js').toString('utf8');
    const chunk = /join(?:\$\d+)?\(import\.meta\.dirname, "\.\/(chunks\/worker-[^"]+\.js)"\)/.exec(mainSource)?.[1];
    expect(chunk).toBeDefined();
    // Main asks for the chunk inside the archive; asar-paths.ts turns that into the unpacked copy.
    const workerPath = unpackedPath(join(archive, 'out', 'main', chunk ?? ''));
    expect(workerPath.startsWith(unpacked)).toBe(true);
    expect(existsSync(workerPath)).toBe(true);
    // A compress job's helper threads load their chunk the same way (index.ts hands its path to the pool).
    const compressChunk = /join(?:\$\d+)?\(import\.meta\.dirname, "\.\/(chunks\/compress-worker-[^"]+\.js)"\)/.exec(mainSource)?.[1];
    expect(compressChunk).toBeDefined();
    expect(existsSync(unpackedPath(join(archive, 'out', 'main', compressChunk ?? '')))).toBe(true);
    expect(existsSync(join(unpacked, 'node_modules', 'koffi', 'package.json'))).toBe(true);
    expect(existsSync(join(unpacked, 'node_modules', '@koromix', `koffi-${process.platform}-${process.arch}`, 'package.json'))).toBe(true);
    const binaries = (await readdir(join(unpacked, 'node_modules', '@koromix'), { recursive: true })).filter((file) => file.endsWith('.node'));
    expect(binaries.length).toBeGreaterThan(0);
  });

  it('runs the unpacked worker chunk from the unpacked tree: a read, a write that takes QEMU’s locks through koffi, a guest ext4 folder listed', async () => {
    const mainSource = asar.extractFile(archive, 'out/main/index.js').toString('utf8');
    const chunk = /"\.\/(chunks\/worker-[^"]+\.js)"/.exec(mainSource)?.[1] ?? '';
    const workerPath = join(unpacked, 'out', 'main', chunk);
    const image = join(folder, 'disk.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', image, '64M']);
    await run('qemu-img', ['snapshot', '-c', 'made-by-qemu', image]);
    // A guest ext4 filesystem, listed by the engine's own reader inside the packaged worker.
    const guestTree = join(folder, 'guest-tree');
    await mkdir(guestTree, { recursive: true });
    await writeFile(join(guestTree, 'hello.txt'), 'hello from the guest\n');
    const guestRaw = join(folder, 'guest.raw');
    await run('mkfs.ext4', ['-q', '-F', '-d', guestTree, guestRaw, '8M']);
    const guest = join(folder, 'guest.qcow2');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', guestRaw, guest]);
    const driver = join(folder, 'drive-worker.mjs');
    await writeFile(driver, WORKER_DRIVER);
    const { stdout } = await run(process.execPath, [driver, workerPath, image, guest], { cwd: folder });
    const report = JSON.parse(stdout) as {
      info: { ok: boolean; result?: { snapshots?: { name: string }[] } };
      create: { ok: boolean };
      files: { ok: boolean; result?: { entries?: { name: string }[] } };
      koffi: string[];
    };
    expect(report.files, JSON.stringify(report.files)).toMatchObject({ ok: true });
    expect(report.files.result?.entries?.map((entry) => entry.name)).toContain('hello.txt');
    expect(report.info.ok).toBe(true);
    expect(report.info.result?.snapshots?.map((snapshot) => snapshot.name)).toEqual(['made-by-qemu']);
    expect(report.create).toMatchObject({ ok: true });
    expect(report.koffi.length).toBeGreaterThan(0);
    expect(report.koffi.every((file) => file.startsWith(join(unpacked, 'node_modules')))).toBe(true);
    const { stdout: list } = await run('qemu-img', ['snapshot', '-l', image]);
    expect(list).toMatch(/from-the-package/);
  });

  it('flips Electron’s fuses as configured', async () => {
    const config = await loadConfig();
    const binary = readFileSync(join(appDir, 'cowbell'));
    const at = binary.indexOf(FUSE_SENTINEL) + FUSE_SENTINEL.length;
    const wire = binary.subarray(at + 2, at + 2 + binary[at + 1]!).toString('ascii');
    const fuses = Object.fromEntries(FUSE_NAMES.map((name, index) => [name, wire[index] === '1']));
    expect(fuses).toMatchObject(config.electronFuses ?? {});
    expect(fuses).toMatchObject({ runAsNode: false, enableNodeOptionsEnvironmentVariable: false, enableNodeCliInspectArguments: false, onlyLoadAppFromAsar: true });
  });
});

// Plays piscina's part for the unpacked chunk: import it by URL (as piscina does), run three jobs,
// and report which koffi binary the process mapped.
const WORKER_DRIVER = `
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { MessageChannel } from 'node:worker_threads';
const [workerPath, image, guest] = process.argv.slice(2);
const runJob = (await import(pathToFileURL(workerPath).href)).default;
async function job(kind, args, path = image) {
  const { port1, port2 } = new MessageChannel();
  port1.on('message', () => {});
  const outcome = await runJob({ kind, path, args, progressPort: port2, cancelFlag: new Int32Array(new SharedArrayBuffer(4)) });
  port1.close();
  return outcome;
}
const info = await job('image.info', {});
const create = await job('snapshot.create', { name: 'from-the-package' });
const files = await job('files.list', { state: 'current', path: '/' }, guest);
// The koffi binary mapped into this process (loaded directly or through koffi's loader: io/libc.ts).
const koffi = [...new Set(readFileSync('/proc/self/maps', 'utf8').split('\\n').map((line) => line.split(/\\s+/)[5] ?? '').filter((file) => file.includes('koffi')))];
process.stdout.write(JSON.stringify({ info, create, files, koffi }));
`;
