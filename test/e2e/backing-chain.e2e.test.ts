/**
 * The backing chain in Chromium against browser mode, on chains qemu-img makes here: the chain
 * shown above the tree (a missing file by name), then New Linked Clone…, Commit… and Rebase…
 * through their dialogs, each checked on the files with qemu-img (check, info, guest data).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { eventually, openThroughPathField, qemuImg, useSharedApp, type Session } from './harness.ts';

let folder: string;
let session: Session;
let page: Page;

useSharedApp((app) => {
  ({ folder, session } = app);
  page = session.page;
}, { screenshotPrefix: 'chain' });

function qemuIo(path: string, command: string): void {
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', command, path]);
}

function backingOf(path: string): string | undefined {
  return (JSON.parse(qemuImg('info', '--output=json', '-U', path)) as { 'backing-filename'?: string })['backing-filename'];
}

function guest(path: string): Buffer {
  const raw = join(folder, `guest-${process.hrtime.bigint()}.raw`);
  qemuImg('convert', '-U', '-f', 'qcow2', '-O', 'raw', path, raw);
  try {
    return readFileSync(raw);
  } finally {
    rmSync(raw, { force: true });
  }
}

function checkClean(path: string): boolean {
  try {
    execFileSync('qemu-img', ['check', path], { encoding: 'utf8' });
    return true;
  } catch {
    return false;
  }
}

/** base (data, snapshot "installed") ← name, with data of its own. */
function makeClone(name: string, baseName: string): { base: string; clone: string } {
  const base = join(folder, baseName);
  const clone = join(folder, name);
  qemuImg('create', '-q', '-f', 'qcow2', base, '8M');
  qemuIo(base, 'write -P 0x11 0 4M');
  qemuImg('snapshot', '-c', 'installed', base);
  qemuImg('create', '-q', '-f', 'qcow2', '-b', baseName, '-F', 'qcow2', clone);
  qemuIo(clone, 'write -P 0x22 1M 2M');
  return { base, clone };
}

async function openDisk(path: string): Promise<void> {
  await openThroughPathField(page, path);
  await eventually(() => page.getByTestId('disk-name').textContent()).toBe(path.slice(path.lastIndexOf('/') + 1));
  await page.getByTestId('tab-snapshots').click();
  await page.getByTestId('backing-chain').waitFor();
}

async function lastJobStatus(): Promise<string | null> {
  if ((await page.getByTestId('jobs-panel').count()) === 0) await page.getByTestId('jobs-toggle').click();
  return page.getByTestId('job').first().getAttribute('data-status');
}

