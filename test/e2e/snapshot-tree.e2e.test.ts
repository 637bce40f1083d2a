/**
 * The drawn snapshot tree and what can be done to it, in Chromium against browser mode, on images
 * qemu-img makes here. Each flow checks the page and then the file (qemu-img snapshot -l, check,
 * guest data through qemu-img convert -l snapshot.name=…). One server and browser for the file.
 */
import { execFileSync, spawn } from 'node:child_process';
import { openSync, readFileSync, readSync, rmSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { formatBytes, formatBytesExact } from '../../src/shared/format-units.ts';
import { eventually, openThroughPathField, qemuImg, screenshot, useSharedApp, type Session } from './harness.ts';

/** The DOM global read inside page.evaluate (tsconfig.json, for Node code, has no DOM lib). */
interface PageGlobals {
  getComputedStyle(element: object): { strokeDasharray: string; stroke: string };
}

let folder: string;
let session: Session;
let page: Page;

useSharedApp((app) => {
  ({ folder, session } = app);
  page = session.page;
}, { screenshotPrefix: 'tree' });

function qemuIo(path: string, command: string): void {
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', command, path]);
}

/** `qemu-img snapshot -l` names, in table order. */
function snapshotNames(path: string): string[] {
  const info = JSON.parse(qemuImg('info', '--output=json', '-U', path)) as { snapshots?: { name: string }[] };
  return (info.snapshots ?? []).map((snapshot) => snapshot.name);
}

function cowbellTree(path: string): { snapshots: { id: string; name: string; parentId: string | null; parentInferred: boolean; exclusiveBytes: number }[]; current: { exclusiveBytes: number }; currentParentId: string | null; currentParentInferred: boolean } {
  return JSON.parse(execFileSync(join(import.meta.dirname, '../../bin/cowbell'), ['snapshot', 'list', '--json', path], { encoding: 'utf8' }));
}

/** The guest's bytes at [offset, offset+length) in a snapshot (or the current state when name is null). */
function guestBytes(path: string, name: string | null, offset: number, length: number): Buffer {
  const raw = join(folder, `guest-${process.hrtime.bigint()}.raw`);
  const args = ['convert', '-U', '-f', 'qcow2', '-O', 'raw', ...(name === null ? [] : ['-l', `snapshot.name=${name}`]), path, raw];
  qemuImg(...args);
  try {
    return readFileSync(raw).subarray(offset, offset + length);
  } finally {
    rmSync(raw, { force: true });
  }
}

function qemuCheckClean(path: string): boolean {
  try {
    execFileSync('qemu-img', ['check', path], { encoding: 'utf8' });
    return true;
  } catch {
    return false;
  }
}

const MiB = 1024 * 1024;

/** 1 → 2 → 3, revert to 2, then 4 from there, and 2 MiB written since: a branch and unsaved data. */
function makeBranchedImage(name: string): string {
  const path = join(folder, name);
  qemuImg('create', '-q', '-f', 'qcow2', path, '1G');
  qemuIo(path, 'write -P 1 0 4M');
  qemuImg('snapshot', '-c', 'fresh install', path);
  qemuIo(path, 'write -P 2 4M 4M');
  qemuImg('snapshot', '-c', 'drivers', path);
  qemuIo(path, 'write -P 3 8M 4M');
  qemuImg('snapshot', '-c', 'experiment', path);
  qemuImg('snapshot', '-a', 'drivers', path);
  qemuIo(path, 'write -P 4 16M 1M');
  qemuImg('snapshot', '-c', 'stable', path);
  qemuIo(path, 'write -P 5 20M 2M');
  return path;
}

async function openDisk(path: string): Promise<void> {
  await openThroughPathField(page, path);
  await eventually(() => page.getByTestId('disk-name').textContent()).toBe(path.slice(path.lastIndexOf('/') + 1));
  await page.getByTestId('tab-snapshots').click();
  await eventually(() => page.getByTestId('tree-node').count()).toBe(snapshotNames(path).length + 1);
  // The quick tree shows first; these tests look at the figures and parents the full tree fills in.
  await eventually(() => page.getByTestId('snapshot-tree').getAttribute('data-counting')).toBe('false');
}

function node(id: string) {
  return page.locator(`[data-testid="tree-node"][data-node-id="${id}"]`);
}

async function nodeIdNamed(name: string): Promise<string> {
  const id = await page.locator('[data-testid="tree-node"]', { has: page.getByText(name, { exact: true }) }).getAttribute('data-node-id');
  if (id === null) throw new Error(`no node named ${name}`);
  return id;
}

async function lastJob(): Promise<{ status: string | null; outcome: string | null }> {
  const job = page.getByTestId('job').first();
  const outcome = (await job.getByTestId('job-outcome').count()) > 0 ? await job.getByTestId('job-outcome').textContent() : null;
  return { status: await job.getAttribute('data-status'), outcome: outcome?.trim() ?? null };
}

async function openJobs(): Promise<void> {
  if ((await page.getByTestId('jobs-panel').count()) === 0) await page.getByTestId('jobs-toggle').click();
}

describe('the snapshot tree, drawn', () => {
  it('draws parent-to-child edges, the branch after a revert and “You are here” under its parent, as the engine reports them', async () => {
    const path = makeBranchedImage('branched.qcow2');
    const expected = cowbellTree(path);
    await openDisk(path);

    const edges = await page.getByTestId('tree-edge').evaluateAll((elements) =>
      elements.map((element) => `${element.getAttribute('data-from')}->${element.getAttribute('data-to')}`).sort(),
    );
    const expectedEdges = [
      ...expected.snapshots.filter((snapshot) => snapshot.parentId !== null).map((snapshot) => `${snapshot.parentId}->${snapshot.id}`),
      `${expected.currentParentId}->current`,
    ].sort();
    expect(edges).toEqual(expectedEdges);
    // The branch: two children of "drivers", drawn side by side.
    const drivers = await nodeIdNamed('drivers');
    expect(expected.snapshots.filter((snapshot) => snapshot.parentId === drivers).map((snapshot) => snapshot.name).sort()).toEqual(['experiment', 'stable']);
    const [experimentBox, stableBox] = [await node(await nodeIdNamed('experiment')).boundingBox(), await node(await nodeIdNamed('stable')).boundingBox()];
    expect(experimentBox?.y).toBeCloseTo(stableBox?.y ?? 0, 0);
    expect(experimentBox?.x).not.toBeCloseTo(stableBox?.x ?? 0, 0);

    // You are here: under "stable", saying how much is in no snapshot.
    expect(await node('current').getByTestId('tree-node-name').textContent()).toBe('You are here');
    expect(expected.snapshots.find((snapshot) => snapshot.id === expected.currentParentId)?.name).toBe('stable');
    expect(expected.current.exclusiveBytes).toBeGreaterThanOrEqual(2 * MiB);
    expect(await node('current').getByTestId('tree-node-meta').textContent()).toBe(`${formatBytes(expected.current.exclusiveBytes)} not in any snapshot`);

    // Snapshots qemu-img made carry no Cowbell record: their parents are inferred, drawn dashed, with the reason as tooltip.
    const inferred = page.locator('[data-testid="tree-edge"][data-inferred="true"]');
    expect(await inferred.count()).toBe(expected.snapshots.filter((snapshot) => snapshot.parentInferred).length + (expected.currentParentInferred ? 1 : 0));
    expect(await inferred.count()).toBeGreaterThan(0);
    expect(await inferred.first().locator('title').textContent()).toMatch(/^Parent inferred: .+/);
    const dash = await inferred.first().locator('.edge-line').evaluate((element) => (globalThis as unknown as PageGlobals).getComputedStyle(element).strokeDasharray);
    expect(dash).not.toBe('none');
    // The current state is in view, and selected, on opening.
    const box = await node('current').boundingBox();
    const frame = await page.getByTestId('snapshot-tree').boundingBox();
    expect(box && frame && box.y > frame.y && box.y + box.height < frame.y + frame.height).toBe(true);
    expect(await page.getByTestId('node-card').getAttribute('data-selected')).toBe('current');
  });

  it('pans, zooms and fits with the mouse and the controls', async () => {
    const tree = page.getByTestId('snapshot-tree');
    const zoom = page.getByTestId('tree-zoom-level');
    const before = await node('current').boundingBox();
    const frame = await tree.boundingBox();
    if (!before || !frame) throw new Error('no tree on screen');
    await page.mouse.move(frame.x + 40, frame.y + 40);
    await page.mouse.down();
    await page.mouse.move(frame.x + 140, frame.y + 90, { steps: 5 });
    await page.mouse.up();
    await eventually(async () => Math.round(((await node('current').boundingBox())?.x ?? 0) - before.x)).toBe(100);
    await page.keyboard.down('Control');
    await page.mouse.wheel(0, -200);
    await page.keyboard.up('Control');
    await eventually(async () => Number((await zoom.textContent())?.replace('%', ''))).toBeGreaterThan(100);
    await page.getByTestId('tree-fit').click();
    await eventually(async () => Number((await zoom.textContent())?.replace('%', ''))).toBeLessThanOrEqual(100);
    await page.getByTestId('tree-zoom-out').click();
    await page.getByTestId('tree-current').click();
    await eventually(() => zoom.textContent()).toBe('100%');
  });
});

describe('actions on a node, each a job', () => {
  it('Ctrl+Shift+S takes a snapshot with a name proposed from the date; the tree and the file gain it', async () => {
    const path = join(folder, 'take.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', path, '256M');
    qemuIo(path, 'write -P 7 0 1M');
    await openDisk(path);
    await page.getByTestId('snapshot-tree').focus();
    await page.keyboard.press('Control+Shift+S');
    const input = page.getByTestId('snapshot-name-input');
    await input.waitFor();
    expect(await input.inputValue()).toMatch(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$/);
    await input.fill('before the upgrade');
    await screenshot(page, 'dialog-take-snapshot');
    await page.getByTestId('dialog-submit').click();

    await eventually(() => page.getByTestId('tree-node').count()).toBe(2);
    await eventually(() => page.getByTestId('tree-node-name').allTextContents()).toContain('before the upgrade');
    expect(snapshotNames(path)).toEqual(['before the upgrade']);
    expect(guestBytes(path, 'before the upgrade', 0, 1 * MiB).every((byte) => byte === 7)).toBe(true);
    await openJobs();
    await eventually(lastJob).toEqual({ status: 'done', outcome: 'Took snapshot “before the upgrade”.' });
  });

  it('Enter shows a snapshot’s details: its own and shared bytes as the engine counts them, and its parent', async () => {
    const path = makeBranchedImage('details.qcow2');
    const expected = cowbellTree(path);
    await openDisk(path);
    const experiment = expected.snapshots.find((snapshot) => snapshot.name === 'experiment');
    await node(experiment?.id ?? '').click();
    await page.getByTestId('snapshot-tree').focus();
    await page.keyboard.press('Enter');
    await page.getByTestId('snapshot-details').waitFor();
    expect(await page.getByTestId('dialog-title').textContent()).toBe('experiment');
    expect(Number(await page.getByTestId('detail-exclusive').getAttribute('data-bytes'))).toBe(experiment?.exclusiveBytes);
    expect(await page.getByTestId('detail-parent').textContent()).toContain('“drivers”');
    await screenshot(page, 'dialog-details');
    await page.getByTestId('dialog-cancel').click();
    await eventually(() => page.getByTestId('dialog').count()).toBe(0);
  });

  it('revert says how many unsaved bytes it discards and can take a snapshot first; the disk then reads as the snapshot', async () => {
    const path = makeBranchedImage('revert.qcow2');
    // 2 MiB of guest data written since the last snapshot, and the L2 table that maps it.
    const unsaved = cowbellTree(path).current.exclusiveBytes;
    expect(unsaved).toBeGreaterThanOrEqual(2 * MiB);
    await openDisk(path);
    await node(await nodeIdNamed('experiment')).click();
    await page.getByTestId('action-revert').click();
    const discards = page.getByTestId('revert-discards');
    await discards.waitFor();
    expect(Number(await discards.getAttribute('data-bytes'))).toBe(unsaved);
    expect(await discards.textContent()).toContain(formatBytesExact(unsaved));
    expect(await page.getByTestId('revert-take-first').isChecked()).toBe(true);
    await page.getByTestId('revert-first-name').fill('unsaved work');
    await screenshot(page, 'dialog-revert');
    await page.getByTestId('dialog-submit').click();

    await eventually(() => snapshotNames(path)).toContain('unsaved work');
    await eventually(async () => cowbellTree(path).currentParentId).toBe(cowbellTree(path).snapshots.find((snapshot) => snapshot.name === 'experiment')?.id);
    await eventually(() => page.getByTestId('tree-node-name').allTextContents()).toContain('unsaved work');
    // The current state now holds experiment's data, and "unsaved work" kept what was discarded.
    expect(guestBytes(path, null, 8 * MiB, 4 * MiB).every((byte) => byte === 3)).toBe(true);
    expect(guestBytes(path, null, 20 * MiB, 2 * MiB).every((byte) => byte === 0)).toBe(true);
    expect(guestBytes(path, 'unsaved work', 20 * MiB, 2 * MiB).every((byte) => byte === 5)).toBe(true);
    expect(qemuCheckClean(path)).toBe(true);
    await openJobs();
    await eventually(lastJob).toEqual({ status: 'done', outcome: 'The disk is now as it was at “experiment”.' });
  });

  it('arrows and Delete delete a snapshot after saying how much it frees; qemu-img no longer lists it', async () => {
    const path = makeBranchedImage('delete.qcow2');
    const experiment = cowbellTree(path).snapshots.find((snapshot) => snapshot.name === 'experiment');
    await openDisk(path);
    const tree = page.getByTestId('snapshot-tree');
    await tree.focus();
    // From "You are here": up to "stable", left to its sibling "experiment".
    await page.keyboard.press('ArrowUp');
    await page.keyboard.press('ArrowLeft');
    await eventually(() => page.getByTestId('node-card').getAttribute('data-selected')).toBe(experiment?.id);
    // The focus ring is drawn around the selected node.
    const ring = await node(experiment?.id ?? '').locator('.node-back').evaluate((element) => (globalThis as unknown as PageGlobals).getComputedStyle(element).stroke);
    expect(ring).not.toBe('none');
    await page.keyboard.press('Delete');
    const frees = page.getByTestId('delete-frees');
    await frees.waitFor();
    expect(await frees.locator('strong').getAttribute('title')).toBe(`${(experiment?.exclusiveBytes ?? 0).toLocaleString('en-US')} bytes`);
    await screenshot(page, 'dialog-delete');
    await page.getByTestId('dialog-submit').click();
    await eventually(() => snapshotNames(path)).toEqual(['fresh install', 'drivers', 'stable']);
    await eventually(() => page.getByTestId('tree-node').count()).toBe(4);
    expect(qemuCheckClean(path)).toBe(true);
    // The other snapshots' data is untouched.
    expect(guestBytes(path, 'stable', 16 * MiB, 1 * MiB).every((byte) => byte === 4)).toBe(true);
  });

  it('F2 renames the selected snapshot', async () => {
    const path = makeBranchedImage('rename.qcow2');
    await openDisk(path);
    await node(await nodeIdNamed('drivers')).click();
    await page.keyboard.press('F2');
    const input = page.getByTestId('snapshot-name-input');
    await input.waitFor();
    expect(await input.inputValue()).toBe('drivers');
    await input.fill('stable');
    expect(await page.getByTestId('dialog-problem').textContent()).toBe('A snapshot with this name already exists.');
    await input.fill('drivers installed');
    await page.keyboard.press('Enter');
    await eventually(() => snapshotNames(path)).toEqual(['fresh install', 'drivers installed', 'experiment', 'stable']);
    await eventually(() => page.getByTestId('tree-node-name').allTextContents()).toContain('drivers installed');
  });
});

describe('snapshot notes', () => {
  /** Each snapshot's note as `cowbell snapshot list --json` reads it from the file. */
  function notesInFile(path: string): Record<string, string | undefined> {
    const listed = JSON.parse(execFileSync(join(import.meta.dirname, '../../bin/cowbell'), ['snapshot', 'list', '--json', path], { encoding: 'utf8' })) as { snapshots: { name: string; note?: string }[] };
    return Object.fromEntries(listed.snapshots.map((snapshot) => [snapshot.name, snapshot.note]));
  }

  it('a note written in the card is kept in the file, survives qemu-img snapshot -c, and Take Snapshot takes one too', async () => {
    const path = makeBranchedImage('notes.qcow2');
    await openDisk(path);
    await node(await nodeIdNamed('drivers')).click();
    expect(await page.getByTestId('card-note-text').count()).toBe(0);
    await page.getByTestId('action-note').click();
    const field = page.getByTestId('snapshot-note-input');
    await field.waitFor();
    await field.fill('GPU drivers 550 ✓\nworks with the old kernel');
    expect(await page.getByTestId('snapshot-note-room').textContent()).toContain('45 of 512 bytes');
    await screenshot(page, 'dialog-snapshot-note');
    await page.getByTestId('dialog-submit').click();
    await eventually(() => page.getByTestId('card-note-text').textContent()).toBe('GPU drivers 550 ✓\nworks with the old kernel');
    expect(notesInFile(path).drivers).toBe('GPU drivers 550 ✓\nworks with the old kernel');
    expect(qemuCheckClean(path)).toBe(true);

    // qemu-img takes a snapshot of its own: the page re-reads the disk, and the note is still there.
    qemuImg('snapshot', '-c', 'by qemu-img', path);
    await eventually(() => page.getByTestId('tree-node').count()).toBe(6);
    expect(notesInFile(path).drivers).toBe('GPU drivers 550 ✓\nworks with the old kernel');
    await node(await nodeIdNamed('drivers')).click();
    await eventually(() => page.getByTestId('card-note-text').textContent()).toBe('GPU drivers 550 ✓\nworks with the old kernel');

    // The shortcut, as the button, waits while the disk is busy (the re-read after qemu-img's change, slow on a loaded machine): it says why instead.
    await eventually(() => page.getByTestId('take-button').isEnabled()).toBe(true);
    await page.getByTestId('snapshot-tree').focus();
    await page.keyboard.press('Control+Shift+S');
    await page.getByTestId('snapshot-name-input').fill('noted at birth');
    await page.getByTestId('snapshot-note-input').fill('taken with a note');
    await page.getByTestId('dialog-submit').click();
    await eventually(() => notesInFile(path)['noted at birth']).toBe('taken with a note');
    // A new snapshot is selected once taken: its card shows the note.
    await eventually(() => page.getByTestId('card-note-text').textContent()).toBe('taken with a note');
    expect(qemuCheckClean(path)).toBe(true);
  });
});

describe('the disk changing under Cowbell', () => {
  it('re-reads a disk another program changed (qemu-img snapshot -c) within a few seconds', async () => {
    const path = makeBranchedImage('outside.qcow2');
    await openDisk(path);
    qemuImg('snapshot', '-c', 'made by qemu-img', path);
    await eventually(() => page.getByTestId('tree-node-name').allTextContents()).toContain('made by qemu-img');
    expect(await page.getByTestId('tree-node').count()).toBe(6);
  });

  it('opens a disk Cowbell must not write (marked corrupt) read-only, with a banner saying why and the write actions disabled with that reason', async () => {
    const path = makeBranchedImage('read-only.qcow2');
    markCorrupt(path);
    await openDisk(path);
    const banner = page.getByTestId('notice-read-only');
    await banner.waitFor();
    const text = (await banner.textContent()) ?? '';
    expect(text).toContain('Opened read-only');
    expect(text).toContain('marked corrupt');
    await node(await nodeIdNamed('drivers')).click();
    for (const action of ['action-revert', 'action-rename', 'action-delete']) expect(await page.getByTestId(action).isDisabled()).toBe(true);
    expect(await page.getByTestId('take-button').isDisabled()).toBe(true);
    const tooltip = await page.getByTestId('write-actions').getAttribute('title');
    expect(tooltip).toMatch(/^Read-only: .*marked corrupt/);
    expect(await page.locator('.take-wrap').getAttribute('title')).toBe(tooltip);
    // Compress and compact replace the file: refused with the same reason. Saving a snapshot only reads it.
    for (const action of ['compress-button', 'compact-button']) {
      const button = page.getByTestId(action);
      expect(await button.isDisabled()).toBe(true);
      expect(await button.locator('xpath=..').getAttribute('title')).toBe(tooltip);
    }
    expect(await page.getByTestId('action-export').isDisabled()).toBe(false);
    await screenshot(page, 'read-only-banner');
    // The keyboard cannot get round it either.
    await page.getByTestId('snapshot-tree').focus();
    await page.keyboard.press('Delete');
    await page.keyboard.press('Control+Shift+S');
    expect(await page.getByTestId('dialog').count()).toBe(0);
    expect(snapshotNames(path)).toEqual(['fresh install', 'drivers', 'experiment', 'stable']);
  });
});

describe('a disk in use by another program', () => {
  it('opens a disk qemu-nbd holds read-only, with a banner saying why and the write actions disabled with that reason', async () => {
    const path = makeBranchedImage('in-use.qcow2');
    const nbd = spawn('qemu-nbd', ['--persistent', '-k', join(folder, 'nbd.sock'), '-f', 'qcow2', path], { stdio: 'ignore' });
    try {
      // qemu-nbd holds its locks once qemu-img can no longer take a write lock.
      await eventually(() => {
        try {
          execFileSync('qemu-img', ['snapshot', '-c', 'probe', path], { stdio: 'ignore' });
          return 'unlocked';
        } catch {
          return 'locked';
        }
      }).toBe('locked');
      await openDisk(path);
      const banner = page.getByTestId('notice-read-only');
      await banner.waitFor();
      expect(await banner.textContent()).toContain('Opened read-only: changes are disabled. In use by another program');
      await node(await nodeIdNamed('drivers')).click();
      for (const action of ['action-revert', 'action-rename', 'action-delete']) expect(await page.getByTestId(action).isDisabled()).toBe(true);
      expect(await page.getByTestId('take-button').isDisabled()).toBe(true);
      expect(await page.getByTestId('write-actions').getAttribute('title')).toBe('Read-only: in use by another program');
      for (const action of ['compress-button', 'compact-button']) expect(await page.getByTestId(action).isDisabled()).toBe(true);
      // A copy of a snapshot would be read while qemu-nbd may be writing: refused too, saying why.
      expect(await page.getByTestId('action-export').isDisabled()).toBe(true);
      expect(await page.getByTestId('action-export').locator('xpath=..').getAttribute('title')).toContain('Another program (a running VM or qemu-nbd) is writing this disk');
      await screenshot(page, 'in-use-read-only');
      // A check may run, with a caution that what is in flight can read as damage; a repair may not.
      await page.getByTestId('check-button').click();
      expect(await page.getByTestId('check-in-use').textContent()).toContain('may report changes still in flight as errors');
      await page.getByTestId('check-mode-leaks').check();
      expect(await page.getByTestId('dialog-problem').textContent()).toContain('Repair changes the disk. Another program (a running VM or qemu-nbd) is writing this disk.');
      expect(await page.getByTestId('dialog-submit').isDisabled()).toBe(true);
      await page.getByTestId('check-mode-check').check();
      await screenshot(page, 'dialog-check-in-use');
      await page.getByTestId('dialog-cancel').click();
      expect(snapshotNames(path)).toEqual(['fresh install', 'drivers', 'experiment', 'stable']);

      // qemu-nbd gone (nothing on disk changes, so nothing prompts a re-read): Check Again opens the disk for changes.
      nbd.kill('SIGTERM');
      await eventually(() => {
        try {
          // qemu-io opens the disk for writing: it takes the write lock qemu-nbd held.
          execFileSync('qemu-io', ['-c', 'read 0 512', path], { stdio: 'ignore' });
          return 'free';
        } catch {
          return 'held';
        }
      }).toBe('free');
      await banner.getByTestId('notice-action').click();
      await eventually(() => page.getByTestId('notice-read-only').count()).toBe(0);
      expect(await page.getByTestId('take-button').isDisabled()).toBe(false);
    } finally {
      nbd.kill('SIGTERM');
    }
  });
});

/** Sets the qcow2 v3 "corrupt" incompatible-feature bit (header offset 72, bit 1), as QEMU does on finding damage. */
function markCorrupt(path: string): void {
  const fd = openSync(path, 'r+');
  try {
    const features = Buffer.alloc(8);
    readSync(fd, features, 0, 8, 72);
    features.writeBigUInt64BE(features.readBigUInt64BE(0) | 2n, 0);
    writeSync(fd, features, 0, 8, 72);
  } finally {
    closeSync(fd);
  }
}
