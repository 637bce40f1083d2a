/**
 * The desktop app itself, through Playwright's Electron driver, where an Electron binary exists
 * (none can be downloaded on the project's machines: there it prints one SKIPPED line). It runs
 * the built app (package.json "main": out/main/index.js, the renderer from out/ over app://) as
 * `npm start` does, with a throw-away config folder and, without a display, its own Xvfb.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { _electron as electron, type ElectronApplication, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installedElectronBinary } from '../../scripts/lib/electron-binary.ts';
import { eventually, makeTempDir, qemuImg, repoRoot, screenshot } from './harness.ts';

const binary = installedElectronBinary();
if (!binary) console.log('SKIPPED: no Electron binary on this machine (node_modules/electron/dist); the Electron e2e test did not run');

interface Display {
  name: string;
  stop(): Promise<void>;
}

/** The session's display, or a fresh Xvfb (installed by .ci/run) when there is none. */
async function displayForElectron(): Promise<Display> {
  if (process.platform !== 'linux' || process.env.DISPLAY) return { name: process.env.DISPLAY ?? '', stop: async () => undefined };
  if (!existsSync('/usr/bin/Xvfb')) throw new Error('no DISPLAY and no /usr/bin/Xvfb (apt-get install xvfb)');
  // -displayfd: Xvfb picks a free display and writes its number on fd 3 once it accepts clients.
  const server: ChildProcess = spawn('/usr/bin/Xvfb', ['-displayfd', '3', '-screen', '0', '1400x900x24', '-nolisten', 'tcp'], {
    stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
  });
  const number = await new Promise<string>((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error('Xvfb did not start within 10 s')), 10_000);
    server.stdio[3]?.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
      if (text.includes('\n')) {
        clearTimeout(timer);
        resolve(text.trim());
      }
    });
    server.once('exit', (code) => reject(new Error(`Xvfb exited with ${code}`)));
  });
  return {
    name: `:${number}`,
    stop: async () => {
      server.kill('SIGTERM');
      await new Promise((resolve) => server.once('exit', resolve));
    },
  };
}

describe.skipIf(!binary)('Electron: the desktop app', () => {
  let folder = '';
  let display: Display;
  let environment: Record<string, string> = {};

  beforeAll(async () => {
    folder = await makeTempDir();
    display = await displayForElectron();
    // Not the dev server's address, not Node mode: the built app, as installed.
    const dropped = new Set(['ELECTRON_RENDERER_URL', 'ELECTRON_RUN_AS_NODE']);
    const inherited = Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined && !dropped.has(entry[0]));
    // A config folder of its own: no recent disks from the developer's Cowbell, and its own single-instance lock.
    environment = { ...Object.fromEntries(inherited), DISPLAY: display.name, XDG_CONFIG_HOME: join(folder, 'config') };
  });

  afterAll(async () => {
    await display?.stop();
    await rm(folder, { recursive: true, force: true });
  });

  /** `electron --no-sandbox <repo> ARGS…`: the app folder, then the launch's own arguments. */
  function launch(args: string[]): Promise<ElectronApplication> {
    return electron.launch({ executablePath: binary ?? '', args: ['--no-sandbox', repoRoot, ...args], cwd: folder, env: environment });
  }

  async function treeNames(page: Page): Promise<string[]> {
    return page.getByTestId('tree-node-name').allTextContents();
  }

  it('opens the image given on the command line and shows its snapshots; a second launch hands its image to this window', async () => {
    const first = join(folder, 'electron.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', first, '2G');
    qemuImg('snapshot', '-c', 'first', first);
    qemuImg('snapshot', '-c', 'second', first);
    const other = join(folder, 'other.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', other, '1G');
    qemuImg('snapshot', '-c', 'elsewhere', other);

    const app = await launch([first]);
    try {
      const page = await app.firstWindow();
      // Only the image: the app folder before it on the command line is not a disk to open.
      await eventually(() => page.getByTestId('disk-item').count()).toBe(1);
      await eventually(() => treeNames(page)).toEqual(expect.arrayContaining(['first', 'second', 'You are here']));
      await page.getByTestId('tab-properties').click();
      await eventually(() => page.getByTestId('info-virtual-size').textContent()).toBe('2 GiB');
      expect(await page.getByTestId('snapshot-name').allTextContents()).toEqual(['first', 'second']);
      await screenshot(page, 'electron-open-image');

      // The page talks to the preload's API, and is what the hardening says it is.
      const hardening = await page.evaluate(() => {
        const scope = globalThis as unknown as {
          cowbell?: { request?: unknown };
          require?: unknown;
          process?: unknown;
          location: { href: string };
          open(url: string): unknown;
        };
        let evalBlocked = false;
        try {
          new Function('return 1')();
        } catch {
          evalBlocked = true;
        }
        return {
          api: typeof scope.cowbell?.request,
          node: typeof scope.require === 'undefined' && typeof scope.process === 'undefined',
          evalBlocked,
          popup: scope.open('https://example.com/') === null,
          url: scope.location.href,
        };
      });
      expect(hardening).toEqual({ api: 'function', node: true, evalBlocked: true, popup: true, url: 'app://cowbell/index.html' });

      // A second launch (as "Open with Cowbell" does) quits at once and its image opens here.
      const second = spawn(binary ?? '', ['--no-sandbox', repoRoot, other], { cwd: folder, env: environment, stdio: 'ignore' });
      const exitCode = await new Promise<number | null>((resolve) => second.once('exit', resolve));
      expect(exitCode).toBe(0);
      await eventually(() => page.getByTestId('disk-item').count()).toBe(2);
      await page.getByTestId('tab-snapshots').click();
      await eventually(() => treeNames(page)).toEqual(expect.arrayContaining(['elsewhere']));
      await screenshot(page, 'electron-second-launch');
    } finally {
      await app.close();
    }
  });
});
