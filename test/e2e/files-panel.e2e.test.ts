/**
 * The Files panel in Chromium against browser mode, on a qcow2 holding an ext4 guest (mkfs.ext4 -d,
 * debugfs -w) with a snapshot "before" and files changed after it: browse the current state's and
 * the snapshot's folders, compare the two states as files, restore the snapshot's copy of a file
 * and check its bytes on disk. The disk itself is never written.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import type { Locator, Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { BEFORE_FILES, makeChangedExtDisk, writeChangedPieces } from '../helpers/changed-ext-disk.ts';
import { makeExtImage, type TreeNode } from '../helpers/guest-filesystems.ts';
import { violations } from './axe-check.ts';
import { eventually, openThroughPathField, qemuImg, screenshot, useSharedApp, type Session } from './harness.ts';

let folder: string;
let session: Session;
let page: Page;

useSharedApp((app) => {
  ({ folder, session } = app);
  page = session.page;
}, { screenshotPrefix: 'files-panel-end' });

function sha(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

const pane = () => page.getByTestId('files-pane');
const rowNames = () => pane().getByTestId('file-row').evaluateAll((rows) => rows.map((row) => row.getAttribute('data-name')));
const row = (name: string) => pane().locator(`[data-testid="file-row"][data-name="${name}"]`);

/** Whether the list's view shows a drawn file row at its top and at its bottom edge. */
function viewShowsRows(list: Locator): Promise<boolean> {
  return list.evaluate((element) => {
    const bounds = element.getBoundingClientRect();
    const page = element.ownerDocument;
    const rowAt = (y: number): boolean => page.elementFromPoint(bounds.left + bounds.width / 2, y)?.closest('[data-testid="file-row"]') != null;
    return rowAt(bounds.top + 2) && rowAt(Math.min(bounds.bottom, page.defaultView?.innerHeight ?? bounds.bottom) - 2);
  });
}

async function openFolder(name: string, expectedPath: string): Promise<void> {
  await row(name).locator('button.folder-name').click();
  await eventually(() => pane().getAttribute('data-folder')).toBe(expectedPath);
  await eventually(() => pane().getAttribute('data-status')).toBe('ready');
}

