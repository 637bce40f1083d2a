import { copyFile, open, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { formatBytes } from '../../src/shared/format-units.ts';
import {
  eventually,
  makeTempDir,
  openApp,
  openThroughPathField,
  qemuImg,
  qemuImgInfo,
  screenshot,
  showTab,
  type Session,
} from './harness.ts';

let folder: string;
let session: Session | null = null;

beforeAll(async () => {
  folder = await makeTempDir();
});

afterAll(async () => {
  await rm(folder, { recursive: true, force: true });
});

afterEach(async (context) => {
  if (session) {
    await screenshot(session.page, context.task.name.replace(/[^a-z0-9]+/gi, '-').toLowerCase());
    const problems = [...session.problems];
    await session.close();
    session = null;
    expect(problems, 'the page logged errors').toEqual([]);
  }
});

/** A v3 image with a non-default cluster size and two snapshots, made by qemu-img. */
function makeImageWithSnapshots(name: string): string {
  const path = join(folder, name);
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=128k', path, '3G');
  qemuImg('snapshot', '-c', 'fresh install', path);
  qemuImg('snapshot', '-c', 'before upgrade', path);
  return path;
}

describe('browser mode: opening an image', () => {
  it('shows what qemu-img says about an image opened through the path field', async () => {
    const path = makeImageWithSnapshots('fedora.qcow2');
    const expected = qemuImgInfo(path);
    session = await openApp();
    const { page } = session;
    await openThroughPathField(page, path);
    await showTab(page, 'properties');

    await eventually(() => page.getByTestId('info-virtual-size').textContent()).toBe('3 GiB');
    expect(await page.getByTestId('info-virtual-size').getAttribute('data-bytes')).toBe(String(expected['virtual-size']));
    expect(await page.getByTestId('info-cluster-size').textContent()).toBe('128 KiB');
    expect(await page.getByTestId('info-cluster-size').getAttribute('data-bytes')).toBe(String(expected['cluster-size']));
    expect(await page.getByTestId('info-file-size').textContent()).toBe(formatBytes(expected['actual-size']));
    expect(await page.getByTestId('info-version').textContent()).toBe('qcow2 v3');
    expect(await page.getByTestId('info-encryption').textContent()).toBe('None');
    expect(await page.getByTestId('snapshot-name').allTextContents()).toEqual(['fresh install', 'before upgrade']);
    expect(await page.getByTestId('disk-name').textContent()).toBe('fedora.qcow2');
    expect(await page.title()).toBe('fedora.qcow2 — Cowbell');
  });

  it('shows a v2 image with its backing file', async () => {
    const base = join(folder, 'base-v2.qcow2');
    const overlay = join(folder, 'overlay-v2.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', base, '1G');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', '-b', base, '-F', 'qcow2', overlay);
    session = await openApp();
    const { page } = session;
    await openThroughPathField(page, overlay);
    await showTab(page, 'properties');

    await eventually(() => page.getByTestId('info-version').textContent()).toBe('qcow2 v2');
    expect(await page.getByTestId('info-virtual-size').textContent()).toBe('1 GiB');
    expect(await page.getByTestId('info-backing-file').textContent()).toContain(base);
    expect(await page.getByTestId('info-backing-format').textContent()).toContain('qcow2');
    expect(await page.getByTestId('snapshot-empty').isVisible()).toBe(true);
    await showTab(page, 'properties');
    expect(await page.getByTestId('info-version-note').textContent()).toContain('can upgrade it to v3');
    await screenshot(page, 'properties-v2-light');
  });

  it('opens the image given on the command line at start', async () => {
    const path = makeImageWithSnapshots('from-argv.qcow2');
    session = await openApp([path]);
    const { page } = session;

    await eventually(() => page.getByTestId('disk-name').textContent()).toBe('from-argv.qcow2');
    await showTab(page, 'properties');
    await eventually(() => page.getByTestId('info-virtual-size').textContent()).toBe('3 GiB');
    expect(await page.getByTestId('snapshot-name').allTextContents()).toEqual(['fresh install', 'before upgrade']);
  });

  it('completes folders and images in the path field', async () => {
    makeImageWithSnapshots('complete-me.qcow2');
    session = await openApp();
    const { page } = session;
    const field = page.getByTestId('path-input');
    await field.fill(join(folder, 'complete-'));
    await eventually(() => page.getByTestId('path-suggestion').allTextContents()).toEqual(['complete-me.qcow2']);
    await screenshot(page, 'path-field-completing');
    await field.press('Tab');
    expect(await field.inputValue()).toBe(join(folder, 'complete-me.qcow2'));
    await field.press('Enter');
    await eventually(() => page.getByTestId('disk-name').textContent()).toBe('complete-me.qcow2');
    await showTab(page, 'properties');
    await eventually(() => page.getByTestId('info-cluster-size').textContent()).toBe('128 KiB');
  });
});

describe('browser mode: files that are not a usable image', () => {
  async function openAndReadError(path: string): Promise<{ code: string | null; title: string | null }> {
    session = await openApp();
    const { page } = session;
    await openThroughPathField(page, path);
    const error = page.getByTestId('open-error');
    await error.waitFor();
    return { code: await error.getAttribute('data-code'), title: await page.getByTestId('open-error-title').textContent() };
  }

  it('says a text file is not a qcow2 image', async () => {
    const path = join(folder, 'notes.txt');
    await writeFile(path, 'These are not the bytes you are looking for.\n'.repeat(100));
    expect(await openAndReadError(path)).toEqual({ code: 'BAD_MAGIC', title: 'This file is not a qcow2 disk image.' });
  });

  it('says there is no file at a missing path', async () => {
    expect(await openAndReadError(join(folder, 'no-such-disk.qcow2'))).toEqual({
      code: 'NOT_FOUND',
      title: 'There is no file or folder at this path.',
    });
  });

  it('says a qcow2 cut after 40 bytes ends too early', async () => {
    const whole = makeImageWithSnapshots('whole.qcow2');
    const truncated = join(folder, 'truncated.qcow2');
    await copyFile(whole, truncated);
    const handle = await open(truncated, 'r+');
    await handle.truncate(40);
    await handle.close();
    expect(await openAndReadError(truncated)).toEqual({
      code: 'TRUNCATED',
      title: 'This file ends too early to be a complete qcow2 image.',
    });
    expect(await session?.page.getByTestId('disk-item-subtitle').textContent()).toBe('File is cut short');
  });
});

describe('browser mode: the link to the server', () => {
  it('the printed address works once: the page it opened keeps working after a reload, a second opening is refused saying why, and a page without its key says how to get one', async () => {
    session = await openApp();
    const { page, context } = session;
    expect(page.url()).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/#session=[A-Za-z0-9_-]{32}$/);
    await page.reload();
    await page.getByTestId('connection-state').and(page.locator('[data-state="open"]')).waitFor();
    expect(await page.getByTestId('connection-lost').count()).toBe(0);

    // Another program that read the address off the browser's command line after it was opened.
    const second = await context.newPage();
    const refused = await second.goto(session.server.url);
    expect(refused?.status()).toBe(403);
    expect(await second.locator('body').textContent()).toMatch(/opened already/);
    // The page itself, without a key: it cannot connect, and says what to do.
    await second.goto(session.server.url.replace(/\?token=.*$/, ''));
    await second.getByTestId('connection-lost').waitFor();
    expect(await second.getByTestId('connection-lost').getAttribute('data-reason')).toBe('no-key');
    expect(await second.getByTestId('connection-lost').textContent()).toMatch(/opened without its key/);
    await second.close();
    // The first page is still connected, and works.
    expect(await page.getByTestId('connection-state').getAttribute('data-state')).toBe('open');
  });

  it('says the connection is lost when the server stops', async () => {
    session = await openApp();
    const { page } = session;
    await session.server.stop();
    await page.getByTestId('connection-lost').waitFor();
    expect(await page.getByTestId('connection-state').getAttribute('data-state')).toBe('lost');
    expect(await page.getByTestId('path-input').isDisabled()).toBe(true);
    // The socket closing is expected here, not a page error.
    session.problems.length = 0;
  });
});
