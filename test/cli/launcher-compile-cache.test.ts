/**
 * bin/cowbell keeps Node's compile cache in the user's own cache folder, never in Node's default,
 * the shared temporary folder: Node runs whatever compiled code it finds in the cache, and another
 * local user who made /tmp/node-compile-cache first could have put some there (a way into root's
 * process when root runs cowbell on its VMs' disks). A cache folder another user could change is
 * not used at all.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, type TempDir } from '../helpers/qemu.ts';

const NODE = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url));
const LAUNCHER = fileURLToPath(new URL('../../bin/cowbell', import.meta.url));
const asRoot = process.getuid?.() === 0;
let folder: TempDir;
let count = 0;

beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

/** `cowbell --version` with its own HOME and TMPDIR (and whatever else `env` says); the two folders. */
function runWith(env: Record<string, string> = {}): { home: string; tmp: string } {
  const home = folder.file(`home-${++count}`);
  const tmp = folder.file(`tmp-${count}`);
  fs.mkdirSync(home, { mode: 0o755 });
  fs.mkdirSync(tmp);
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^(NODE_COMPILE_CACHE|NODE_DISABLE_COMPILE_CACHE|XDG_CACHE_HOME|HOME|TMPDIR)$/.test(name)));
  const result = spawnSync(NODE, [LAUNCHER, '--version'], { encoding: 'utf8', env: { ...inherited, HOME: home, TMPDIR: tmp, ...env } });
  expect(result.status, result.stderr).toBe(0);
  expect(result.stdout).toMatch(/^cowbell \d/);
  return { home, tmp };
}

/** The compiled modules Node keeps under a compile cache folder (in its version-named subfolder). */
function cachedUnder(cache: string): string[] {
  if (!fs.existsSync(cache)) return [];
  return fs.readdirSync(cache).flatMap((version) => fs.readdirSync(path.join(cache, version)));
}

describe("bin/cowbell's compile cache", () => {
  it("lives in the user's own cache folder, which only the user may enter, and never in the temporary folder", () => {
    const { home, tmp } = runWith();
    const cache = path.join(home, '.cache', 'cowbell', 'node-compile-cache');
    expect(cachedUnder(cache).length).toBeGreaterThan(0);
    expect(fs.statSync(cache).mode & 0o777).toBe(0o700);
    expect(fs.existsSync(path.join(tmp, 'node-compile-cache'))).toBe(false);
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  it('is left off where the cache folder, or one it hangs from, is one other users may change, and is not moved to the temporary folder', () => {
    // The cache folder itself open to all; then the folder the cache hangs from (no sticky bit).
    const openCache = folder.file('open-cache');
    fs.mkdirSync(path.join(openCache, 'cowbell', 'node-compile-cache'), { recursive: true });
    fs.chmodSync(path.join(openCache, 'cowbell', 'node-compile-cache'), 0o777);
    const openBase = folder.file('open-base');
    fs.mkdirSync(openBase);
    fs.chmodSync(openBase, 0o777);
    for (const base of [openCache, openBase]) {
      const { tmp } = runWith({ XDG_CACHE_HOME: base });
      expect(cachedUnder(path.join(base, 'cowbell', 'node-compile-cache')), base).toEqual([]);
      expect(fs.readdirSync(tmp)).toEqual([]);
    }
  });

  it.skipIf(!asRoot)('is left off where a folder of the cache belongs to another user (run as root here)', () => {
    const base = folder.file('planted');
    const cache = path.join(base, 'cowbell', 'node-compile-cache');
    fs.mkdirSync(cache, { recursive: true, mode: 0o700 });
    // Another user's folder in this user's cache folder: they could swap what is inside.
    fs.chownSync(path.dirname(cache), 65534, 65534);
    runWith({ XDG_CACHE_HOME: base });
    expect(cachedUnder(cache)).toEqual([]);
  });

  it.skipIf(!asRoot)("is left off, and nothing is made there, where a folder above the cache belongs to another user: root with that user's HOME (they could swap the cache folder while Node reads it)", () => {
    const userHome = folder.file('user-home');
    fs.mkdirSync(userHome, { mode: 0o755 });
    fs.chownSync(userHome, 65534, 65534);
    const { tmp } = runWith({ HOME: userHome });
    expect(fs.readdirSync(userHome), 'nothing of root’s left in the user’s home').toEqual([]);
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  it('follows NODE_COMPILE_CACHE where the user sets it (Node\'s own setting)', () => {
    const chosen = folder.file('chosen-cache');
    runWith({ NODE_COMPILE_CACHE: chosen });
    expect(cachedUnder(chosen).length).toBeGreaterThan(0);
  });
});
