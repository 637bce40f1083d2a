/**
 * Space charts, the allocation map and compare, disk operations (create, check, repair), the jobs
 * panel and the library (several disks, recent disks, drag and drop), in Chromium against browser
 * mode on images qemu-img makes here. One server and browser for the file.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { eventually, openThroughPathField, qemuImg, qemuImgInfo, screenshot, showTab, useSharedApp, type Session } from './harness.ts';

let folder: string;
let session: Session;
let page: Page;

useSharedApp((app) => {
  ({ folder, session } = app);
  page = session.page;
}, { screenshotPrefix: 'space', problemsLabel: 'the page logged errors (CSP violations included)' });

const MiB = 1024 * 1024;

function qemuIo(path: string, command: string): void {
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', command, path]);
}

function cowbell(...args: string[]): unknown {
  return JSON.parse(execFileSync(join(import.meta.dirname, '../../bin/cowbell'), args, { encoding: 'utf8' }));
}

/** Three snapshots with data between them, and data written since. */
function makeImage(name: string): string {
  const path = join(folder, name);
  qemuImg('create', '-q', '-f', 'qcow2', path, '2G');
  qemuIo(path, 'write -P 1 0 8M');
  qemuImg('snapshot', '-c', 'base', path);
  qemuIo(path, 'write -P 2 512M 24M');
  qemuImg('snapshot', '-c', 'big update', path);
  qemuIo(path, 'write -P 3 1G 2M');
  qemuImg('snapshot', '-c', 'small fix', path);
  qemuIo(path, 'write -P 4 1536M 4M');
  return path;
}

/** Marks one unused cluster as used (refcount 1, nothing pointing at it): a leak qemu-img check reports. */
function leakOneCluster(path: string): void {
  const fd = openSync(path, 'r+');
  try {
    const word = Buffer.alloc(8);
    readSync(fd, word, 0, 8, 48);
    const tableOffset = Number(word.readBigUInt64BE(0));
    readSync(fd, word, 0, 8, tableOffset);
    const blockOffset = Number(word.readBigUInt64BE(0));
    const clusterIndex = Math.ceil(statSync(path).size / 65536);
    const refcount = Buffer.alloc(2);
    refcount.writeUInt16BE(1, 0);
    writeSync(fd, refcount, 0, 2, blockOffset + 2 * clusterIndex);
    writeSync(fd, Buffer.alloc(65536), 0, 65536, clusterIndex * 65536);
  } finally {
    closeSync(fd);
  }
}

function qemuCheck(path: string): { status: number; output: string } {
  try {
    return { status: 0, output: execFileSync('qemu-img', ['check', path], { encoding: 'utf8' }) };
  } catch (error) {
    const failed = error as { status: number; stdout: string };
    return { status: failed.status, output: failed.stdout };
  }
}

async function openDisk(path: string): Promise<void> {
  await openThroughPathField(page, path);
  await eventually(() => page.getByTestId('disk-name').textContent()).toBe(path.slice(path.lastIndexOf('/') + 1));
  await showTab(page, 'snapshots');
  await eventually(() => page.getByTestId('tree-node').count()).toBeGreaterThan(0);
}

async function lastJob(): Promise<{ status: string | null; outcome: string | null }> {
  if ((await page.getByTestId('jobs-panel').count()) === 0) await page.getByTestId('jobs-toggle').click();
  const job = page.getByTestId('job').first();
  const outcome = (await job.getByTestId('job-outcome').count()) > 0 ? await job.getByTestId('job-outcome').textContent() : null;
  return { status: await job.getAttribute('data-status'), outcome: outcome?.trim() ?? null };
}

