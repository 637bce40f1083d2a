import { existsSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { _electron as electron } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir, qemuImg, repoRoot, screenshot } from './harness.ts';

/** The Electron binary electron's own package would run, or null where it was never downloaded. */
function electronBinary(): string | null {
  const packageDir = join(repoRoot, 'node_modules', 'electron');
  const pathFile = join(packageDir, 'path.txt');
  if (!existsSync(pathFile)) return null;
  const binary = join(packageDir, 'dist', readFileSync(pathFile, 'utf8').trim());
  return existsSync(binary) ? binary : null;
}

const binary = electronBinary();
if (!binary) console.log('SKIPPED: no Electron binary on this machine (electron test not run)');

describe.skipIf(!binary)('Electron: opening an image', () => {
  let folder: string;

  beforeAll(async () => {
    folder = await makeTempDir();
  });

  afterAll(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  it('shows the image given on the command line in the app window', async () => {
    const path = join(folder, 'electron.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', path, '2G');
    qemuImg('snapshot', '-c', 'first', path);
    const app = await electron.launch({
      executablePath: binary ?? '',
      args: ['--no-sandbox', repoRoot, path],
      cwd: repoRoot,
    });
    try {
      const appWindow = await app.firstWindow();
      await appWindow.getByTestId('tab-properties').click();
      await expect.poll(() => appWindow.getByTestId('info-virtual-size').textContent(), { timeout: 20_000 }).toBe('2 GiB');
      expect(await appWindow.getByTestId('snapshot-name').allTextContents()).toEqual(['first']);
      // The preload's API, not the browser bridge, is what the page talks to here.
      expect(await appWindow.evaluate(() => typeof (globalThis as { cowbell?: { request?: unknown } }).cowbell?.request)).toBe(
        'function',
      );
      await screenshot(appWindow, 'electron-open-image');
    } finally {
      await app.close();
    }
  });
});
