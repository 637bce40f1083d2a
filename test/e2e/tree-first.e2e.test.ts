/**
 * Opening a disk shows its snapshot tree from the snapshot table at once, each space figure saying
 * it is still counted, and fills the figures in when the full pass ends — nothing moves. The full
 * tree job is held by a test hook (COWBELL_TEST_TREE_GATE: it waits until a file exists), so the
 * test sees the state before the figures on any machine, with no timing assumed.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { formatBytes } from '../../src/shared/format-units.ts';
import { eventually, openThroughPathField, qemuImg, screenshot, useSharedApp } from './harness.ts';

const gateFolder = mkdtempSync(join(tmpdir(), 'cowbell-tree-gate-'));
const gate = join(gateFolder, 'release');
afterAll(() => rmSync(gateFolder, { recursive: true, force: true }));

let folder: string;
let page: Page;
useSharedApp(
  (app) => {
    folder = app.folder;
    page = app.session.page;
  },
  { screenshotPrefix: 'tree-first', env: { COWBELL_TEST_TREE_GATE: gate } },
);

interface EngineTree {
  snapshots: { id: string; name: string; parentId: string | null; exclusiveBytes: number }[];
  currentParentId: string | null;
}

function cowbellTree(path: string): EngineTree {
  return JSON.parse(execFileSync(join(import.meta.dirname, '../../bin/cowbell'), ['snapshot', 'list', '--json', path], { encoding: 'utf8' })) as EngineTree;
}

function qemuIo(path: string, command: string): void {
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', command, path]);
}

/** Three snapshots qemu-img took, data written between them: parents only the mapping pass can tell. */
function makeImage(name: string): string {
  const path = join(folder, name);
  qemuImg('create', '-q', '-f', 'qcow2', path, '1G');
  qemuIo(path, 'write -P 1 0 4M');
  qemuImg('snapshot', '-c', 'first', path);
  qemuIo(path, 'write -P 2 4M 2M');
  qemuImg('snapshot', '-c', 'second', path);
  qemuIo(path, 'write -P 3 8M 3M');
  qemuImg('snapshot', '-c', 'third', path);
  qemuIo(path, 'write -P 4 16M 1M');
  return path;
}

function node(id: string) {
  return page.locator(`[data-testid="tree-node"][data-node-id="${id}"]`);
}

async function spaceOf(id: string): Promise<{ state: string | null; text: string | null }> {
  const figure = node(id).getByTestId('tree-node-space');
  return { state: await figure.getAttribute('data-space'), text: await figure.textContent() };
}

/** Every node's place in the drawing, and every edge. */
async function drawing(): Promise<{ places: Record<string, string>; edges: string[] }> {
  const places = await page.getByTestId('tree-node').evaluateAll((elements) => Object.fromEntries(elements.map((element) => [element.getAttribute('data-node-id') ?? '', element.getAttribute('transform') ?? ''])));
  const edges = await page.getByTestId('tree-edge').evaluateAll((elements) => elements.map((element) => `${element.getAttribute('data-from')}->${element.getAttribute('data-to')}`).sort());
  return { places, edges };
}

