/**
 * Compress…, Compact… and Save as New Disk… in Chromium against browser mode, on disks qemu-img
 * makes here: each flow goes through its dialog (figures, progress, result) and is then judged by
 * qemu-img itself — check clean, the same snapshots, every state's data as before, the file smaller.
 * Screenshots of each dialog, light and dark, go to test-results/screenshots.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { formatBytes } from '../../src/shared/format-units.ts';
import {
  allStateDigests,
  fileDigest,
  letterBytes,
  makeSnapshottedDisk,
  MiB,
  qemuCheckReport,
  qemuSnapshotNames,
  compressHelpersShare,
  sampleThreadCpu,
  stateDigest,
  temporaryFilesIn,
} from '../helpers/rewrite-disks.ts';
import { holdWithQemuIo } from '../helpers/image-locks.ts';
import { qemuImgTimingPbkdf2Sync } from '../helpers/qemu.ts';
import { eventually, openApp, openThroughPathField, qemuImg, qemuImgInfo, screenshot, showTab, useSharedApp, type Session } from './harness.ts';

let folder: string;
let session: Session;
let page: Page;

useSharedApp((app) => {
  ({ folder, session } = app);
  page = session.page;
});

const DONE_TIMEOUT_MS = 90_000;

async function openDisk(target: Page, path: string): Promise<void> {
  await openThroughPathField(target, path);
  await eventually(() => target.getByTestId('disk-name').textContent()).toBe(path.slice(path.lastIndexOf('/') + 1));
  await target.getByTestId('tab-snapshots').click();
  await eventually(() => target.getByTestId('tree-node').count()).toBe(qemuSnapshotNames(path).length + 1);
}

/** The dialog's phase (setup, running, done, ended), from its data attribute. */
function phase(target: Page): Promise<string | null> {
  return target.getByTestId('dialog').getAttribute('data-phase');
}

async function waitForEnd(target: Page): Promise<string | null> {
  await expect.poll(() => phase(target), { timeout: DONE_TIMEOUT_MS, interval: 100 }).toMatch(/^(done|ended)$/);
  return phase(target);
}

async function waitForFigures(target: Page): Promise<void> {
  await eventually(() => target.getByTestId('rewrite-figures').getAttribute('data-loaded')).toBe('true');
}