describe('the Files panel', () => {
  it('browses a state, compares it with a snapshot as files, and restores the snapshot’s copy of a file', async () => {
    const { path } = await makeChangedExtDisk(folder, 'guest.qcow2');
    const before = sha(path);
    await openThroughPathField(page, path);
    await eventually(() => page.getByTestId('disk-name').textContent()).toBe('guest.qcow2');
    await page.getByTestId('files-toggle').click();
    await eventually(() => pane().getAttribute('data-status')).toBe('ready');
    expect(await pane().getAttribute('data-state')).toBe('current');
    await eventually(rowNames).toEqual(['etc', 'home', 'lost+found']);
    expect(await pane().getByTestId('files-count').textContent()).toBe('3 items');

    await openFolder('etc', '/etc');
    expect(await rowNames()).toEqual(['hostname', 'hosts', 'motd']);
    await pane().locator('[data-testid="files-breadcrumb"] button').first().click();
    await eventually(() => pane().getAttribute('data-folder')).toBe('/');
    await openFolder('home', '/home');
    await openFolder('me', '/home/me');
    expect(await row('notes.txt').getAttribute('data-size')).toBe('36');
    await screenshot(page, 'files-panel-current');

    // The snapshot, selected in the tree, shows the same folder as it was.
    const snapshotId = await page.locator('[data-testid="tree-node"]', { has: page.getByText('before', { exact: true }) }).getAttribute('data-node-id');
    await page.locator(`[data-testid="tree-node"][data-node-id="${snapshotId}"]`).click();
    await eventually(() => pane().getAttribute('data-state')).toBe(snapshotId);
    await eventually(() => row('notes.txt').getAttribute('data-size')).toBe(String(BEFORE_FILES['home/me/notes.txt']!.length));
    expect(await pane().getAttribute('data-folder')).toBe('/home/me');
    await screenshot(page, 'files-panel-snapshot');

    // Compare files with the current state: forward in time, from the snapshot to now.
    await pane().getByTestId('files-compare-select').selectOption('current');
    const compare = page.getByTestId('compare-dialog');
    await expect.poll(() => compare.getAttribute('data-phase'), { timeout: 60_000, interval: 100 }).toBe('done');
    const changes = await compare.getByTestId('compare-row').evaluateAll((rows) => rows.map((each) => `${each.getAttribute('data-change')} ${each.getAttribute('data-path')}`));
    expect(changes).toEqual(['added /etc/motd', 'changed /home/me/keep.txt', 'changed /home/me/notes.txt', 'removed /old', 'removed /old/gone.txt']);
    expect(await compare.getByTestId('compare-row').nth(1).textContent()).toContain('content');
    await screenshot(page, 'files-compare');
    await page.getByTestId('dialog-cancel').click();
    await eventually(() => compare.count()).toBe(0);

    // Restore the snapshot's notes.txt next to the disk, under a new name.
    await row('notes.txt').hover();
    await row('notes.txt').getByTestId('file-restore').click();
    const restore = page.getByTestId('restore-dialog');
    await eventually(() => restore.getAttribute('data-phase')).toBe('setup');
    await page.getByTestId('restore-name').fill('notes-before.txt');
    expect(await page.getByTestId('restore-target').textContent()).toBe(join(folder, 'notes-before.txt'));
    await screenshot(page, 'files-restore-setup');
    await restore.getByTestId('dialog-submit').click();
    await expect.poll(() => restore.getAttribute('data-phase'), { timeout: 60_000, interval: 100 }).toBe('done');
    expect(await page.getByTestId('restore-result').getAttribute('data-target')).toBe(join(folder, 'notes-before.txt'));
    expect(readFileSync(join(folder, 'notes-before.txt'), 'utf8')).toBe(BEFORE_FILES['home/me/notes.txt']);
    await page.getByTestId('dialog-cancel').click();

    // A second restore to the same name is refused before it starts (said beside the fields), and the first copy stays as it was.
    await row('notes.txt').hover();
    await row('notes.txt').getByTestId('file-restore').click();
    await page.getByTestId('restore-name').fill('notes-before.txt');
    await eventually(() => restore.getByTestId('dialog-problem').textContent()).toContain('already there');
    expect(await restore.getByTestId('dialog-submit').isDisabled()).toBe(true);
    await page.getByTestId('dialog-cancel').click();
    expect(readFileSync(join(folder, 'notes-before.txt'), 'utf8')).toBe(BEFORE_FILES['home/me/notes.txt']);

    expect(sha(path)).toBe(before);
  }, 180_000);

  it('lists an LVM physical volume with what it is and its logical volumes beside it, and browses one', async () => {
    const raw = join(folder, 'lvm.raw');
    writeFileSync(raw, gunzipSync(readFileSync(join(import.meta.dirname, '..', 'engine', 'files', 'lvm', 'fixtures', 'lvm-disk.img.gz'))));
    const disk = join(folder, 'lvm.qcow2');
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', raw, disk);
    await openThroughPathField(page, disk);
    await eventually(() => page.getByTestId('disk-name').textContent()).toBe('lvm.qcow2');
    // The pane may still be open from the first disk: opened, not toggled shut.
    if ((await page.getByTestId('files-toggle').getAttribute('aria-pressed')) !== 'true') await page.getByTestId('files-toggle').click();
    await eventually(() => pane().getAttribute('data-status')).toBe('ready');
    await eventually(rowNames).toEqual(['1', '2', '3', 'fixture--vg-data', 'fixture--vg-root', 'fixture--vg-span']);
    expect(await row('2').getByTestId('volume-info').textContent()).toContain('LVM physical volume of group fixture-vg');
    expect(await row('2').locator('button.folder-name').isDisabled()).toBe(true);
    expect(await row('fixture--vg-root').getByTestId('volume-info').textContent()).toMatch(/ext2\/3\/4 · “rootfs” · 28 MiB · LVM fixture-vg\/root/);
    await screenshot(page, 'files-panel-lvm');
    await openFolder('fixture--vg-root', '/fixture--vg-root');
    expect(await rowNames()).toEqual(['etc', 'home', 'lost+found']);
    await openFolder('etc', '/fixture--vg-root/etc');
    expect(await rowNames()).toEqual(['hostname']);
  });

  it('browses an XFS guest (a disk with no partition table), the current state saved while mounted read with its log replayed, and compares two states', async () => {
    const disk = join(folder, 'xfs.qcow2');
    writeFileSync(disk, gunzipSync(readFileSync(join(import.meta.dirname, '..', 'engine', 'files', 'xfs', 'fixtures', 'xfs-v5.qcow2.gz'))));
    const before = sha(disk);
    await openThroughPathField(page, disk);
    await eventually(() => page.getByTestId('disk-name').textContent()).toBe('xfs.qcow2');
    if ((await page.getByTestId('files-toggle').getAttribute('aria-pressed')) !== 'true') await page.getByTestId('files-toggle').click();
    await eventually(() => pane().getAttribute('data-status')).toBe('ready');
    await eventually(async () => (await rowNames()).includes('folder-node')).toBe(true);
    // Saved while mounted: the file written last is there (its log replayed), with no caution.
    expect(await rowNames()).toContain('written-while-mounted.txt');
    expect(await pane().getByTestId('files-caution').count()).toBe(0);
    // A symlink's long target is cut, not its date (which was squeezed to a digit); a panel this narrow leaves the date out, to the name's tooltip.
    expect(await row('link-long').locator('.date').evaluate((date) => date.scrollWidth <= date.clientWidth)).toBe(true);
    expect(await row('link-long').locator('.name').getAttribute('title')).toMatch(/\nModified /);
    // A long name's end (where names in a folder differ) is in view, not cut off by an ellipsis (UI audit).
    expect(
      await row('written-while-mounted.txt').evaluate((element) => {
        const name = element.querySelector('.name')!.getBoundingClientRect();
        const tail = element.querySelector('[data-testid="name-tail"]')!.getBoundingClientRect();
        return tail.width > 0 && tail.right <= name.right + 0.5;
      }),
    ).toBe(true);
    await screenshot(page, 'files-panel-xfs');
    await openFolder('etc', '/etc');
    expect(await rowNames()).toEqual(['hostname', 'motd', 'passwd']);

    // The snapshot taken after a clean unmount; compared with "before" as files.
    const unmountedId = await page.locator('[data-testid="tree-node"]', { has: page.getByText('unmounted', { exact: true }) }).getAttribute('data-node-id');
    await page.locator(`[data-testid="tree-node"][data-node-id="${unmountedId}"]`).click();
    await eventually(() => pane().getAttribute('data-state')).toBe(unmountedId);
    await eventually(() => pane().getAttribute('data-status')).toBe('ready');
    expect(await pane().getByTestId('files-caution').count()).toBe(0);
    await pane().getByTestId('files-compare-select').selectOption({ label: 'before' });
    const compare = page.getByTestId('compare-dialog');
    await expect.poll(() => compare.getAttribute('data-phase'), { timeout: 60_000, interval: 100 }).toBe('done');
    const changes = await compare.getByTestId('compare-row').evaluateAll((rows) => rows.map((each) => `${each.getAttribute('data-change')} ${each.getAttribute('data-path')}`));
    expect(changes).toContain('changed /etc/passwd');
    expect(changes).toContain('removed /a/b/c/d/e/deep.txt');
    await page.getByTestId('dialog-cancel').click();
    expect(sha(disk)).toBe(before);
  }, 180_000);

  it('lists an entry whose inode is damaged by name, "Cannot be read" with why on hover, its siblings as usual', async () => {
    const disk = join(folder, 'xfs-damaged.qcow2');
    writeFileSync(disk, gunzipSync(readFileSync(join(import.meta.dirname, '..', 'engine', 'files', 'xfs', 'fixtures', 'xfs-v5.qcow2.gz'))));
    // /hello.txt's inode (in the first allocation group: its place is its number's block and slot) without its signature, in the current state.
    const raw = join(folder, 'xfs-damaged.raw');
    qemuImg('convert', '-O', 'raw', disk, raw);
    const bytes = readFileSync(raw);
    const inodeBytes = (bytes[104]! << 8) | bytes[105]!;
    const blockBytes = bytes.readUInt32BE(4);
    const inodesPerBlockBits = bytes[123]!;
    const hello = JSON.parse(gunzipSync(readFileSync(join(import.meta.dirname, '..', 'engine', 'files', 'xfs', 'fixtures', 'xfs-manifests.json.gz'))).toString('utf8')).v5.second['/hello.txt'].inode as number;
    const offset = Math.floor(hello / 2 ** inodesPerBlockBits) * blockBytes + (hello % 2 ** inodesPerBlockBits) * inodeBytes;
    bytes.fill(0, offset, offset + 2);
    writeFileSync(raw, bytes);
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', raw, disk);
    await openThroughPathField(page, disk);
    await eventually(() => page.getByTestId('disk-name').textContent()).toBe('xfs-damaged.qcow2');
    if ((await page.getByTestId('files-toggle').getAttribute('aria-pressed')) !== 'true') await page.getByTestId('files-toggle').click();
    await eventually(() => pane().getAttribute('data-status')).toBe('ready');
    await eventually(async () => (await rowNames()).includes('hello.txt')).toBe(true);
    expect(await row('hello.txt').getByTestId('entry-damaged').textContent()).toBe('Cannot be read');
    expect(await row('hello.txt').getByTestId('entry-damaged').getAttribute('title')).toMatch(/no inode signature/);
    expect(await row('etc').getByTestId('entry-damaged').count()).toBe(0);
    await screenshot(page, 'files-panel-damaged-entry');
  }, 180_000);

  it('browses a btrfs guest: its subvolumes as folders, a compressed file restored as it was written, the file saved (fsync) into its log tree listed and no caution', async () => {
    const disk = join(folder, 'btrfs.qcow2');
    writeFileSync(disk, gunzipSync(readFileSync(join(import.meta.dirname, '..', 'engine', 'files', 'btrfs', 'fixtures', 'btrfs.qcow2.gz'))));
    const before = sha(disk);
    await openThroughPathField(page, disk);
    await eventually(() => page.getByTestId('disk-name').textContent()).toBe('btrfs.qcow2');
    if ((await page.getByTestId('files-toggle').getAttribute('aria-pressed')) !== 'true') await page.getByTestId('files-toggle').click();
    await eventually(() => pane().getAttribute('data-status')).toBe('ready');
    await eventually(rowNames).toEqual(['home', 'root', 'root-snapshot']);
    expect(await pane().getByTestId('files-caution').count()).toBe(0);
    await openFolder('root', '/root');
    expect(await rowNames()).toContain('fsynced.txt');
    await openFolder('var', '/root/var');
    await openFolder('log', '/root/var/log');
    expect(await rowNames()).toEqual(['lzo.log', 'small-lzo.txt', 'zlib.log', 'zstd.log']);
    await screenshot(page, 'files-panel-btrfs');

    // zstd.log is kept in zstd-compressed extents: the copy holds the bytes the guest wrote.
    await row('zstd.log').hover();
    await row('zstd.log').getByTestId('file-restore').click();
    const restore = page.getByTestId('restore-dialog');
    await eventually(() => restore.getAttribute('data-phase')).toBe('setup');
    await page.getByTestId('restore-name').fill('zstd-restored.log');
    await restore.getByTestId('dialog-submit').click();
    await expect.poll(() => restore.getAttribute('data-phase'), { timeout: 60_000, interval: 100 }).toBe('done');
    const manifests = JSON.parse(gunzipSync(readFileSync(join(import.meta.dirname, '..', 'engine', 'files', 'btrfs', 'fixtures', 'btrfs-manifests.json.gz'))).toString('utf8')) as Record<string, Record<string, { sha256: string }>>;
    expect(sha(join(folder, 'zstd-restored.log')).slice(0, 16)).toBe(manifests['second']!['/root/var/log/zstd.log']!.sha256);
    await page.getByTestId('dialog-cancel').click();
    expect(sha(disk)).toBe(before);
  }, 180_000);

  it('a folder of 3,000 files draws only the rows in view, scrolls through all of them in order, restores one from its end, and compares them all with a snapshot', async () => {
    // A snapshot "before" whose folder holds one file; the current state holds 3,000 others there.
    const beforeRaw = join(folder, 'many-before.ext4');
    await makeExtImage(beforeRaw, 64, { 'many/kept-before.txt': 'before\n' });
    const disk = join(folder, 'many.qcow2');
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', beforeRaw, disk);
    qemuImg('snapshot', '-c', 'before', disk);
    const tree: Record<string, TreeNode> = {};
    for (let index = 0; index < 3000; index++) tree[`many/f${String(index).padStart(4, '0')}.txt`] = `${index}\n`;
    const raw = join(folder, 'many.ext4');
    await makeExtImage(raw, 64, tree);
    await writeChangedPieces(disk, readFileSync(beforeRaw), readFileSync(raw), folder);
    await openThroughPathField(page, disk);
    await eventually(() => page.getByTestId('disk-name').textContent()).toBe('many.qcow2');
    if ((await page.getByTestId('files-toggle').getAttribute('aria-pressed')) !== 'true') await page.getByTestId('files-toggle').click();
    await eventually(() => pane().getAttribute('data-status')).toBe('ready');
    await openFolder('many', '/many');
    const list = pane().getByTestId('file-list');
    expect(await list.getAttribute('data-windowed')).toBe('true');
    expect(await pane().getByTestId('files-count').textContent()).toMatch(/^3\D?000 items$/);
    const drawn = await rowNames();
    expect(drawn.length).toBeGreaterThan(10);
    expect(drawn.length).toBeLessThan(150);
    expect(drawn.slice(0, 3)).toEqual(['f0000.txt', 'f0001.txt', 'f0002.txt']);
    // A screen reader hears where a row stands in the whole folder.
    expect(await pane().getByTestId('file-row').first().getAttribute('aria-setsize')).toBe('3000');
    expect(await row('f0002.txt').getAttribute('aria-posinset')).toBe('3');
    await screenshot(page, 'files-panel-large-folder');
    expect(await violations(page)).toEqual([]);

    // Scrolled page by page to the end, every name shows once, in order, and never many rows at a time.
    const seen = new Set<string>();
    for (let page_ = 0; page_ < 400; page_++) {
      for (const name of await rowNames()) if (name !== null) seen.add(name);
      if (seen.has('f2999.txt')) break;
      await list.evaluate((element) => element.scrollBy(0, element.clientHeight));
      // The window follows the scroll a frame or more later (under load, several): read the rows
      // only once the top and bottom of the view show drawn rows, not the room left for others.
      await eventually(() => viewShowsRows(list)).toBe(true);
      expect((await rowNames()).length).toBeLessThan(150);
    }
    expect([...seen]).toEqual(Array.from({ length: 3000 }, (_, index) => `f${String(index).padStart(4, '0')}.txt`));
    await eventually(async () => (await row('f2999.txt').boundingBox()) !== null).toBe(true);

    await row('f2998.txt').hover();
    await row('f2998.txt').getByTestId('file-restore').click();
    const restore = page.getByTestId('restore-dialog');
    await eventually(() => restore.getAttribute('data-phase')).toBe('setup');
    await page.getByTestId('restore-name').fill('f2998-restored.txt');
    await restore.getByTestId('dialog-submit').click();
    await expect.poll(() => restore.getAttribute('data-phase'), { timeout: 60_000, interval: 100 }).toBe('done');
    expect(readFileSync(join(folder, 'f2998-restored.txt'), 'utf8')).toBe('2998\n');
    await page.getByTestId('dialog-cancel').click();

    // Every difference is listed, not the first thousand: drawn as a window too, all reached by scrolling.
    await pane().getByTestId('files-compare-select').selectOption({ label: 'before' });
    const compare = page.getByTestId('compare-dialog');
    await expect.poll(() => compare.getAttribute('data-phase'), { timeout: 60_000, interval: 100 }).toBe('done');
    expect(await compare.getByTestId('compare-summary').getAttribute('data-count')).toBe('3001');
    const differences = compare.getByTestId('compare-list');
    expect(await differences.getAttribute('data-windowed')).toBe('true');
    const differenceRows = () => compare.getByTestId('compare-row').evaluateAll((rows) => rows.map((each) => `${each.getAttribute('data-change')} ${each.getAttribute('data-path')}`));
    expect((await differenceRows()).length).toBeLessThan(150);
    await screenshot(page, 'files-compare-large');
    expect(await violations(page)).toEqual([]);
    await differences.evaluate((element) => element.scrollTo(0, element.scrollHeight));
    await eventually(async () => (await differenceRows()).slice(-2)).toEqual(['added /many/f2999.txt', 'removed /many/kept-before.txt']);
    await compare.getByRole('button', { name: /removed/ }).click();
    await eventually(differenceRows).toEqual(['removed /many/kept-before.txt']);
    expect(await differences.getAttribute('data-windowed')).toBe('false');
    await page.getByTestId('dialog-cancel').click();
  }, 180_000);
});
