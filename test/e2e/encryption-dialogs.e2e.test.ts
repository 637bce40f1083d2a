/**
 * Encrypt…, Change Passphrase…, Decrypt… and the Unlock dialog in Chromium against browser mode, on
 * disks qemu-img makes here, each flow judged by qemu-img and qemu-io with the passphrase as a
 * secret: every state reads as before, check is clean, the new passphrase opens the disk and the
 * old one does not, a wrong passphrase leaves the file byte for byte as it was. An encrypted disk's
 * tree, Space and Map views work without its passphrase. Screenshots of each dialog, light and dark,
 * go to test-results/screenshots.
 */
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import {
  encryptedStateDigests,
  fileContains,
  guestBytes,
  makeEncryptedSnapshottedDisk,
  makeLegacyAesDisk,
  qemuCheckEncrypted,
  qemuEncryptFormat,
  qemuOpensWith,
} from '../helpers/encrypted-disks.ts';
import { allStateDigests, fileDigest, makeSnapshottedDisk, MiB, qemuCheckReport, qemuSnapshotNames, temporaryFilesIn } from '../helpers/rewrite-disks.ts';
import { eventually, openApp, openThroughPathField, qemuImg, screenshot, showTab, useSharedApp, type Session } from './harness.ts';

const FIRST = 'violet anchor mortgage drizzle kettle';
const SECOND = 'seven quiet herons over the weir';
const WRONG = 'not the passphrase';
const DONE_TIMEOUT_MS = 90_000;

let folder: string;
let session: Session;
let page: Page;

useSharedApp((app) => {
  ({ folder, session } = app);
  page = session.page;
});

async function openDisk(target: Page, path: string): Promise<void> {
  await openThroughPathField(target, path);
  await eventually(() => target.getByTestId('disk-name').textContent()).toBe(path.slice(path.lastIndexOf('/') + 1));
  await target.getByTestId('tab-snapshots').click();
  await eventually(() => target.getByTestId('tree-node').count()).toBe(qemuSnapshotNames(path).length + 1);
}

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

async function typeNewPassphrase(target: Page, passphrase: string): Promise<void> {
  await target.getByTestId('new-passphrase').fill(passphrase);
  await target.getByTestId('new-passphrase-repeat').fill(passphrase);
  await eventually(() => target.getByTestId('strength').getAttribute('data-score')).toMatch(/^[0-4]$/);
}

/** The disk's tools fit beside its tabs and inside the disk view (an encrypted disk has two more). */
async function toolbarFits(target: Page): Promise<boolean> {
  const [view, take, tabs, check] = await Promise.all(['disk-view', 'take-button', 'tab-properties', 'check-button'].map((id) => target.getByTestId(id).boundingBox()));
  if (!view || !take || !tabs || !check) return false;
  return take.x + take.width <= view.x + view.width + 0.5 && tabs.x + tabs.width < check.x;
}

async function unlock(target: Page, passphrase: string): Promise<void> {
  const dialog = target.getByTestId('unlock-dialog');
  await dialog.waitFor();
  await dialog.getByTestId('unlock-passphrase').fill(passphrase);
  await dialog.getByTestId('dialog-submit').click();
}

