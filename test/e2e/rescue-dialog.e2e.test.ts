/**
 * Save What Can Be Read… in Chromium against browser mode: a disk qemu-img made, one of its L2
 * table pointers then broken, opens as damaged; the rescue goes through its dialog to the report,
 * and the new disk is judged by qemu-img (check clean, the readable data as it was, zeros where
 * the report says). The damaged disk is not written.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { layout, readU64, writeU64 } from '../helpers/qcow2-poke.ts';
import { eventually, openThroughPathField, qemuImg, screenshot, useSharedApp, type Session } from './harness.ts';

const MiB = 1024 * 1024;

let folder: string;
let session: Session;
let page: Page;

useSharedApp((app) => {
  ({ folder, session } = app);
  page = session.page;
});

function sha(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** 8 MiB in 4 KiB clusters (an L2 table per 2 MiB), data in every table's range, L1 entry 1 pointing one sector past its table. */
function damagedDisk(name: string): string {
  const path = join(folder, name);
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', path, '8M');
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 1M', '-c', 'write -P 0x22 2M 1M', '-c', 'write -P 0x33 4M 1M', '-c', 'write -P 0x44 6M 1M', path], { stdio: 'ignore' });
  const at = layout(path).l1Offset + 8;
  writeU64(path, at, readU64(path, at) + 0x200n);
  return path;
}

describe('Save What Can Be Read…', () => {
  it('from the damaged notice to the report, and a new disk qemu-img finds clean with the readable data', async () => {
    const path = damagedDisk('broken.qcow2');
    const before = sha(path);
    await openThroughPathField(page, path);
    await eventually(() => page.getByTestId('disk-name').textContent()).toBe('broken.qcow2');
    await eventually(() => page.getByTestId('notice-damaged').textContent()).toContain('This disk is damaged.');
    await page.getByTestId('rescue-button').click();

    const dialog = page.getByTestId('rescue-dialog');
    await eventually(() => dialog.getAttribute('data-phase')).toBe('setup');
    expect(await page.getByTestId('rescue-target').textContent()).toBe(join(folder, 'broken-rescued.qcow2'));
    await screenshot(page, 'rescue-dialog-light');
    await page.getByTestId('dialog-submit').click();
    await expect.poll(() => dialog.getAttribute('data-phase'), { timeout: 60_000, interval: 100 }).toBe('done');

    const rows = page.getByTestId('rescue-ranges').locator('tbody tr');
    expect(await rows.count()).toBe(1);
    expect(await rows.first().getAttribute('data-reason')).toBe('L2_UNALIGNED');
    expect(await rows.first().textContent()).toContain('0x200000');
    expect(await page.getByTestId('rescue-total').textContent()).toContain('Unreadable: 2 MiB (25.00% of the disk) in 1 range.');
    await screenshot(page, 'rescue-report-light');

    const target = join(folder, 'broken-rescued.qcow2');
    expect(JSON.parse(qemuImg('check', '--output=json', target)) as { corruptions?: number; leaks?: number }).toMatchObject({ 'check-errors': 0 });
    const raw = join(folder, 'rescued.raw');
    qemuImg('convert', '-O', 'raw', target, raw);
    const bytes = readFileSync(raw);
    expect(bytes.subarray(0, MiB).every((byte) => byte === 0x11)).toBe(true);
    expect(bytes.subarray(2 * MiB, 4 * MiB).every((byte) => byte === 0)).toBe(true);
    expect(bytes.subarray(4 * MiB, 5 * MiB).every((byte) => byte === 0x33)).toBe(true);
    expect(bytes.subarray(6 * MiB, 7 * MiB).every((byte) => byte === 0x44)).toBe(true);
    expect(sha(path)).toBe(before);

    await page.getByTestId('rescue-open').click();
    await eventually(() => page.getByTestId('disk-name').textContent()).toBe('broken-rescued.qcow2');
    expect(await page.getByTestId('notice-damaged').count()).toBe(0);
  }, 120_000);
});
