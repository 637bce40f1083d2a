/**
 * The app for a screen-reader user and at a large zoom, in Chromium: what its accessibility tree
 * exposes (the tree as a tree, dialogs by name with what they do), that a job's end is announced,
 * and that the snapshot tree keeps room to work in a small window (640×400: 1280×800 at 200 %).
 */
import { execFileSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, makeTempDir, openApp, qemuImg, screenshot, showTab } from './harness.ts';

let folder: string;

/** A disk with two snapshots, one after the other. */
function makeDisk(name: string): string {
  const disk = join(folder, name);
  qemuImg('create', '-q', '-f', 'qcow2', disk, '64M');
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 1 0 1M', disk]);
  qemuImg('snapshot', '-c', 'clean install', disk);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 2 1M 1M', disk]);
  qemuImg('snapshot', '-c', 'with updates', disk);
  return disk;
}

beforeAll(async () => {
  folder = await makeTempDir();
});

afterAll(async () => {
  await rm(folder, { recursive: true, force: true });
});

interface AxNode {
  nodeId?: string;
  parentId?: string;
  role?: { value?: string };
  name?: { value?: string };
  properties?: { name: string; value: { value?: unknown } }[];
  ignored?: boolean;
}

/** Chromium's own accessibility tree (what a screen reader is given), not Playwright's guess at it. */
async function accessibilityTree(page: Page): Promise<AxNode[]> {
  const session = await page.context().newCDPSession(page);
  try {
    await session.send('Accessibility.enable');
    const { nodes } = (await session.send('Accessibility.getFullAXTree')) as { nodes: AxNode[] };
    return nodes.filter((node) => !node.ignored);
  } finally {
    await session.detach();
  }
}

/** Controls a reader meets inside a tree or a list option, which may hold only their items and text (ARIA): "role in role: name" for each. */
async function controlsInsideItems(page: Page): Promise<string[]> {
  const session = await page.context().newCDPSession(page);
  try {
    await session.send('Accessibility.enable');
    const { nodes } = (await session.send('Accessibility.getFullAXTree')) as { nodes: AxNode[] };
    const byId = new Map(nodes.map((node) => [node.nodeId, node]));
    const found: string[] = [];
    for (const node of nodes) {
      if (node.ignored || !['button', 'link', 'textbox', 'checkbox'].includes(node.role?.value ?? '')) continue;
      for (let parent = byId.get(node.parentId); parent !== undefined; parent = byId.get(parent.parentId)) {
        const role = parent.role?.value ?? '';
        if (role === 'tree' || role === 'option' || role === 'treeitem') found.push(`${node.role?.value} in ${role}: ${node.name?.value ?? ''}`);
      }
    }
    return found;
  } finally {
    await session.detach();
  }
}

function property(node: AxNode, name: string): unknown {
  return node.properties?.find((entry) => entry.name === name)?.value.value;
}

describe('a screen reader’s view of the app', () => {
  it('walks the snapshot tree as a tree, hears each dialog’s name and what it does, and hears a job end', async () => {
    const session = await openApp([makeDisk('reader.qcow2')]);
    try {
      const { page } = session;
      await eventually(() => page.getByTestId('tree-node').count()).toBe(3);

      const items = (await accessibilityTree(page)).filter((node) => node.role?.value === 'treeitem');
      const described = items.map((node) => ({ name: node.name?.value ?? '', level: property(node, 'level') }));
      expect(described).toHaveLength(3);
      expect(described.find((item) => item.name.startsWith('clean install,'))?.level).toBe(1);
      expect(described.find((item) => item.name.startsWith('with updates,'))?.level).toBe(2);
      expect(described.find((item) => item.name.startsWith('You are here'))?.level).toBe(3);
      // The tree's zoom buttons and a disk's close button are beside the items, not in them.
      expect(await controlsInsideItems(page)).toEqual([]);
      // Headings go down one level at a time (a reader's outline skips none): the disk's name, then its sections.
      const headings = (await accessibilityTree(page)).filter((node) => node.role?.value === 'heading').map((node) => ({ name: node.name?.value ?? '', level: Number(property(node, 'level')) }));
      expect(headings.find((heading) => heading.name === 'reader.qcow2')?.level).toBe(1);
      expect(headings.filter((heading, index) => index > 0 && heading.level > headings[index - 1]!.level + 1)).toEqual([]);

      // Delete: an alert dialog named by its title (which names the snapshot), described by what it loses.
      await page.locator('[data-testid="tree-node"][aria-label^="clean install"]').click();
      await page.getByTestId('action-delete').click();
      const dialog = page.getByRole('alertdialog', { name: /Delete “clean install”/ });
      await dialog.waitFor();
      const description = await dialog.evaluate((element) => {
        const id = element.getAttribute('aria-describedby');
        return (id === null ? null : element.ownerDocument.getElementById(id))?.textContent ?? '';
      });
      expect(description).toMatch(/This frees [\s\S]*cannot be undone/);
      const axDialog = (await accessibilityTree(page)).find((node) => node.role?.value === 'alertdialog');
      expect(axDialog?.name?.value).toMatch(/Delete “clean install”/);
      await page.getByTestId('dialog-cancel').click();
      await eventually(() => page.getByTestId('dialog').count()).toBe(0);

      // Take a snapshot: its end is read out by the status bar's live region.
      await page.getByTestId('take-button').click();
      await page.getByTestId('snapshot-name-input').fill('read aloud');
      await page.getByTestId('dialog-submit').click();
      await eventually(() => page.getByTestId('job-announcement').textContent()).toMatch(/read aloud/);
      expect(await page.getByTestId('job-announcement').getAttribute('role')).toBe('status');
      expect(await page.getByTestId('job-alert').textContent()).toBe('');
      await screenshot(page, 'accessibility-after-take');
    } finally {
      await session.close();
    }
  });
});

