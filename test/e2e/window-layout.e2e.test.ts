import { execFileSync } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, makeTempDir, openApp, qemuImg, screenshot } from './harness.ts';

let folder: string;
let disks: string[];

/** A small library that looks like a hobbyist's: several disks, snapshots, some guest data. */
beforeAll(async () => {
  folder = await makeTempDir();
  const fedora = join(folder, 'fedora-workstation.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', fedora, '64G');
  const history = ['fresh install', 'drivers and updates', 'before GNOME 48', 'dev tools set up', 'clean baseline'];
  for (const [index, name] of history.entries()) {
    // Guest data between snapshots, so the file holds more than metadata.
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -P ${index + 1} ${index * 256}M ${24 + index * 8}M`, fedora]);
    qemuImg('snapshot', '-c', name, fedora);
  }
  const windows = join(folder, 'windows-11.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', windows, '128G');
  qemuImg('snapshot', '-c', 'after setup', windows);
  const base = join(folder, 'debian-12-base.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', base, '20G');
  const overlay = join(folder, 'debian-12-web.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay);
  const notes = join(folder, 'README.txt');
  await writeFile(notes, 'not a disk\n');
  disks = [fedora, windows, overlay, notes];
});

afterAll(async () => {
  await rm(folder, { recursive: true, force: true });
});

/** The few DOM globals read inside page.evaluate (tsconfig.json, for Node code, has no DOM lib). */
interface PageGlobals {
  document: {
    scrollingElement: { scrollHeight: number; scrollWidth: number } | null;
    documentElement: { scrollHeight: number; scrollWidth: number };
    body: object;
  };
  innerHeight: number;
  innerWidth: number;
  getComputedStyle(element: object): { overflow: string; backgroundColor: string };
}

const sizes = [
  { width: 1400, height: 900 },
  // The desktop window's minimum (src/main/window.ts).
  { width: 1024, height: 640 },
];

describe('the window at desktop sizes, light and dark', () => {
  for (const viewport of sizes) {
    for (const colorScheme of ['light', 'dark'] as const) {
      it(`${viewport.width}x${viewport.height} ${colorScheme}: fits the window, nothing scrolls but the content pane`, async () => {
        const session = await openApp(disks, { viewport, colorScheme });
        try {
          const { page } = session;
          await eventually(() => page.getByTestId('disk-item').count()).toBe(4);
          // Five snapshots and the current state, drawn in the tree.
          await eventually(() => page.getByTestId('tree-node').count()).toBe(6);
          await eventually(() => page.getByTestId('snapshot-space-chart').count()).toBe(1);
          await eventually(() => page.locator('[data-testid="disk-item"].failed').count()).toBe(1);

          const overflow = await page.evaluate(() => {
            const { document, innerHeight, innerWidth, getComputedStyle } = globalThis as unknown as PageGlobals;
            const root = document.scrollingElement ?? document.documentElement;
            return {
              vertical: root.scrollHeight - innerHeight,
              horizontal: root.scrollWidth - innerWidth,
              bodyOverflow: getComputedStyle(document.body).overflow,
            };
          });
          expect(overflow).toEqual({ vertical: 0, horizontal: 0, bodyOverflow: 'hidden' });
          // The space card's legend wraps above its bars (drawn by the chart, a two-line legend ran over the first bar).
          const [legend, bars] = await Promise.all(['[data-testid="snapshot-space-legend"]', '[data-testid="snapshot-space-chart"] .chart'].map((selector) => page.locator(selector).boundingBox()));
          expect((legend?.y ?? Infinity) + (legend?.height ?? 0)).toBeLessThanOrEqual(bars?.y ?? 0);
          expect(await page.getByTestId('snapshot-space-legend').locator('li').allTextContents()).toEqual(['Only in this state', 'Only in the current state', 'Shared']);
          // The disk's toolbar fits beside its tabs: the last button ends inside the disk view.
          const [view, take, tabs, check] = await Promise.all(
            ['disk-view', 'take-button', 'tab-properties', 'check-button'].map((id) => page.getByTestId(id).boundingBox()),
          );
          expect((take?.x ?? Infinity) + (take?.width ?? 0)).toBeLessThanOrEqual((view?.x ?? 0) + (view?.width ?? 0) + 0.5);
          expect((tabs?.x ?? Infinity) + (tabs?.width ?? 0)).toBeLessThan(check?.x ?? 0);
          const background = await page.evaluate(() => {
            const { document, getComputedStyle } = globalThis as unknown as PageGlobals;
            return getComputedStyle(document.body).backgroundColor;
          });
          const dark = background !== 'rgb(246, 246, 247)';
          expect(dark).toBe(colorScheme === 'dark');

          await screenshot(page, `window-${viewport.width}x${viewport.height}-${colorScheme}`);
          // A snapshot's Revert/Rename/Delete fit their buttons (at 1024 "Rename…" ran 7 px past its border).
          await page.locator('[data-testid="tree-node"][aria-label^="clean baseline"]').click();
          await eventually(() => page.getByTestId('action-rename').isVisible()).toBe(true);
          const buttonOverflow = await page.locator('.write-actions .button').evaluateAll((buttons) => buttons.map((button) => button.scrollWidth - button.clientWidth));
          expect(buttonOverflow).toHaveLength(3);
          expect(Math.max(...buttonOverflow)).toBeLessThanOrEqual(1);
          // With the Files pane shown the tree keeps room, and the pane can be hidden again (app audit: at 900x600 the tree had 0 px).
          await page.getByTestId('files-toggle').click();
          await page.getByTestId('files-pane').waitFor();
          const tree = await page.getByTestId('snapshot-tree').boundingBox();
          expect(tree?.width ?? 0).toBeGreaterThan(240);
          await page.getByTestId('files-toggle').click();
          await eventually(() => page.getByTestId('files-pane').count()).toBe(0);
          expect(session.problems).toEqual([]);
        } finally {
          await session.close();
        }
      });
    }
  }
});
