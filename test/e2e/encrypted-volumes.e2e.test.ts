/**
 * LUKS volumes inside a guest, in Chromium against browser mode: the GPT disk test/helpers/luks-disks.ts
 * builds with the real cryptsetup (LUKS2 with LVM inside, LUKS1 with ext4, LUKS2 with FAT), made a
 * qcow2 by qemu-img with a snapshot "before" and partition 3's files changed after it. Volume 3
 * shows locked; Unlock… with a wrong passphrase says so, with the right one its files are listed,
 * browsed, compared with the snapshot and restored, and the restored bytes are the ones the tools
 * wrote. The disk itself is never written.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { buildLuksQcow2, LUKS_VOLUMES } from '../helpers/luks-disks.ts';
import { eventually, openThroughPathField, screenshot, useSharedApp } from './harness.ts';

let folder: string;
let page: Page;

useSharedApp((app) => {
  folder = app.folder;
  page = app.session.page;
}, { screenshotPrefix: 'encrypted-volumes-end' });

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** What axe finds wrong on the page, as "rule: element" lines (as axe.e2e.test.ts runs it: injected, the CSP refuses inline scripts). */
async function axeViolations(): Promise<string[]> {
  await page.waitForTimeout(400);
  if (!(await page.evaluate(() => 'axe' in globalThis))) await page.evaluate(AXE_SOURCE);
  return page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(context: unknown, options: unknown): Promise<{ violations: { id: string; nodes: { target: string[] }[] }[] }> } }).axe;
    const result = await axe.run((globalThis as unknown as { document: unknown }).document, { resultTypes: ['violations'] });
    return result.violations.flatMap((violation) => violation.nodes.map((node) => `${violation.id}: ${node.target.join(' ')}`));
  });
}

