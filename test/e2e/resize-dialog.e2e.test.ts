/**
 * Resize… in Chromium against browser mode, on a disk qemu-img makes here: a grow, then a shrink
 * over data that the dialog lists state by state and that is only dropped once the user chooses
 * to; after each, qemu-img gives the new size, a clean check and the snapshot as it was.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemuCheckReport, qemuSnapshotNames, stateDigest } from '../helpers/rewrite-disks.ts';
import { eventually, makeTempDir, openApp, qemuImg, qemuImgInfo, screenshot, type Session } from './harness.ts';

const MiB = 1024 * 1024;

let folder: string;
let session: Session;
let page: Page;
let disk: string;

beforeAll(async () => {
  folder = await makeTempDir();
  disk = join(folder, 'grow-me.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', disk, '64M');
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x41 40M 1M', disk], { stdio: 'ignore' });
  qemuImg('snapshot', '-c', 'before', disk);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x42 50M 2M', disk], { stdio: 'ignore' });
  session = await openApp([disk], { viewport: { width: 1400, height: 900 } });
  page = session.page;
});

afterAll(async () => {
  await session?.close();
  await rm(folder, { recursive: true, force: true });
});

/** The snapshot's guest bytes at its own size: qemu-img applies it to a copy (`convert -l` would read it at the current disk's size). */
function snapshotDigest(name: string): string {
  const copy = join(folder, 'applied.qcow2');
  copyFileSync(disk, copy);
  try {
    qemuImg('snapshot', '-a', name, copy);
    return stateDigest(copy, null);
  } finally {
    rmSync(copy, { force: true });
  }
}

async function openResize(target: Page): Promise<void> {
  await target.getByTestId('resize-button').click();
  await eventually(() => target.getByTestId('dialog-title').textContent()).toBe('Resize grow-me.qcow2');
}

describe('Resize…', () => {
  it('grows the disk, then shrinks it only once the data past the new end is chosen to go; qemu-img agrees each time', async () => {
    await eventually(() => page.getByTestId('disk-item-subtitle').textContent()).toBe('64 MiB · 1 snapshot');
    const snapshotBefore = snapshotDigest('before');

    await openResize(page);
    await eventually(() => page.getByTestId('resize-current').textContent()).toBe('64 MiB');
    await page.getByTestId('resize-size').fill('+64M');
    await eventually(() => page.getByTestId('resize-guest-grow').isVisible()).toBe(true);
    await screenshot(page, 'resize-grow');
    await page.getByTestId('dialog-submit').click();
    await eventually(() => page.getByTestId('disk-item-subtitle').textContent()).toBe('128 MiB · 1 snapshot');
    expect(qemuImgInfo(disk)['virtual-size']).toBe(128 * MiB);
    expect(qemuCheckReport(disk)).toMatchObject({ code: 0, corruptions: 0, leaks: 0 });

    await openResize(page);
    await page.getByTestId('resize-size').fill('32M');
    await eventually(() => page.getByTestId('resize-past-end-current').textContent()).toContain('3 MiB');
    await eventually(() => page.getByTestId('resize-past-end-snapshot').textContent()).toContain('Snapshot “before” holds 1 MiB there: kept');
    expect(await page.getByTestId('dialog-submit').isDisabled()).toBe(true);
    await screenshot(page, 'resize-shrink-over-data');
    await page.getByTestId('resize-discard').check();
    await eventually(() => page.getByTestId('dialog-submit').textContent()).toContain('Shrink and Discard');
    await page.getByTestId('dialog-submit').click();
    await eventually(() => page.getByTestId('disk-item-subtitle').textContent()).toBe('32 MiB · 1 snapshot');

    expect(qemuImgInfo(disk)['virtual-size']).toBe(32 * MiB);
    expect(qemuCheckReport(disk)).toMatchObject({ code: 0, corruptions: 0, leaks: 0 });
    expect(qemuSnapshotNames(disk)).toEqual(['before']);
    expect(snapshotDigest('before')).toBe(snapshotBefore);
    expect(session.problems, 'the page logged errors').toEqual([]);
  });
});