/** A disk whose file holds the clusters of a deleted snapshot: what compact gives back. */
function makeGappedDisk(name: string): string {
  const path = join(folder, name);
  qemuImg('create', '-q', '-f', 'qcow2', path, '64M');
  const letters = join(folder, `${name}.letters`);
  writeFileSync(letters, letterBytes(12 * MiB));
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -s ${letters} 0 ${12 * MiB}`, path], { stdio: 'ignore' });
  qemuImg('snapshot', '-c', 'old', path);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -P 0x44 0 ${12 * MiB}`, path], { stdio: 'ignore' });
  qemuImg('snapshot', '-c', 'kept one', path);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -P 0x55 ${16 * MiB} ${4 * MiB}`, path], { stdio: 'ignore' });
  qemuImg('snapshot', '-c', 'kept two', path);
  qemuImg('snapshot', '-d', 'old', path);
  rmSync(letters, { force: true });
  return path;
}

async function selectSnapshot(target: Page, name: string): Promise<void> {
  await target.locator('[data-testid="tree-node"]', { has: target.getByText(name, { exact: true }) }).click();
  await eventually(() => target.getByTestId('card-name').textContent()).toBe(name);
}

describe('Compress…', () => {
  it('shows the file now, an estimated size after and the free space; compresses a disk with 2 snapshots on every core; qemu-img finds it clean, compressed and smaller, with the same snapshots and data', async () => {
    const { path, snapshots } = makeSnapshottedDisk(folder, 'compress-me.qcow2', 24);
    const digests = allStateDigests(path);
    const sizeBefore = statSync(path).size;
    await openDisk(page, path);

    await page.getByTestId('compress-button').click();
    await waitForFigures(page);
    expect((await page.getByTestId('rewrite-size-now').textContent())?.trim()).toBe(formatBytes(sizeBefore));
    const estimate = Number(await page.getByTestId('rewrite-size-after').getAttribute('data-bytes'));
    expect(estimate).toBeGreaterThan(0);
    expect(estimate).toBeLessThan(sizeBefore);
    expect(await page.getByTestId('rewrite-size-after').textContent()).toMatch(/about .*smaller/);
    expect(await page.getByTestId('rewrite-free').textContent()).toMatch(/on this drive/);
    expect(await page.getByTestId('rewrite-estimate-note').textContent()).toMatch(/estimate/i);
    expect(await page.getByTestId('rewrite-snapshots-kept').textContent()).toContain('Every snapshot is kept (2)');
    expect(await page.getByTestId('rewrite-compression-type').inputValue()).toBe('zlib');
    await screenshot(page, 'compress-dialog-light');

    const cpu = sampleThreadCpu(session.server.process.pid ?? 0);
    await page.getByTestId('dialog-submit').click();
    await eventually(() => phase(page)).toMatch(/^(running|done)$/);
    expect(await waitForEnd(page)).toBe('done');
    const threads = cpu.stop();
    await screenshot(page, 'compress-result-light');

    const sizeAfter = statSync(path).size;
    expect(sizeAfter).toBeLessThan(sizeBefore * 0.8);
    const result = page.getByTestId('rewrite-result');
    expect(Number(await result.getAttribute('data-before'))).toBe(sizeBefore);
    expect(Number(await result.getAttribute('data-after'))).toBe(sizeAfter);
    expect(await page.getByTestId('rewrite-result-change').textContent()).toMatch(/\d+% smaller/);
    expect(await page.getByTestId('rewrite-result-detail').textContent()).toMatch(/2 snapshots kept; every state was compared/);

    const check = qemuCheckReport(path);
    expect(check).toMatchObject({ code: 0, corruptions: 0, leaks: 0 });
    expect(check.compressedClusters).toBeGreaterThan(0);
    expect(qemuSnapshotNames(path)).toEqual(snapshots);
    expect(allStateDigests(path)).toEqual(digests);
    expect(temporaryFilesIn(folder)).toEqual([]);
    // Browser mode compresses on min(4, cores) threads: a second thread carried a real share of the work.
    if (availableParallelism() >= 2) {
      const helpers = compressHelpersShare(threads);
      expect(helpers.share, `server thread CPU seconds: ${helpers.summary}`).toBeGreaterThan(0.1);
    }

    // The disk's views follow the new file: Properties and Space read it again.
    await page.getByTestId('dialog-cancel').click();
    await showTab(page, 'properties');
    await eventually(() => page.getByTestId('info-file-size').getAttribute('data-bytes')).toBe(String(qemuImgInfo(path)['actual-size']));
    await showTab(page, 'space');
    const spaceTotal = async (): Promise<number> => {
      let total = 0;
      for (const key of ['data', 'metadata', 'leaked', 'free']) total += Number(await page.getByTestId(`space-${key}`).getAttribute('data-bytes'));
      return total;
    };
    await eventually(spaceTotal).toBeLessThan(sizeAfter + 65536 + 1);
    await showTab(page, 'snapshots');
  });

  it('cancelled while it copies a large disk, leaves the file byte for byte as it was and no temporary file', async () => {
    const { path } = makeSnapshottedDisk(folder, 'cancel-me.qcow2', 128);
    const hashBefore = fileDigest(path);
    await openDisk(page, path);
    await page.getByTestId('compress-button').click();
    await waitForFigures(page);
    await page.getByTestId('dialog-submit').click();
    const progress = page.getByTestId('job-progress-view');
    await expect.poll(() => progress.getAttribute('data-stage'), { timeout: 30_000, interval: 20 }).toBe('copying');
    await eventually(async () => (await page.getByTestId('dialog-progress-detail').textContent()) ?? '').toMatch(/ of .*\/s/);
    await screenshot(page, 'compress-progress-light');
    await page.getByTestId('dialog-cancel').click();
    expect(await waitForEnd(page)).toBe('ended');
    expect(await page.getByTestId('dialog-job-end').getAttribute('data-code')).toBe('CANCELLED');
    expect(await page.getByTestId('dialog-job-end-title').textContent()).toContain('The disk is as it was');
    await screenshot(page, 'compress-cancelled-light');
    expect(fileDigest(path)).toBe(hashBefore);
    expect(temporaryFilesIn(folder)).toEqual([]);
    await page.getByTestId('dialog-cancel').click();
  });

  it('says plainly that an encrypted disk cannot be compressed, before anything starts', async () => {
    const path = join(folder, 'secret.qcow2');
    qemuImgTimingPbkdf2Sync(['create', '-q', '-f', 'qcow2', '--object', 'secret,id=sec0,data=pw', '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', path, '32M']);
    const hashBefore = fileDigest(path);
    await openThroughPathField(page, path);
    await eventually(() => page.getByTestId('disk-name').textContent()).toBe('secret.qcow2');
    await eventually(() => page.getByTestId('compress-button').isDisabled()).toBe(true);
    expect(await page.getByTestId('compress-button').locator('xpath=..').getAttribute('title')).toBe(
      'An encrypted disk cannot be compressed: QEMU stores compressed clusters unencrypted. Compact it instead, or decrypt it first.',
    );
    await screenshot(page, 'compress-encrypted-light');
    expect(fileDigest(path)).toBe(hashBefore);
  });
});

describe('Compact…', () => {
  it('gives back the space a deleted snapshot left; qemu-img finds it clean and smaller, with the same snapshots and data; “also uncompress” changes the estimate', async () => {
    const path = makeGappedDisk('compact-me.qcow2');
    const digests = allStateDigests(path);
    const snapshots = qemuSnapshotNames(path);
    const sizeBefore = statSync(path).size;
    await openDisk(page, path);

    await page.getByTestId('compact-button').click();
    await waitForFigures(page);
    const estimate = Number(await page.getByTestId('rewrite-size-after').getAttribute('data-bytes'));
    expect(estimate).toBeLessThan(sizeBefore);
    expect(await page.getByTestId('rewrite-snapshots-kept').textContent()).toContain('Every snapshot is kept (2)');
    await screenshot(page, 'compact-dialog-light');
    await page.getByTestId('rewrite-uncompress').check();
    await waitForFigures(page);
    await page.getByTestId('rewrite-uncompress').uncheck();
    await waitForFigures(page);

    await page.getByTestId('dialog-submit').click();
    expect(await waitForEnd(page)).toBe('done');
    await screenshot(page, 'compact-result-light');
    const sizeAfter = statSync(path).size;
    expect(sizeAfter).toBeLessThan(sizeBefore * 0.75);
    expect(Number(await page.getByTestId('rewrite-result').getAttribute('data-after'))).toBe(sizeAfter);
    expect(qemuCheckReport(path)).toMatchObject({ code: 0, corruptions: 0, leaks: 0 });
    expect(qemuSnapshotNames(path)).toEqual(snapshots);
    expect(allStateDigests(path)).toEqual(digests);
    await page.getByTestId('dialog-cancel').click();
    await showTab(page, 'properties');
    await eventually(() => page.getByTestId('info-file-size').getAttribute('data-bytes')).toBe(String(qemuImgInfo(path)['actual-size']));
    await showTab(page, 'snapshots');
  });

  it('on a compat 0.10 disk, choosing zstd upgrades it to compat 1.1: qemu-img finds it version 3, zstd-compressed and clean, with the same snapshots and data', async () => {
    const { path } = makeSnapshottedDisk(folder, 'old-v2.qcow2', 4, { compat: '0.10' });
    const digests = allStateDigests(path);
    const snapshots = qemuSnapshotNames(path);
    await openDisk(page, path);
    await page.getByTestId('compress-button').click();
    await waitForFigures(page);
    expect(await page.getByTestId('rewrite-upgrade').isChecked()).toBe(false);
    await page.getByTestId('rewrite-compression-type').selectOption('zstd');
    await waitForFigures(page);
    expect(await page.getByTestId('rewrite-upgrade').isChecked()).toBe(true);
    await screenshot(page, 'compress-upgrade-light');
    await page.getByTestId('dialog-submit').click();
    expect(await waitForEnd(page)).toBe('done');
    expect(await page.getByTestId('rewrite-result-detail').textContent()).toMatch(/^Upgraded to compat 1\.1 \(qcow2 v3\)/);
    const info = JSON.parse(qemuImg('info', '--output=json', path)) as { 'format-specific': { data: { compat: string; 'compression-type': string } } };
    expect(info['format-specific'].data).toMatchObject({ compat: '1.1', 'compression-type': 'zstd' });
    expect(qemuCheckReport(path)).toMatchObject({ code: 0, corruptions: 0, leaks: 0 });
    expect(qemuCheckReport(path).compressedClusters).toBeGreaterThan(0);
    expect(qemuSnapshotNames(path)).toEqual(snapshots);
    expect(allStateDigests(path)).toEqual(digests);
    await page.getByTestId('dialog-cancel').click();
    // The disk view reads the disk again: its Properties say version 3 now.
    await showTab(page, 'properties');
    await eventually(() => page.getByTestId('info-version').textContent()).toBe('qcow2 v3');
    await eventually(() => page.getByTestId('info-compression').textContent()).toBe('zstd');
    await showTab(page, 'snapshots');
  });

  it('whose estimate fails while another program holds the disk offers to read it again, and goes on once the disk is free', async () => {
    const path = makeGappedDisk('compact-held.qcow2');
    await openDisk(page, path);
    await page.getByTestId('compact-button').click();
    await waitForFigures(page);
    // qemu-io takes the disk as a VM would; the next estimate (asked for by the choice) is refused.
    const holder = await holdWithQemuIo(path);
    try {
      await page.getByTestId('rewrite-uncompress').check();
      await eventually(() => page.getByTestId('rewrite-preview-retry').count()).toBe(1);
      expect(await page.getByTestId('dialog-problem').textContent()).toMatch(/in use|another program/i);
      expect(await page.getByTestId('dialog-submit').isDisabled()).toBe(true);
      await screenshot(page, 'compact-estimate-failed-light');
    } finally {
      await holder.release();
    }
    await page.getByTestId('rewrite-preview-retry').click();
    await waitForFigures(page);
    expect(await page.getByTestId('dialog-problem').count()).toBe(0);
    expect(await page.getByTestId('rewrite-preview-retry').count()).toBe(0);
    expect(await page.getByTestId('dialog-submit').isDisabled()).toBe(false);
    await page.getByTestId('dialog-cancel').click();
  });

  it('on a disk with persistent dirty bitmaps, names them and starts only once the user agrees to leave them behind; qemu-img then finds no bitmaps, a clean disk and the same states', async () => {
    const path = makeGappedDisk('compact-bitmaps.qcow2');
    qemuImg('bitmap', '--add', path, 'nightly');
    qemuImg('bitmap', '--add', path, 'weekly');
    const digests = allStateDigests(path);
    const hashBefore = fileDigest(path);
    await openDisk(page, path);
    // Read-only (a change in place would leave the bitmaps stale), but not a dead end.
    expect(await page.getByTestId('notice-read-only').textContent()).toMatch(/dirty bitmaps.*can still be compacted/);
    expect(await page.getByTestId('take-button').isDisabled()).toBe(true);

    await page.getByTestId('compact-button').click();
    await waitForFigures(page);
    expect(await page.getByTestId('rewrite-bitmaps').textContent()).toMatch(/2 persistent dirty bitmaps: nightly, weekly/);
    expect(await page.getByTestId('dialog-problem').textContent()).toMatch(/cannot keep the disk’s dirty bitmaps/);
    expect(await page.getByTestId('dialog-submit').isDisabled()).toBe(true);
    await screenshot(page, 'compact-bitmaps-light');
    expect(fileDigest(path)).toBe(hashBefore);

    await page.getByTestId('rewrite-drop-bitmaps').check();
    await eventually(() => page.getByTestId('dialog-submit').isDisabled()).toBe(false);
    expect(await page.getByTestId('dialog-problem').count()).toBe(0);
    await page.getByTestId('dialog-submit').click();
    expect(await waitForEnd(page)).toBe('done');
    const info = JSON.parse(qemuImg('info', '--output=json', path)) as { 'format-specific': { data: Record<string, unknown> } };
    expect(info['format-specific'].data.bitmaps).toBeUndefined();
    expect(qemuCheckReport(path)).toMatchObject({ code: 0, corruptions: 0, leaks: 0 });
    expect(allStateDigests(path)).toEqual(digests);
    await page.getByTestId('dialog-cancel').click();
  });
});

describe('Save as New Disk…', () => {
  it.each(['qcow2', 'raw'] as const)('writes a snapshot’s state as a new %s disk that qemu-img reads as that snapshot; the disk is only read', async (format) => {
    const { path } = makeSnapshottedDisk(folder, `save-from-${format}.qcow2`, 4);
    const hashBefore = fileDigest(path);
    await openDisk(page, path);
    await selectSnapshot(page, 'installed');
    await page.getByTestId('action-export').click();
    expect(await page.getByTestId('export-folder').inputValue()).toBe(`${folder}/`);
    expect(await page.getByTestId('export-name').inputValue()).toBe(`save-from-${format}-installed.qcow2`);
    await page.getByTestId('export-format').selectOption(format);
    const name = `saved-installed-${format}.${format === 'qcow2' ? 'qcow2' : 'img'}`;
    await page.getByTestId('export-name').fill(name);
    if (format === 'qcow2') await screenshot(page, 'save-as-dialog-light');
    await page.getByTestId('dialog-submit').click();
    expect(await waitForEnd(page)).toBe('done');
    const target = join(folder, name);
    expect(await page.getByTestId('export-result').getAttribute('data-target')).toBe(target);

    expect(stateDigest(target, null, format)).toBe(stateDigest(path, 'installed'));
    expect(stateDigest(target, null, format)).not.toBe(stateDigest(path, 'updated'));
    expect(fileDigest(path)).toBe(hashBefore);
    if (format === 'qcow2') {
      expect(qemuCheckReport(target)).toMatchObject({ code: 0, corruptions: 0, leaks: 0 });
      await screenshot(page, 'save-as-result-light');
      await page.getByTestId('export-open').click();
      await eventually(() => page.getByTestId('disk-name').textContent()).toBe(name);
    } else {
      await page.getByTestId('dialog-cancel').click();
    }
  });

  it('refuses a name that is taken with the reason, as it is typed, and writes nothing', async () => {
    const { path } = makeSnapshottedDisk(folder, 'save-over.qcow2', 2);
    writeFileSync(join(folder, 'taken.img'), 'someone else’s file');
    await openDisk(page, path);
    await selectSnapshot(page, 'updated');
    await page.getByTestId('action-export').click();
    await page.getByTestId('export-name').fill('taken.img');
    // Said before anything runs (an encrypted disk's passphrase would be asked for next).
    await eventually(() => page.getByTestId('dialog-problem').textContent()).toContain('already there');
    expect(await page.getByTestId('dialog-submit').isDisabled()).toBe(true);
    expect(qemuSnapshotNames(path)).toEqual(['installed', 'updated']);
    expect(readFileSync(join(folder, 'taken.img'), 'utf8')).toBe('someone else’s file');
    await page.getByTestId('dialog-cancel').click();
  });
});

describe('the dialogs in the dark theme', () => {
  it('draws the compress, compact and save-as dialogs and a result in dark colours', async () => {
    const dark = await openApp([], { viewport: { width: 1400, height: 900 }, colorScheme: 'dark' });
    try {
      const { path } = makeSnapshottedDisk(folder, 'dark.qcow2', 8);
      await openDisk(dark.page, path);
      await dark.page.getByTestId('compress-button').click();
      await waitForFigures(dark.page);
      await screenshot(dark.page, 'compress-dialog-dark');
      await dark.page.getByTestId('dialog-submit').click();
      expect(await waitForEnd(dark.page)).toBe('done');
      await screenshot(dark.page, 'compress-result-dark');
      await dark.page.getByTestId('dialog-cancel').click();
      await dark.page.getByTestId('compact-button').click();
      await waitForFigures(dark.page);
      await screenshot(dark.page, 'compact-dialog-dark');
      await dark.page.getByTestId('dialog-cancel').click();
      await selectSnapshot(dark.page, 'installed');
      await dark.page.getByTestId('action-export').click();
      await screenshot(dark.page, 'save-as-dialog-dark');
      await dark.page.getByTestId('dialog-cancel').click();
      expect(dark.problems).toEqual([]);
    } finally {
      await dark.close();
    }
  });
});