function sha(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

const volume3 = LUKS_VOLUMES.find((each) => each.partition === 3)!;
const inside3 = `luks-${volume3.uuid}`;
const pane = () => page.getByTestId('files-pane');
const rowNames = () => pane().getByTestId('file-row').evaluateAll((rows) => rows.map((row) => row.getAttribute('data-name')));
const row = (name: string) => pane().locator(`[data-testid="file-row"][data-name="${name}"]`);
const unlockDialog = () => page.getByTestId('volume-unlock-dialog');

async function openFolder(name: string, expectedPath: string): Promise<void> {
  await row(name).locator('button.folder-name').click();
  await eventually(() => pane().getAttribute('data-folder')).toBe(expectedPath);
  await eventually(() => pane().getAttribute('data-status')).toBe('ready');
}

async function tryPassphrase(passphrase: string): Promise<void> {
  await unlockDialog().getByTestId('volume-passphrase').fill(passphrase);
  await unlockDialog().getByTestId('dialog-submit').click();
}

describe('encrypted volumes inside the guest', () => {
  it('unlocks a LUKS volume with its passphrase (a wrong one said so), browses, compares and restores inside it', async () => {
    const { b, disk } = await buildLuksQcow2(folder, 'laptop.qcow2');
    const before = sha(disk);

    await openThroughPathField(page, disk);
    await eventually(() => page.getByTestId('disk-name').textContent()).toBe('laptop.qcow2');
    await page.getByTestId('files-toggle').click();
    await eventually(() => pane().getAttribute('data-status')).toBe('ready');
    await eventually(rowNames).toEqual(['1', '2', '3', '4']);
    expect(await row('2').getByTestId('volume-info').textContent()).toContain('LUKS2-encrypted · locked · “cryptroot”');
    expect(await row('3').getByTestId('volume-info').textContent()).toContain('LUKS1-encrypted · locked');
    expect(await row('3').locator('button.folder-name').isDisabled()).toBe(true);

    // A wrong passphrase: the dialog stays, saying so, and the volume stays locked.
    await row('3').getByTestId('volume-unlock').click();
    await eventually(() => unlockDialog().getAttribute('data-phase')).toBe('setup');
    await tryPassphrase('not the passphrase');
    await expect.poll(() => unlockDialog().getByTestId('volume-unlock-problem').count(), { timeout: 60_000, interval: 100 }).toBe(1);
    expect(await unlockDialog().getByTestId('volume-unlock-problem').textContent()).toContain('The passphrase opens none of the encrypted volume\'s key slots. It was not kept.');
    expect(await unlockDialog().getAttribute('data-phase')).toBe('setup');
    // Behind it, the volume reads as locked, the passphrase forgotten; the other locked volumes as they were.
    for (const name of ['2', '3', '4']) expect(await row(name).getByTestId('volume-info').getAttribute('class')).not.toContain('problem');
    expect(await row('3').getByTestId('volume-info').textContent()).toMatch(/^\s*LUKS1-encrypted · locked · 12 MiB\s*$/);
    await screenshot(page, 'encrypted-volume-wrong-passphrase');
    expect(await axeViolations()).toEqual([]);

    // The right one: the dialog goes, the volume is unlocked and what it holds is listed after the others.
    await tryPassphrase(volume3.passphrases[0]!);
    await expect.poll(() => unlockDialog().count(), { timeout: 60_000, interval: 100 }).toBe(0);
    await eventually(rowNames).toEqual(['1', '2', '3', '4', inside3]);
    expect(await row('3').getByTestId('volume-info').textContent()).toContain('LUKS1-encrypted · unlocked');
    expect(await row('3').getByTestId('volume-unlock').count()).toBe(0);
    expect(await row(inside3).getByTestId('volume-info').textContent()).toMatch(/^\s*ext2\/3\/4 · .* · inside \/3\s*$/);
    await screenshot(page, 'encrypted-volume-unlocked');
    expect(await axeViolations()).toEqual([]);

    await openFolder(inside3, `/${inside3}`);
    expect(await rowNames()).toEqual(['data', 'empty', 'lost+found', 'notes.txt']);
    await openFolder('data', `/${inside3}/data`);
    expect(await rowNames()).toEqual(['deeper', 'added.txt', 'pattern.bin']);
    await screenshot(page, 'encrypted-volume-browsed');

    // Restore a file from inside the volume: its bytes are the ones mke2fs put there.
    const pattern = b.files[`/${inside3}/data/pattern.bin`];
    if (pattern === undefined || pattern === 'directory') throw new Error('the fixture has no pattern.bin');
    await row('pattern.bin').hover();
    await row('pattern.bin').getByTestId('file-restore').click();
    const restore = page.getByTestId('restore-dialog');
    await eventually(() => restore.getAttribute('data-phase')).toBe('setup');
    await page.getByTestId('restore-name').fill('pattern-restored.bin');
    await restore.getByTestId('dialog-submit').click();
    await expect.poll(() => restore.getAttribute('data-phase'), { timeout: 60_000, interval: 100 }).toBe('done');
    expect(sha(join(folder, 'pattern-restored.bin'))).toBe(pattern.sha256);
    await page.getByTestId('dialog-cancel').click();

    // Compare the snapshot with now: the three changes inside the unlocked volume; the locked ones are said to be skipped.
    await pane().getByTestId('files-compare-select').selectOption({ label: 'before' });
    const compare = page.getByTestId('compare-dialog');
    await expect.poll(() => compare.getAttribute('data-phase'), { timeout: 60_000, interval: 100 }).toBe('done');
    const changes = await compare.getByTestId('compare-row').evaluateAll((rows) => rows.map((each) => `${each.getAttribute('data-change')} ${each.getAttribute('data-path')}`));
    expect(changes).toEqual(expect.arrayContaining([`added /${inside3}/data/added.txt`, `removed /${inside3}/data/todo.txt`, `changed /${inside3}/notes.txt`]));
    // Nothing else changed but what is inside volume 3 (its folders' times, at most).
    expect(changes.filter((change) => !change.split(' ')[1]!.startsWith(`/${inside3}/`) && change.split(' ')[1] !== `/${inside3}`)).toEqual([]);
    expect(await compare.getByTestId('compare-skipped').textContent()).toMatch(/\/2/);
    await screenshot(page, 'encrypted-volume-compare');
    await page.getByTestId('dialog-cancel').click();

    expect(sha(disk)).toBe(before);
  }, 240_000);
});