describe('Encrypt…', () => {
  it('encrypts a disk with 2 snapshots through its dialog: qemu-img reads every state with the passphrase, check is clean, no plaintext is left; the disk is marked encrypted and its views still work', async () => {
    const { path, snapshots } = makeSnapshottedDisk(folder, 'encrypt-me.qcow2', 4);
    const digests = allStateDigests(path);
    const sample = guestBytes(path, 2 * MiB, 4096);
    await openDisk(page, path);
    expect(await page.getByTestId('disk-encrypted-tag').count()).toBe(0);

    await page.getByTestId('encrypt-button').click();
    await waitForFigures(page);
    expect(await page.getByTestId('rewrite-snapshots-kept').textContent()).toContain('Every snapshot is kept (2)');
    // No state holds compressed data: nothing is said of storing it uncompressed.
    expect(await page.getByTestId('rewrite-encrypted-note').count()).toBe(0);
    expect(await page.getByTestId('dialog-submit').isDisabled()).toBe(true);
    await page.getByTestId('new-passphrase').fill(FIRST);
    await page.getByTestId('new-passphrase-repeat').fill(`${FIRST}x`);
    await eventually(() => page.getByTestId('dialog-problem').textContent()).toBe('The two passphrases differ.');
    await typeNewPassphrase(page, FIRST);
    expect(Number(await page.getByTestId('strength').getAttribute('data-score'))).toBeGreaterThanOrEqual(3);
    await page.getByTestId('encrypt-advanced').locator('summary').click();
    expect(await page.getByTestId('encrypt-cipher').inputValue()).toBe('aes-256-xts-plain64');
    // A shorter unlock keeps qemu-img's many opens below quick; the cipher stays QEMU's default.
    await page.getByTestId('encrypt-unlock-time').selectOption('1000');
    await screenshot(page, 'encrypt-dialog-light');

    await page.getByTestId('dialog-submit').click();
    expect(await waitForEnd(page)).toBe('done');
    expect(await page.getByTestId('rewrite-result').getAttribute('data-encryption')).toBe('luks');
    expect(await page.getByTestId('rewrite-result-detail').textContent()).toMatch(/Encrypted with LUKS \(aes-256-xts-plain64\); 2 snapshots kept; every state was compared/);
    await screenshot(page, 'encrypt-result-light');

    expect(qemuEncryptFormat(path)).toBe('luks');
    expect(qemuSnapshotNames(path)).toEqual(snapshots);
    expect(encryptedStateDigests(path, FIRST)).toEqual(digests);
    expect(qemuCheckEncrypted(path, FIRST).code).toBe(0);
    expect(qemuOpensWith(path, WRONG)).toBe(false);
    expect(fileContains(path, sample)).toBe(false);
    expect(temporaryFilesIn(folder)).toEqual([]);

    await page.getByTestId('dialog-cancel').click();
    await eventually(() => page.getByTestId('disk-encrypted-tag').textContent()).toContain('Encrypted');
    expect(await page.locator(`[data-testid="disk-item"][data-path="${path}"] [data-testid="disk-item-encrypted"]`).count()).toBe(1);
    expect(await page.getByTestId('passphrase-button').isEnabled()).toBe(true);
    expect(await page.getByTestId('compress-button').isDisabled()).toBe(true);
    for (const width of [1400, 1200, 1024]) {
      await page.setViewportSize({ width, height: 900 });
      await eventually(() => toolbarFits(page)).toBe(true);
      if (width === 1200) await screenshot(page, 'encrypted-disk-toolbar-1200-light');
    }
    await page.setViewportSize({ width: 1400, height: 900 });
    // The tree, the Space and the Map views read metadata only: no passphrase needed.
    await eventually(() => page.getByTestId('tree-node').count()).toBe(3);
    await showTab(page, 'space');
    await page.getByTestId('space-summary').waitFor();
    expect(Number(await page.getByTestId('space-data').getAttribute('data-bytes'))).toBeGreaterThan(4 * MiB);
    // The LUKS area (header and key material) is the disk's metadata, not space leaked.
    expect(Number(await page.getByTestId('space-leaked').getAttribute('data-bytes'))).toBe(0);
    await showTab(page, 'map');
    await eventually(async () => Number(await page.getByTestId('allocation-map').getAttribute('data-squares'))).toBeGreaterThan(10);
    await page.getByTestId('map-source').selectOption({ label: 'updated' });
    await page.getByTestId('map-compare').selectOption({ label: 'installed' });
    await eventually(async () => Number(await page.getByTestId('diff-summary').getAttribute('data-bytes'))).toBeGreaterThan(0);
    await showTab(page, 'snapshots');
    // Files asks for the passphrase, the lock beside its words (it stood on a line of its own above them).
    if ((await page.getByTestId('files-toggle').getAttribute('aria-pressed')) !== 'true') await page.getByTestId('files-toggle').click();
    const locked = page.getByTestId('files-locked-message');
    await locked.waitFor();
    expect(
      await locked.evaluate((message) => {
        const icon = message.querySelector('svg')!.getBoundingClientRect();
        // A text node (nodeType 3) holding the words.
        const words = [...message.childNodes].find((node) => node.nodeType === 3 && (node.textContent ?? '').trim() !== '')!;
        const range = message.ownerDocument.createRange();
        range.selectNodeContents(words);
        const firstLine = range.getClientRects()[0]!;
        return icon.top < firstLine.bottom && firstLine.top < icon.bottom;
      }),
    ).toBe(true);
    await page.getByTestId('files-toggle').click();
  });
});

