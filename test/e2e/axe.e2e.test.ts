/**
 * Automated accessibility checks (axe-core, the engine behind Lighthouse's and Deque's): every main
 * view, the dialogs a user meets first and a disk that cannot be opened, in the light and the dark
 * scheme, with no violation. Contrast below 4.5:1, a control nested in another, a field without
 * a label: each of these was found by hand in a UI audit before; this keeps them found.
 */
import { execFileSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemuImgTimingPbkdf2Sync } from '../helpers/qemu.ts';
import { violations, type Violation } from './axe-check.ts';
import { eventually, makeTempDir, openApp, qemuImg, screenshot } from './harness.ts';

let folder: string;
let disk: string;
let overlay: string;
let encrypted: string;

beforeAll(async () => {
  folder = await makeTempDir();
  disk = join(folder, 'fedora.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', disk, '64M');
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 1 0 1M', disk]);
  qemuImg('snapshot', '-c', 'fresh install', disk);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 2 1M 1M', disk]);
  qemuImg('snapshot', '-c', 'drivers', disk);
  overlay = join(folder, 'web.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', disk, '-F', 'qcow2', overlay);
  qemuImg('snapshot', '-c', 'site up', overlay);
  encrypted = join(folder, 'vault.qcow2');
  // iter-time=10 and retried: qemu-img's key-slot timing fails at times on these machines (TOOLCHAIN.md).
  qemuImgTimingPbkdf2Sync(['create', '-q', '-f', 'qcow2', '--object', 'secret,id=s0,data=correct horse', '-o', 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10', encrypted, '64M']);
});

afterAll(async () => {
  await rm(folder, { recursive: true, force: true });
});

describe('axe finds no accessibility violation', () => {
  for (const colorScheme of ['light', 'dark'] as const) {
    it(`${colorScheme}: the views, the first dialogs, the jobs and files panes and a disk that cannot be opened`, async () => {
      const session = await openApp([disk, join(folder, 'missing.qcow2')], { viewport: { width: 1280, height: 800 }, colorScheme });
      try {
        const { page } = session;
        await eventually(() => page.getByTestId('tree-node').count()).toBe(3);
        const seen: Record<string, Violation[]> = {};
        const check = async (view: string): Promise<void> => {
          seen[view] = await violations(page);
        };
        await check('snapshots');
        await page.locator('[data-testid="tree-node"][aria-label^="drivers"]').click();
        await eventually(() => page.getByTestId('action-revert').isVisible()).toBe(true);
        await check('a snapshot selected');
        for (const tab of ['space', 'map', 'properties']) {
          await page.getByTestId(`tab-${tab}`).click();
          await page.getByRole('tabpanel').waitFor();
          await check(`the ${tab} tab`);
        }
        await page.getByTestId('tab-snapshots').click();
        for (const button of ['take-button', 'compress-button', 'encrypt-button', 'resize-button', 'new-disk-button']) {
          await page.getByTestId(button).click();
          await page.getByRole('dialog').waitFor();
          await check(`the dialog of ${button}`);
          await page.keyboard.press('Escape');
          await eventually(() => page.getByRole('dialog').count()).toBe(0);
        }
        await page.getByTestId('jobs-toggle').click();
        await page.getByTestId('jobs-panel').waitFor();
        await page.getByTestId('files-toggle').click();
        await page.getByTestId('files-pane').waitFor();
        await check('the jobs and files panes');
        await page.locator('[data-testid="disk-item"].failed').click();
        await eventually(() => page.getByTestId('tree-node').count()).toBe(0);
        await check('a disk that cannot be opened');
        await screenshot(page, `axe-${colorScheme}`);
        expect(Object.fromEntries(Object.entries(seen).filter(([, found]) => found.length > 0))).toEqual({});
        expect(Object.keys(seen)).toHaveLength(12);
      } finally {
        await session.close();
      }
    });

    it(`${colorScheme}: a snapshot's dialogs, the backing chain's, and an encrypted disk (locked) with its own`, async () => {
      const session = await openApp([overlay, encrypted], { viewport: { width: 1280, height: 800 }, colorScheme });
      try {
        const { page } = session;
        await eventually(() => page.getByTestId('tree-node').count()).toBe(2);
        await page.locator('[data-testid="tree-node"][aria-label^="site up"]').click();
        const seen: Record<string, Violation[]> = {};
        const dialogs = async (buttons: string[]): Promise<void> => {
          for (const button of buttons) {
            await page.getByTestId(button).click();
            // Revert and Delete are alert dialogs: the open <dialog> whatever its role.
            await page.locator('dialog[open]').waitFor();
            seen[`the dialog of ${button}`] = await violations(page);
            await page.keyboard.press('Escape');
            await eventually(() => page.locator('dialog[open]').count()).toBe(0);
          }
        };
        await dialogs(['action-revert', 'action-rename', 'action-delete', 'action-export', 'action-note', 'compact-button', 'check-button', 'rebase-button', 'linked-clone-button', 'commit-button']);
        await page.locator(`[data-testid="disk-item"][data-path="${encrypted}"]`).click();
        await eventually(() => page.getByTestId('passphrase-button').isEnabled()).toBe(true);
        seen['an encrypted disk'] = await violations(page);
        await dialogs(['passphrase-button', 'decrypt-button']);
        expect(Object.fromEntries(Object.entries(seen).filter(([, found]) => found.length > 0))).toEqual({});
        expect(Object.keys(seen)).toHaveLength(13);
      } finally {
        await session.close();
      }
    });
  }
});