describe('a small window or a 200 % zoom', () => {
  for (const colorScheme of ['light', 'dark'] as const) {
    it(`640×400 ${colorScheme}: the snapshot tree keeps room to work in, and its node can be selected`, async () => {
      const session = await openApp([makeDisk(`small-${colorScheme}.qcow2`)], { viewport: { width: 640, height: 400 }, colorScheme });
      try {
        const { page } = session;
        await eventually(() => page.getByTestId('tree-node').count()).toBe(3);
        const box = await page.getByTestId('snapshot-tree').boundingBox();
        expect(box?.width ?? 0).toBeGreaterThanOrEqual(250);
        expect(box?.height ?? 0).toBeGreaterThanOrEqual(200);
        await page.locator('[data-testid="tree-node"][aria-label^="clean install"]').click();
        await eventually(() => page.getByTestId('action-revert').isVisible()).toBe(true);
        await screenshot(page, `small-window-${colorScheme}`);
      } finally {
        await session.close();
      }
    });
  }
});

describe('a small window with a backing chain above the tree', () => {
  it('640×400: the tree keeps its working height (the chain bar left it a 77 px strip with no node in it: UI audit), the panel scrolls, by the wheel over the tree too', async () => {
    const base = makeDisk('chain-base.qcow2');
    const overlay = join(folder, 'chain-top.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay);
    qemuImg('snapshot', '-c', 'on the overlay', overlay);
    const session = await openApp([overlay], { viewport: { width: 640, height: 400 } });
    try {
      const { page } = session;
      await eventually(() => page.getByTestId('chain-file-0').isVisible()).toBe(true);
      await eventually(() => page.getByTestId('tree-node').count()).toBe(2);
      // What shows of the tree: the pane holding it, not the tree's own box (clipped inside it, that stayed 280 px).
      const paneHeight = await page.locator('.snapshots-pane').evaluate((element) => element.clientHeight);
      expect(paneHeight).toBeGreaterThanOrEqual(200);
      await page.locator('[data-testid="tree-node"][aria-label^="on the overlay"]').click();
      await eventually(() => page.getByTestId('action-revert').isVisible()).toBe(true);
      // The wheel over a tree that is all in view scrolls the tab (it panned the tree: UI audit).
      const scrollers = page.locator('.tab-panel, .snapshots-pane');
      const scrolled = (): Promise<number> => scrollers.evaluateAll((elements) => elements.reduce((sum, element) => sum + element.scrollTop, 0));
      await scrollers.evaluateAll((elements) => elements.forEach((element) => element.scrollTo(0, 0)));
      await eventually(scrolled).toBe(0);
      const tree = await page.getByTestId('snapshot-tree').boundingBox();
      if (tree === null) throw new Error('the tree is not drawn');
      await page.mouse.move(tree.x + tree.width / 2, tree.y + Math.min(tree.height / 2, 40));
      await page.mouse.wheel(0, 120);
      await eventually(scrolled).toBeGreaterThan(0);
      await screenshot(page, 'small-window-chain');
    } finally {
      await session.close();
    }
  });
});

describe('a short tree pane (the jobs panel open)', () => {
  it('places, fits and reveals nodes above the zoom controls (they covered "You are here": UI audit)', async () => {
    const disk = makeDisk('tall-tree.qcow2');
    for (let index = 0; index < 8; index++) qemuImg('snapshot', '-c', `step ${index}`, disk);
    const session = await openApp([disk], { viewport: { width: 1024, height: 640 } });
    try {
      const { page } = session;
      await eventually(() => page.getByTestId('tree-node').count()).toBe(11);
      await page.getByTestId('jobs-toggle').click();
      await page.getByTestId('jobs-panel').waitFor();
      const controlsTop = async (): Promise<number> => (await page.getByTestId('tree-controls').boundingBox())?.y ?? 0;
      const bottomOf = async (id: string): Promise<number> => {
        const box = await page.locator(`[data-testid="tree-node"][data-node-id="${id}"]`).boundingBox();
        return (box?.y ?? Infinity) + (box?.height ?? 0);
      };
      const tree = page.getByTestId('snapshot-tree');
      // Home places the current state as on opening.
      await tree.focus();
      await page.keyboard.press('Home');
      await eventually(async () => (await bottomOf('current')) <= (await controlsTop())).toBe(true);
      // Up to the first snapshot and back down: each step reveals the selected node.
      for (let step = 0; step < 12; step++) await page.keyboard.press('ArrowUp');
      for (let step = 0; step < 12; step++) await page.keyboard.press('ArrowDown');
      await eventually(async () => (await bottomOf('current')) <= (await controlsTop())).toBe(true);
      await page.getByTestId('tree-fit').click();
      await eventually(async () => (await bottomOf('current')) <= (await controlsTop())).toBe(true);
      await screenshot(page, 'short-tree-pane');
    } finally {
      await session.close();
    }
  });
});

describe('long snapshot names in the tree', () => {
  it('end, with an ellipsis, inside the highlight behind their node, as the date line does (wide glyphs ran past it: UI audit)', async () => {
    const disk = makeDisk('long-names.qcow2');
    qemuImg('snapshot', '-c', 'x'.repeat(120), disk);
    qemuImg('snapshot', '-c', 'W'.repeat(40), disk);
    const session = await openApp([disk]);
    try {
      const { page } = session;
      await eventually(() => page.getByTestId('tree-node').count()).toBe(5);
      const overhang = await page.getByTestId('tree-node').evaluateAll((nodes) =>
        nodes.map((node) => {
          const name = node.querySelector('[data-testid="tree-node-name"]');
          const meta = node.querySelector('[data-testid="tree-node-meta"]');
          const back = node.querySelector('.node-back');
          if (name === null || meta === null || back === null) return Infinity;
          return Math.max(name.getBoundingClientRect().right, meta.getBoundingClientRect().right) - back.getBoundingClientRect().right;
        }),
      );
      expect(overhang.every((pixels) => pixels <= 0)).toBe(true);
      const names = await page.getByTestId('tree-node-name').allTextContents();
      expect(names.filter((name) => name.endsWith('…'))).toHaveLength(2);
      // The current state's card names the long one it is based on, inside the card.
      const card = page.getByTestId('node-card');
      expect(await card.locator('.card-line').first().evaluate((line) => line.scrollWidth - line.clientWidth)).toBe(0);
      expect(await card.evaluate((element) => element.scrollWidth - element.clientWidth)).toBe(0);
    } finally {
      await session.close();
    }
  });
});

describe('forced colours (a high-contrast system palette)', () => {
  it('keeps the legend’s colour swatches and marks the selected tab and disk with an outline', async () => {
    const session = await openApp([makeDisk('forced.qcow2')]);
    try {
      const { page } = session;
      await page.emulateMedia({ forcedColors: 'active' });
      await eventually(() => page.getByTestId('tree-node').count()).toBe(3);
      await showTab(page, 'map');
      const swatch = page.locator('.swatch.data').first();
      await swatch.waitFor();
      expect(await swatch.evaluate((element) => element.ownerDocument.defaultView?.getComputedStyle(element).backgroundColor)).toBe('rgb(47, 111, 214)');
      for (const selected of [page.locator('[role="tab"][aria-selected="true"]'), page.locator('[role="option"][aria-selected="true"]')]) {
        expect(await selected.evaluate((element) => element.ownerDocument.defaultView?.getComputedStyle(element).outlineStyle)).toBe('solid');
      }
      await screenshot(page, 'forced-colors-map');
    } finally {
      await session.close();
    }
  });
});

describe('the charts and the map in words', () => {
  it('the Space tab gives each state’s bytes as a table and the Map tab names its shares', async () => {
    const session = await openApp([makeDisk('words.qcow2')]);
    try {
      const { page } = session;
      await eventually(() => page.getByTestId('tree-node').count()).toBe(3);
      await showTab(page, 'space');
      const table = page.getByTestId('snapshot-space-table');
      await eventually(() => table.locator('tbody tr').count()).toBe(3);
      const rows = await table.locator('tbody tr').allTextContents();
      // State, only in it, shared: as the chart's bars draw them.
      expect(rows).toContain('clean install128 KiB1 MiB');
      expect(rows).toContain('Current state0 B2 MiB');
      await showTab(page, 'map');
      // 2 MiB written of a 64 MiB disk: 3 % data, the rest unallocated.
      await eventually(() => page.getByTestId('allocation-map').getAttribute('aria-label')).toBe('Allocation map: Unallocated 97 %, Data 3 %');
    } finally {
      await session.close();
    }
  });
});