describe('Encrypt… of a disk with compressed data', () => {
  it('says how much compressed data is stored uncompressed, and in which states', async () => {
    const { path: source } = makeSnapshottedDisk(folder, 'to-compress.qcow2', 4);
    const path = `${folder}/compressed-then-snapshot.qcow2`;
    qemuImg('convert', '-c', '-O', 'qcow2', source, path);
    qemuImg('snapshot', '-c', 'compressed', path);
    await openDisk(page, path);
    await page.getByTestId('encrypt-button').click();
    await waitForFigures(page);
    expect(await page.getByTestId('rewrite-encrypted-note').getAttribute('data-state')).toBe('some');
    expect(await page.getByTestId('rewrite-encrypted-note').textContent()).toMatch(
      /^\s*[\d.]+ (KiB|MiB) of compressed data \(in the current disk and 1 snapshot\) will be stored uncompressed and encrypted\. QEMU cannot keep compressed data encrypted\. Uncompressed, it takes up to [\d.]+ MiB: [\d.]+ (KiB|MiB) more than now\.\s*$/,
    );
    await screenshot(page, 'encrypt-dialog-compressed-light');
    await page.getByTestId('dialog-cancel').click();
  });
});

describe('Encrypt… of a disk in the old qcow2 AES encryption', () => {
  it('moves it to LUKS through its dialog: the estimate loads, the old passphrase is asked in Unlock, qemu reads every state with the new one', async () => {
    const { path, snapshots } = makeLegacyAesDisk(folder, 'old-aes.qcow2', FIRST);
    const digests = encryptedStateDigests(path, FIRST);
    await openDisk(page, path);
    await page.getByTestId('encrypt-button').click();
    await waitForFigures(page);
    expect(await page.getByTestId('dialog-problem').count()).toBe(0);
    await typeNewPassphrase(page, SECOND);
    await page.getByTestId('encrypt-advanced').locator('summary').click();
    await page.getByTestId('encrypt-unlock-time').selectOption('1000');
    await page.getByTestId('dialog-submit').click();
    await unlock(page, FIRST);
    expect(await waitForEnd(page)).toBe('done');
    expect(qemuEncryptFormat(path)).toBe('luks');
    expect(qemuSnapshotNames(path)).toEqual(snapshots);
    expect(encryptedStateDigests(path, SECOND)).toEqual(digests);
    expect(qemuCheckEncrypted(path, SECOND).code).toBe(0);
    await page.getByTestId('dialog-cancel').click();
  });
});

describe('Change Passphrase…', () => {
  it('changes the passphrase in place: qemu-io opens the disk with the new one and not the old; a wrong current one is said and changes nothing', async () => {
    const { path } = await makeEncryptedSnapshottedDisk(folder, 'rekey-me.qcow2', FIRST);
    const digests = encryptedStateDigests(path, FIRST);
    await openDisk(page, path);
    await page.getByTestId('passphrase-button').click();
    await page.getByTestId('current-passphrase').fill(WRONG);
    await typeNewPassphrase(page, SECOND);
    await screenshot(page, 'passphrase-dialog-light');
    const hashBefore = fileDigest(path);
    await page.getByTestId('dialog-submit').click();
    await page.getByTestId('passphrase-wrong').waitFor({ timeout: DONE_TIMEOUT_MS });
    expect(await phase(page)).toBe('setup');
    expect(fileDigest(path)).toBe(hashBefore);
    await screenshot(page, 'passphrase-wrong-light');

    await page.getByTestId('current-passphrase').fill(FIRST);
    await page.getByTestId('dialog-submit').click();
    expect(await waitForEnd(page)).toBe('done');
    expect(await page.getByTestId('passphrase-result').textContent()).toContain('The new passphrase replaces the old one');
    await screenshot(page, 'passphrase-result-light');
    expect(qemuOpensWith(path, SECOND)).toBe(true);
    expect(qemuOpensWith(path, FIRST)).toBe(false);
    expect(encryptedStateDigests(path, SECOND)).toEqual(digests);
    expect(qemuCheckEncrypted(path, SECOND).code).toBe(0);
    await page.getByTestId('dialog-cancel').click();
  });
});

