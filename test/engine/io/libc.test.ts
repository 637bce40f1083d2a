/**
 * The C library through koffi's prebuilt binary, loaded directly (io/libc.ts says why): the calls
 * work, the load does not pull in the Node modules koffi's own loader does, and where the binary
 * is not the one koffi's version expects, koffi's loader is used instead.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { libc, nodeModulesFolder, prebuiltKoffi } from '../../../src/shared/qcow2/io/libc.ts';

const NODE = path.resolve('node_modules/.bin/node');
const folders: string[] = [];
afterEach(() => {
  for (const folder of folders.splice(0)) fs.rmSync(folder, { recursive: true, force: true });
});

describe('libc', () => {
  it('calls into the C library', () => {
    const loaded = libc();
    if (loaded instanceof Error) throw loaded;
    const getpid = loaded.library.func('int getpid()') as unknown as () => number;
    expect(getpid()).toBe(process.pid);
  });

  it('loads without Node\'s streams or worker threads (what koffi\'s own loader costs a command at start-up)', () => {
    const script = [
      `const { libc } = await import(${JSON.stringify(path.resolve('src/shared/qcow2/io/libc.ts'))});`,
      'const before = new Set(process.moduleLoadList);',
      'const loaded = libc();',
      'if (loaded instanceof Error) throw loaded;',
      'const added = process.moduleLoadList.filter((name) => !before.has(name));',
      "process.stdout.write(JSON.stringify({ pid: loaded.library.func('int getpid()')() === process.pid, added }));",
    ].join('\n');
    const result = spawnSync(NODE, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(result.status, result.stderr).toBe(0);
    const { pid, added } = JSON.parse(result.stdout) as { pid: boolean; added: string[] };
    expect(pid).toBe(true);
    expect(added.filter((name) => /\b(stream|worker_threads|internal\/worker)\b/.test(name))).toEqual([]);
  });

  it('finds koffi and its binary package where Node would, as require.resolve does', () => {
    const require = createRequire(import.meta.url);
    const from = path.dirname(path.resolve('src/shared/qcow2/io/libc.ts'));
    const koffiFolder = nodeModulesFolder('koffi', from);
    expect(koffiFolder).toBe(path.dirname(require.resolve('koffi')));
    expect(nodeModulesFolder(`@koromix/koffi-linux-${process.arch}`, koffiFolder ?? '/')).toBe(path.dirname(require.resolve(`@koromix/koffi-linux-${process.arch}/package.json`)));
    expect(nodeModulesFolder('no-such-package-here', from)).toBeNull();
  });

  it('leaves the loading to koffi where the prebuilt binary\'s package is another version', () => {
    const require = createRequire(import.meta.url);
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'cowbell-libc-'));
    folders.push(folder);
    const realBinaryPackage = path.dirname(require.resolve(`@koromix/koffi-linux-${process.arch}/package.json`));
    fs.cpSync(realBinaryPackage, folder, { recursive: true });
    const packageJson = path.join(folder, 'package.json');
    fs.writeFileSync(packageJson, JSON.stringify({ ...JSON.parse(fs.readFileSync(packageJson, 'utf8')), version: '0.0.1' }));
    const find = (name: string, from: string) => (name.startsWith('@koromix/') ? folder : nodeModulesFolder(name, from));
    expect(prebuiltKoffi(find)).toBeNull();
    // The same copy with the right version loads.
    fs.writeFileSync(packageJson, fs.readFileSync(path.join(realBinaryPackage, 'package.json')));
    expect(prebuiltKoffi(find)?.version).toBe(JSON.parse(fs.readFileSync(packageJson, 'utf8')).version);
  });

  it('leaves the loading to koffi where there is no prebuilt binary package, or no koffi where it looks', () => {
    expect(prebuiltKoffi((name, from) => (name.startsWith('@koromix/') ? null : nodeModulesFolder(name, from)))).toBeNull();
    expect(prebuiltKoffi(nodeModulesFolder, '/')).toBeNull();
    expect(prebuiltKoffi()).not.toBeNull();
  });
});