describe('the tree before the space pass', () => {
  it('shows every snapshot with its space “counting…” while the pass is held, then the figures, nothing moved', async () => {
    const path = makeImage('held.qcow2');
    const engine = cowbellTree(path);
    rmSync(gate, { force: true });
    await openThroughPathField(page, path);
    await page.getByTestId('tab-snapshots').click();

    // The quick tree: every snapshot and "You are here", drawn while the full pass waits.
    await eventually(() => page.getByTestId('tree-node').count()).toBe(4);
    expect(await page.getByTestId('snapshot-tree').getAttribute('data-counting')).toBe('true');
    expect(await page.getByTestId('tree-node-name').allTextContents()).toEqual(['first', 'second', 'third', 'You are here']);
    for (const snapshot of engine.snapshots) expect(await spaceOf(snapshot.id)).toEqual({ state: 'counting', text: 'counting…' });
    expect(await spaceOf('current')).toEqual({ state: 'counting', text: 'counting…' });
    expect(await page.getByTestId('card-unsaved').textContent()).toContain('counting…');
    // qemu-img's snapshots have no record: their parents are placeholders until the pass, drawn as they will most likely stay.
    const third = engine.snapshots.find((snapshot) => snapshot.name === 'third');
    expect(await page.locator(`[data-testid="tree-edge"][data-to="${third?.id}"]`).getAttribute('data-pending')).toBe('true');
    const before = await drawing();
    await screenshot(page, 'tree-first-counting');

    writeFileSync(gate, '');
    await eventually(() => page.getByTestId('snapshot-tree').getAttribute('data-counting')).toBe('false');
    for (const snapshot of engine.snapshots) expect(await spaceOf(snapshot.id)).toEqual({ state: 'counted', text: formatBytes(snapshot.exclusiveBytes) });
    expect((await spaceOf('current')).state).toBe('counted');
    expect(await page.locator('[data-testid="tree-edge"][data-pending="true"]').count()).toBe(0);
    // The figures arrived into the same drawing: no node moved, no edge changed, and it is the engine's tree.
    expect(await drawing()).toEqual(before);
    expect(before.edges).toEqual(
      [...engine.snapshots.filter((snapshot) => snapshot.parentId !== null).map((snapshot) => `${snapshot.parentId}->${snapshot.id}`), `${engine.currentParentId}->current`].sort(),
    );
  });

  it('a snapshot taken elsewhere shows at once, counting, while the others keep their last figures until recounted', async () => {
    const path = makeImage('changed.qcow2');
    writeFileSync(gate, '');
    await openThroughPathField(page, path);
    await page.getByTestId('tab-snapshots').click();
    const first = cowbellTree(path).snapshots.find((snapshot) => snapshot.name === 'first');
    const firstFigure = formatBytes(first?.exclusiveBytes ?? -1);
    await eventually(() => spaceOf(first?.id ?? '')).toEqual({ state: 'counted', text: firstFigure });

    rmSync(gate, { force: true });
    qemuImg('snapshot', '-c', 'fourth', path);
    await eventually(() => page.getByTestId('tree-node').count()).toBe(5);
    const fourth = cowbellTree(path).snapshots.find((snapshot) => snapshot.name === 'fourth');
    expect(await spaceOf(fourth?.id ?? '')).toEqual({ state: 'counting', text: 'counting…' });
    expect(await spaceOf(first?.id ?? '')).toEqual({ state: 'recounting', text: firstFigure });

    writeFileSync(gate, '');
    // The file watcher may report the change more than once: a read may follow the first; each ends counted.
    const engine = cowbellTree(path);
    await eventually(() => Promise.all(engine.snapshots.map((snapshot) => spaceOf(snapshot.id)))).toEqual(
      engine.snapshots.map((snapshot) => ({ state: 'counted', text: formatBytes(snapshot.exclusiveBytes) })),
    );
  });

  it('stops a count on request: the tree stays with its figures “not counted”, no error; “Count space” counts them', async () => {
    const path = makeImage('stopped.qcow2');
    rmSync(gate, { force: true });
    await openThroughPathField(page, path);
    await page.getByTestId('tab-snapshots').click();
    await eventually(() => page.getByTestId('tree-node').count()).toBe(4);
    const stop = page.getByTestId('stop-counting');
    // Shown once the count has run a second (a quick count would only flicker it).
    await stop.waitFor({ state: 'visible' });
    await screenshot(page, 'tree-first-stop-counting');
    await stop.click();
    await eventually(() => page.getByTestId('snapshot-tree').getAttribute('data-counting')).toBe('false');
    const engine = cowbellTree(path);
    for (const snapshot of engine.snapshots) expect(await spaceOf(snapshot.id)).toEqual({ state: 'uncounted', text: 'not counted' });
    expect(await page.getByTestId('tree-error').count()).toBe(0);
    expect(await page.getByTestId('tree-node').count()).toBe(4);

    writeFileSync(gate, '');
    await page.getByTestId('count-again').click();
    await eventually(() => Promise.all(engine.snapshots.map((snapshot) => spaceOf(snapshot.id)))).toEqual(
      engine.snapshots.map((snapshot) => ({ state: 'counted', text: formatBytes(snapshot.exclusiveBytes) })),
    );
    expect(await page.getByTestId('count-again').count()).toBe(0);
  });
});