describe('Decrypt…', () => {
  it('a wrong passphrase in the Unlock dialog is said and leaves the file byte for byte as it was; the right one decrypts every state', async () => {
    const { path, snapshots } = await makeEncryptedSnapshottedDisk(folder, 'decrypt-me.qcow2', FIRST);
    const digests = encryptedStateDigests(path, FIRST);
    const hashBefore = fileDigest(path);
    await openDisk(page, path);
    await page.getByTestId('decrypt-button').click();
    await waitForFigures(page);
    expect(await page.getByTestId('decrypt-warning').textContent()).toContain('Anyone who can read the file');
    await screenshot(page, 'decrypt-dialog-light');
    await page.getByTestId('dialog-submit').click();
    await page.getByTestId('unlock-dialog').waitFor();
    await screenshot(page, 'unlock-dialog-light');
    await unlock(page, WRONG);
    await eventually(() => page.getByTestId('unlock-dialog').getAttribute('data-reason')).toBe('BAD_PASSPHRASE');
    expect(await page.getByTestId('unlock-wrong').textContent()).toContain('does not unlock this disk');
    await screenshot(page, 'unlock-wrong-light');
    expect(fileDigest(path)).toBe(hashBefore);
    expect(temporaryFilesIn(folder)).toEqual([]);
    // The dialog answered the wrong passphrase itself: the jobs panel stays shut.
    expect(await page.getByTestId('jobs-panel').count()).toBe(0);

    await unlock(page, FIRST);
    expect(await waitForEnd(page)).toBe('done');
    expect(await page.getByTestId('rewrite-result').getAttribute('data-encryption')).toBe('none');
    expect(qemuEncryptFormat(path)).toBeNull();
    expect(qemuSnapshotNames(path)).toEqual(snapshots);
    expect(allStateDigests(path)).toEqual(digests);
    expect(qemuCheckReport(path)).toMatchObject({ code: 0, corruptions: 0, leaks: 0 });
    await page.getByTestId('dialog-cancel').click();
    await eventually(() => page.getByTestId('disk-encrypted-tag').count()).toBe(0);
  });
});

describe('Compact… of an encrypted disk', () => {
  it('asks for the passphrase in the Unlock dialog, shows unlocking, and compacts keeping the encryption and every state', async () => {
    const { path, snapshots } = await makeEncryptedSnapshottedDisk(folder, 'compact-secret.qcow2', FIRST, 4);
    const digests = encryptedStateDigests(path, FIRST);
    await openDisk(page, path);
    await page.getByTestId('compact-button').click();
    await waitForFigures(page);
    // qemu-io wrote it uncompressed: no compressed data to speak of.
    expect(await page.getByTestId('rewrite-encrypted-note').count()).toBe(0);
    await page.getByTestId('dialog-submit').click();
    await unlock(page, FIRST);
    const progress = page.getByTestId('job-progress-view');
    await expect.poll(() => progress.getAttribute('data-stage'), { timeout: DONE_TIMEOUT_MS, interval: 10 }).not.toBe('');
    expect(await waitForEnd(page)).toBe('done');
    expect(await page.getByTestId('rewrite-result').getAttribute('data-encryption')).toBe('luks');
    expect(qemuEncryptFormat(path)).toBe('luks');
    expect(qemuSnapshotNames(path)).toEqual(snapshots);
    expect(encryptedStateDigests(path, FIRST)).toEqual(digests);
    expect(qemuCheckEncrypted(path, FIRST).code).toBe(0);
    await page.getByTestId('dialog-cancel').click();
  });
});

describe('the encryption dialogs in the dark theme', () => {
  it('draws Encrypt…, Unlock, Decrypt… and Change Passphrase… in dark colours', async () => {
    const dark = await openApp([], { viewport: { width: 1400, height: 900 }, colorScheme: 'dark' });
    try {
      const { path: plain } = makeSnapshottedDisk(folder, 'dark-plain.qcow2', 1);
      await openDisk(dark.page, plain);
      await dark.page.getByTestId('encrypt-button').click();
      await waitForFigures(dark.page);
      await typeNewPassphrase(dark.page, 'password1');
      await dark.page.getByTestId('encrypt-advanced').locator('summary').click();
      await screenshot(dark.page, 'encrypt-dialog-weak-dark');
      await typeNewPassphrase(dark.page, FIRST);
      await screenshot(dark.page, 'encrypt-dialog-dark');
      await dark.page.getByTestId('dialog-cancel').click();

      const { path: secret } = await makeEncryptedSnapshottedDisk(folder, 'dark-secret.qcow2', FIRST, 1);
      await openDisk(dark.page, secret);
      await dark.page.getByTestId('decrypt-button').click();
      await waitForFigures(dark.page);
      await screenshot(dark.page, 'decrypt-dialog-dark');
      await dark.page.getByTestId('dialog-submit').click();
      await unlock(dark.page, WRONG);
      await eventually(() => dark.page.getByTestId('unlock-dialog').getAttribute('data-reason')).toBe('BAD_PASSPHRASE');
      await screenshot(dark.page, 'unlock-wrong-dark');
      await dark.page.getByTestId('unlock-dialog').getByTestId('dialog-cancel').click();
      await dark.page.getByTestId('dialog-cancel').click();

      await dark.page.getByTestId('passphrase-button').click();
      await dark.page.getByTestId('current-passphrase').fill(FIRST);
      await typeNewPassphrase(dark.page, SECOND);
      await screenshot(dark.page, 'passphrase-dialog-dark');
      await dark.page.getByTestId('dialog-cancel').click();
      expect(dark.problems).toEqual([]);
    } finally {
      await dark.close();
    }
  });
});
