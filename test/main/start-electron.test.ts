/**
 * `npm start` on a machine where Electron's binary has not been downloaded yet: it runs Electron's
 * own installer (here a stand-in package whose install.js plays the part) and launches what that
 * installed; when the installer fails it says why in one line and starts browser mode instead.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, type TempDir } from '../helpers/qemu.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const start = path.join(root, 'scripts/start.ts');
let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

/** A stand-in of node_modules/electron: install.js runs `installer` (JavaScript), nothing else is there. */
function standInPackage(name: string, installer: string): string {
  const dir = folder.file(name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'install.js'), installer);
  return dir;
}

/** An installer that places a fake Electron writing its arguments to `log`, as the real one places the binary. */
const SUCCEEDING_INSTALLER = `
const fs = require('fs');
const path = require('path');
console.log('Downloading electron-v45 (stand-in)… 100%');
fs.mkdirSync(path.join(__dirname, 'dist'), { recursive: true });
const binary = path.join(__dirname, 'dist', 'electron');
fs.writeFileSync(binary, '#!/bin/sh\\nprintf "%s\\\\n" "$0" "$@" > "$COWBELL_FAKE_ELECTRON_LOG"\\n');
fs.chmodSync(binary, 0o755);
fs.writeFileSync(path.join(__dirname, 'path.txt'), 'electron');
`;

const FAILING_INSTALLER = `
console.error('TypeError: fetch failed');
console.error('    at node:internal/deps/undici/undici:13510:13');
process.exit(1);
`;

describe("npm start and Electron's binary", () => {
  it("downloads the binary through Electron's installer when it is missing, then launches the one it installed", () => {
    const dir = standInPackage('succeeds', SUCCEEDING_INSTALLER);
    const log = folder.file('launch.log');
    const image = folder.file('disk.qcow2');
    const run = spawnSync(process.execPath, [start, '--no-build', image], { encoding: 'utf8', env: { ...process.env, COWBELL_ELECTRON_DIR: dir, COWBELL_FAKE_ELECTRON_LOG: log } });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/downloading it/);
    expect(run.stdout).toMatch(/stand-in/);
    const launched = fs.readFileSync(log, 'utf8').trim().split('\n');
    expect(launched[0]).toBe(path.join(dir, 'dist', 'electron'));
    expect(launched.slice(1)).toEqual([root.replace(/\/$/, ''), '--', image]);
    // Once installed, the next start launches it without running the installer again.
    fs.writeFileSync(path.join(dir, 'install.js'), 'process.exit(7);');
    const again = spawnSync(process.execPath, [start, '--no-build'], { encoding: 'utf8', env: { ...process.env, COWBELL_ELECTRON_DIR: dir, COWBELL_FAKE_ELECTRON_LOG: log } });
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).not.toMatch(/downloading/);
  });

  it('when the download fails, says why in one line and starts browser mode', async () => {
    const dir = standInPackage('fails', FAILING_INSTALLER);
    const child = spawn(process.execPath, [start, '--no-build'], { env: { ...process.env, COWBELL_ELECTRON_DIR: dir }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    const address = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no address in time:\n${stdout}`)), 30_000);
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        const match = /Cowbell \(browser mode\): (http:\/\/127\.0\.0\.1:\d+\/\S*)/.exec(stdout);
        if (match?.[1] !== undefined) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      });
      child.on('exit', (code) => reject(new Error(`start exited (${code}) before browser mode:\n${stdout}`)));
    });
    child.kill('SIGTERM');
    const lines = stdout.trim().split('\n');
    const explanation = lines.find((line) => line.startsWith('No desktop window'));
    expect(explanation).toBe("No desktop window: Electron's binary could not be installed (the download failed: TypeError: fetch failed); starting browser mode instead.");
    expect(address).toMatch(/^http:\/\/127\.0\.0\.1:/);
  }, 60_000);
});