describe('where the space goes', () => {
  it('charts virtual, allocated and file size, metadata and leaks as the engine counts them', async () => {
    const path = makeImage('space.qcow2');
    leakOneCluster(path);
    const usage = cowbell('usage', '--json', path) as { virtualSize: number; fileSize: number; allocatedBytes: number; metadataBytes: number; leakedBytes: number };
    await openDisk(path);
    await showTab(page, 'space');
    await page.getByTestId('space-summary').waitFor();
    expect(Number(await page.getByTestId('space-metadata').getAttribute('data-bytes'))).toBe(usage.metadataBytes);
    expect(Number(await page.getByTestId('space-leaked').getAttribute('data-bytes'))).toBe(usage.leakedBytes);
    expect(usage.leakedBytes).toBe(65536);
    expect(Number(await page.getByTestId('space-data').getAttribute('data-bytes'))).toBe(usage.allocatedBytes - usage.metadataBytes - usage.leakedBytes);
    expect(Number(await page.getByTestId('space-free').getAttribute('data-bytes'))).toBe(Math.max(0, usage.fileSize - usage.allocatedBytes));
    // ECharts draws on canvases (no inline HTML it would style against the CSP).
    await eventually(() => page.locator('[data-testid="space-summary"] canvas').count()).toBeGreaterThan(0);
  });

  it('sorts snapshots by the bytes only they hold, and hovering a bar highlights the node in the tree', async () => {
    const path = makeImage('hover.qcow2');
    const usage = cowbell('usage', '--json', path) as { snapshots: { id: string; name: string; exclusiveBytes: number }[]; current: { exclusiveBytes: number } };
    await openDisk(path);
    await showTab(page, 'snapshots');
    const chart = page.getByTestId('snapshot-space-chart');
    await chart.waitFor();
    const rows = (await chart.getAttribute('data-rows'))?.split(',') ?? [];
    const expectedOrder = [
      { id: 'current', exclusiveBytes: usage.current.exclusiveBytes },
      ...usage.snapshots.map((snapshot) => ({ id: snapshot.id, exclusiveBytes: snapshot.exclusiveBytes })),
    ]
      .sort((a, b) => b.exclusiveBytes - a.exclusiveBytes)
      .map((row) => row.exclusiveBytes);
    const byId = new Map([['current', usage.current.exclusiveBytes], ...usage.snapshots.map((snapshot) => [snapshot.id, snapshot.exclusiveBytes] as const)]);
    expect(rows.map((id) => byId.get(id))).toEqual(expectedOrder);
    // Data written since the last snapshot is held by the current state alone: it leads.
    expect(rows[0]).toBe('current');

    // Sweep the pointer down the bars: each bar hovered highlights its node in the tree.
    const box = await chart.boundingBox();
    if (!box) throw new Error('no chart');
    const hovered = new Set<string>();
    for (let y = box.y + 30; y < box.y + box.height; y += 5) {
      // Across the labels and the plot in tenths: a short bar may end a tenth of the way in (the axis runs to the next power of two).
      for (const across of [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]) {
        await page.mouse.move(box.x + box.width * across, y);
        const ids = await page.locator('[data-testid="tree-node"].hovered').evaluateAll((elements) => elements.map((element) => element.getAttribute('data-node-id')));
        for (const id of ids) if (id !== null) hovered.add(id);
      }
    }
    expect([...hovered].sort()).toEqual([...rows].sort());
    // And back: hovering a node in the tree outlines its bar.
    const here = await page.locator('[data-testid="tree-node"][data-node-id="current"]').boundingBox();
    if (!here) throw new Error('no current state node');
    await page.mouse.move(here.x + 20, here.y + here.height / 2);
    await eventually(() => page.locator('[data-testid="tree-node"][data-node-id="current"].hovered').count()).toBe(1);
  });
});