describe('the backing chain', () => {
  it('shows the files a linked clone reads through, with their snapshots; Commit… writes its data into the base and empties it', async () => {
    const { base, clone } = makeClone('clone.qcow2', 'base.qcow2');
    const before = guest(clone);
    await openDisk(clone);
    const row = page.getByTestId('chain-file-0');
    await eventually(() => row.locator('.file-name').textContent()).toBe('base.qcow2');
    await eventually(() => page.getByTestId('chain-file-0-snapshots').textContent()).toBe('installed');

    await page.getByTestId('commit-button').click();
    await eventually(() => page.getByTestId('commit-backing').textContent()).toBe('base.qcow2');
    await page.getByTestId('dialog-submit').click();
    await eventually(() => lastJobStatus()).toBe('done');
    // Emptied: nothing of the guest disk is the clone's own, and both files read as the clone did.
    const map = JSON.parse(qemuImg('map', '--output=json', '-U', clone)) as { depth: number }[];
    expect(map.filter((entry) => entry.depth === 0)).toEqual([]);
    expect(checkClean(clone) && checkClean(base)).toBe(true);
    expect(guest(clone).equals(before)).toBe(true);
    expect(guest(base).equals(before)).toBe(true);
  });

  it('New Linked Clone… makes an overlay on the open disk and opens it', async () => {
    const { clone } = makeClone('source.qcow2', 'source-base.qcow2');
    await openDisk(clone);
    await page.getByTestId('linked-clone-button').click();
    const target = join(folder, 'web-1.qcow2');
    await page.getByTestId('linked-clone-path').fill(target);
    await page.getByTestId('dialog-submit').click();
    await eventually(() => existsSync(target) && backingOf(target)).toBe(clone);
    await eventually(() => page.getByTestId('disk-name').textContent()).toBe('web-1.qcow2');
    await eventually(() => page.getByTestId('chain-file-0').locator('.file-name').textContent()).toBe(clone);
    expect(checkClean(target)).toBe(true);
    expect(guest(target).equals(guest(clone))).toBe(true);
  });

  it('names a missing backing file; Rebase… (name only) points the disk at where the file went', async () => {
    const { base, clone } = makeClone('orphan.qcow2', 'moved-away.qcow2');
    const before = guest(clone);
    const moved = join(folder, 'moved-here.qcow2');
    execFileSync('mv', [base, moved]);
    await openDisk(clone);
    const row = page.getByTestId('chain-file-0');
    await eventually(() => row.getAttribute('data-problem')).toBe('missing');
    await expect.poll(() => row.textContent()).toContain('moved-away.qcow2 does not exist');

    await page.getByTestId('rebase-button').click();
    await eventually(() => page.getByTestId('rebase-unsafe').isChecked()).toBe(true);
    await page.getByTestId('rebase-target').fill(moved);
    await page.getByTestId('dialog-submit').click();
    await eventually(() => backingOf(clone)).toBe(moved);
    await eventually(() => page.getByTestId('chain-file-0').getAttribute('data-problem')).toBe('');
    expect(checkClean(clone)).toBe(true);
    expect(guest(clone).equals(before)).toBe(true);
  });

  it('Rebase… onto no backing file copies in what the base gave (safe mode)', async () => {
    const { clone } = makeClone('standalone.qcow2', 'standalone-base.qcow2');
    const before = guest(clone);
    await openDisk(clone);
    await page.getByTestId('rebase-button').click();
    await page.getByTestId('rebase-none').check();
    await page.getByTestId('dialog-submit').click();
    await eventually(() => backingOf(clone) ?? null).toBe(null);
    await eventually(() => page.getByTestId('chain-none').count()).toBe(1);
    expect(checkClean(clone)).toBe(true);
    expect(guest(clone).equals(before)).toBe(true);
  });

  it('Commit… over an encrypted backing file asks for the passphrase (Unlock), then writes the data into it under its own key', async () => {
    const passphrase = 'moo-e2e-chain';
    const base = join(folder, 'locked-base.qcow2');
    const clone = join(folder, 'over-locked.qcow2');
    const secretFile = join(folder, 'locked.pass');
    writeFileSync(secretFile, passphrase, { mode: 0o600 });
    qemuImg('create', '-q', '-f', 'qcow2', base, '8M');
    qemuIo(base, 'write -P 0x31 0 4M');
    execFileSync(fileURLToPath(new URL('../../bin/cowbell', import.meta.url)), ['encrypt', '-q', '-o', 'encrypt.iter-time=10', '--new-passphrase-file', secretFile, base]);
    qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', 'locked-base.qcow2', '-F', 'qcow2', clone, '8M');
    const secret = ['--object', `secret,id=sec0,data=${passphrase}`, '--image-opts'];
    execFileSync('qemu-io', [...secret, '-c', 'write -P 0x32 1M 2M', `driver=qcow2,file.filename=${clone},backing.encrypt.key-secret=sec0`]);
    const read = (opts: string): Buffer => {
      const raw = join(folder, `locked-${process.hrtime.bigint()}.raw`);
      qemuImg('convert', ...secret, opts, '-O', 'raw', raw);
      try {
        return readFileSync(raw);
      } finally {
        rmSync(raw, { force: true });
      }
    };
    const before = read(`driver=qcow2,file.filename=${clone},backing.encrypt.key-secret=sec0`);

    await openDisk(clone);
    await page.getByTestId('commit-button').click();
    await eventually(() => page.getByTestId('commit-backing').textContent()).toBe('locked-base.qcow2');
    await page.getByTestId('dialog-submit').click();
    const unlockDialog = page.getByTestId('unlock-dialog');
    await eventually(() => unlockDialog.getAttribute('data-reason')).toBe('LOCKED');
    await unlockDialog.getByTestId('unlock-passphrase').fill(passphrase);
    await unlockDialog.getByTestId('dialog-submit').click();
    await eventually(() => lastJobStatus()).toBe('done');
    expect(read(`driver=qcow2,file.filename=${base},encrypt.key-secret=sec0`).equals(before)).toBe(true);
    expect(read(`driver=qcow2,file.filename=${clone},backing.encrypt.key-secret=sec0`).equals(before)).toBe(true);
    execFileSync('qemu-img', ['check', ...secret, `driver=qcow2,file.filename=${base},encrypt.key-secret=sec0`]);
  });
});