describe('the allocation map', () => {
  it('maps the current state and a snapshot, hovers a range and zooms into it', async () => {
    const path = makeImage('map.qcow2');
    await openDisk(path);
    await showTab(page, 'map');
    const canvas = page.getByTestId('allocation-map');
    await eventually(async () => Number(await canvas.getAttribute('data-squares'))).toBeGreaterThan(100);
    const box = await canvas.boundingBox();
    if (!box) throw new Error('no map');
    // The first square: the first 8 MiB are data in every state.
    await page.mouse.move(box.x + 2, box.y + 2);
    await eventually(() => page.getByTestId('map-readout-range').textContent()).toMatch(/^0x0 – 0x[0-9a-f]+ \(/);
    expect(await page.getByTestId('map-readout-states').textContent()).toContain('Data');
    // Drag across the first row to zoom into it.
    await page.mouse.down();
    await page.mouse.move(box.x + box.width / 3, box.y + 2, { steps: 4 });
    await page.mouse.up();
    await eventually(() => page.getByTestId('map-range').textContent()).toMatch(/^0x0 – 0x[0-9a-f]+$/);
    await page.getByTestId('map-whole').click();
    await eventually(() => page.getByTestId('map-range').count()).toBe(0);
    // The same from the keyboard: the cursor starts on the first square, moves, zooms in around itself and out.
    const readout = page.getByTestId('map-readout-range');
    await canvas.focus();
    await eventually(() => canvas.getAttribute('data-cursor')).toBe('0');
    await eventually(() => readout.textContent()).toMatch(/^0x0 – 0x[0-9a-f]+ \(/);
    const firstEnd = /^0x0 – (0x[0-9a-f]+)/.exec((await readout.textContent()) ?? '')?.[1];
    await page.keyboard.press('ArrowRight');
    await eventually(() => canvas.getAttribute('data-cursor')).toBe('1');
    await eventually(() => readout.textContent()).toMatch(new RegExp(`^${firstEnd} – `));
    await page.keyboard.press('End');
    expect(Number(await canvas.getAttribute('data-cursor'))).toBe(Number(await canvas.getAttribute('data-squares')) - 1);
    await page.keyboard.press('Home');
    await eventually(() => canvas.getAttribute('data-cursor')).toBe('0');
    // Keys with a modifier are the browser's (page zoom, Back): the map leaves them alone.
    await page.keyboard.press('Shift+Alt+ArrowRight');
    await page.keyboard.press('Control+End');
    expect(await canvas.getAttribute('data-cursor')).toBe('0');
    await page.keyboard.press('Enter');
    // A quarter of the 2 GiB disk's squares, from its start (the cursor sits at the edge).
    await eventually(() => canvas.getAttribute('data-end')).not.toBe(String(2048 * MiB));
    expect(await canvas.getAttribute('data-start')).toBe('0');
    const zoomedEnd = Number(await canvas.getAttribute('data-end'));
    expect(zoomedEnd).toBeGreaterThanOrEqual(480 * MiB);
    expect(zoomedEnd).toBeLessThanOrEqual(512 * MiB);
    await page.keyboard.press('-');
    await eventually(() => page.getByTestId('map-range').count()).toBe(0);
    await page.getByTestId('map-source').selectOption({ label: 'base' });
    await eventually(async () => Number(await canvas.getAttribute('data-squares'))).toBeGreaterThan(100);
  });

  it('compares two snapshots, and a snapshot with the current state, drawn on the map with the bytes that differ', async () => {
    const path = makeImage('compare.qcow2');
    await openDisk(path);
    await showTab(page, 'map');
    await page.getByTestId('map-source').selectOption({ label: 'small fix' });
    await page.getByTestId('map-compare').selectOption({ label: 'base' });
    const summary = page.getByTestId('diff-summary');
    await summary.waitFor();
    const expected = cowbell('diff', '--json', path, 'base', 'small fix') as { bytes: number; ranges: unknown[] };
    expect(Number(await summary.getAttribute('data-bytes'))).toBe(expected.bytes);
    expect(expected.bytes).toBe(26 * MiB);
    expect(Number(await summary.getAttribute('data-ranges'))).toBe(expected.ranges.length);
    await eventually(async () => Number(await page.getByTestId('allocation-map').getAttribute('data-changed-squares'))).toBeGreaterThan(0);
    await screenshot(page, 'map-compare');

    await page.getByTestId('map-source').selectOption({ label: 'Current state (You are here)' });
    await page.getByTestId('map-compare').selectOption({ label: 'small fix' });
    const sinceSnapshot = cowbell('diff', '--json', path, 'small fix', 'current') as { bytes: number };
    await eventually(async () => Number(await summary.getAttribute('data-bytes'))).toBe(sinceSnapshot.bytes);
    expect(sinceSnapshot.bytes).toBe(4 * MiB);
  });
});

describe('disk operations and the jobs panel', () => {
  it('creates a disk from the dialog (size with units, cluster size, compat) and opens it', async () => {
    await page.getByTestId('new-disk-button').click();
    await page.getByTestId('create-folder').fill(folder);
    await page.getByTestId('create-name').fill('created.qcow2');
    await page.getByTestId('create-size').fill('3.5G');
    await page.getByTestId('create-cluster').selectOption({ label: '256 KiB' });
    await page.getByTestId('create-compat').selectOption('0.10');
    await screenshot(page, 'dialog-create-disk');
    await page.getByTestId('dialog-submit').click();
    const path = join(folder, 'created.qcow2');
    await eventually(() => page.getByTestId('disk-name').textContent()).toBe('created.qcow2');
    const info = JSON.parse(qemuImg('info', '--output=json', path)) as { 'virtual-size': number; 'cluster-size': number; 'format-specific': { data: { compat: string } } };
    expect(info['virtual-size']).toBe(3.5 * 1024 * MiB);
    expect(info['cluster-size']).toBe(256 * 1024);
    expect(info['format-specific'].data.compat).toBe('0.10');
    expect(qemuCheck(path).status).toBe(0);
    await eventually(lastJob).toEqual({ status: 'done', outcome: `Created a 3.5 GiB disk at ${path}.` });
  });

  it('checks a disk, then repairs its leak; the jobs panel says what happened and qemu-img agrees', async () => {
    const path = makeImage('leaky.qcow2');
    leakOneCluster(path);
    expect(qemuCheck(path).status).toBe(3);
    await openDisk(path);
    await page.getByTestId('check-button').click();
    await page.getByTestId('dialog-submit').click();
    await eventually(lastJob).toEqual({ status: 'done', outcome: 'Found 1 leaked cluster. Leaks waste space but harm no data; repair them to reclaim it.' });

    await page.getByTestId('check-button').click();
    await page.getByTestId('check-mode-leaks').check();
    await screenshot(page, 'dialog-check-repair');
    await page.getByTestId('dialog-submit').click();
    await eventually(lastJob).toEqual({ status: 'done', outcome: 'Repaired 0 corruptions and 1 leaked cluster. The image is now clean.' });
    expect(qemuCheck(path).status).toBe(0);
    expect(await page.getByTestId('jobs-panel').getByTestId('job').count()).toBeGreaterThanOrEqual(2);
    await screenshot(page, 'jobs-panel');
  });

  it('says in plain words why a job failed', async () => {
    const path = makeImage('fails.qcow2');
    await openDisk(path);
    await page.getByTestId('new-disk-button').click();
    await page.getByTestId('create-folder').fill(folder);
    await page.getByTestId('create-name').fill('fails.qcow2');
    // A name already taken is said before the job starts (UI audit: the job failed, all typed lost)…
    await eventually(() => page.getByTestId('dialog-problem').textContent()).toMatch(/already there/);
    expect(await page.getByTestId('dialog-submit').isDisabled()).toBe(true);
    // …so the job is made to fail where only the attempt tells: /proc takes no new file.
    await page.getByTestId('create-folder').fill('/proc');
    await eventually(() => page.getByTestId('dialog-submit').isEnabled()).toBe(true);
    await page.getByTestId('dialog-submit').click();
    await eventually(async () => (await lastJob()).status).toBe('failed');
    expect((await lastJob()).outcome).not.toBe('');
    expect(qemuImgInfo(path)['virtual-size']).toBe(2 * 1024 * MiB);
  });
});

describe('the library', () => {
  it('keeps several disks open, remembers recent ones across a reload and shows a deleted one as missing', async () => {
    const first = makeImage('first.qcow2');
    const second = makeImage('second.qcow2');
    await openDisk(first);
    await openDisk(second);
    expect(await page.locator(`[data-testid="disk-item"][data-path="${first}"]`).count()).toBe(1);
    expect(await page.locator(`[data-testid="disk-item"][data-path="${second}"]`).count()).toBe(1);
    await page.locator(`[data-testid="disk-item"][data-path="${first}"]`).hover();
    await page.locator(`[data-testid="disk-item"][data-path="${first}"] [data-testid="disk-close"]`).click();
    await eventually(() => page.locator(`[data-testid="recent-item"][data-path="${first}"]`).count()).toBe(1);

    await rm(first);
    expect(existsSync(first)).toBe(false);
    await page.reload();
    await page.getByTestId('connection-state').and(page.locator('[data-state="open"]')).waitFor();
    const missing = page.locator(`[data-testid="recent-item"][data-path="${first}"]`);
    await eventually(() => missing.getAttribute('data-missing')).toBe('true');
    expect(await missing.getByTestId('recent-missing').textContent()).toBe('Missing');
    expect(await page.locator(`[data-testid="recent-item"][data-path="${second}"]`).getAttribute('data-missing')).toBe('false');
    await page.locator(`[data-testid="recent-item"][data-path="${second}"] .recent-open`).click();
    await eventually(() => page.getByTestId('disk-name').textContent()).toBe('second.qcow2');
  });

  it('in browser mode, a dropped file asks for its path to be typed', async () => {
    await page.evaluate(() => {
      const scope = globalThis as unknown as {
        DataTransfer: new () => { items: { add(file: unknown): void } };
        File: new (parts: string[], name: string) => unknown;
        DragEvent: new (type: string, init: object) => unknown;
        document: { querySelector(selector: string): { dispatchEvent(event: unknown): void } | null };
      };
      const transfer = new scope.DataTransfer();
      transfer.items.add(new scope.File(['x'], 'dropped.qcow2'));
      const shell = scope.document.querySelector('.shell');
      shell?.dispatchEvent(new scope.DragEvent('dragover', { dataTransfer: transfer, bubbles: true, cancelable: true }));
      shell?.dispatchEvent(new scope.DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    });
    await eventually(() => page.getByTestId('app-message').textContent()).toContain('Type the path of dropped.qcow2');
  });
});
