/**
 * Encrypt…, Decrypt…, Change Passphrase… and the Unlock dialog against a fake main: what they check
 * before sending (a passphrase typed twice the same, never empty; its strength shown), what they
 * send (each passphrase once, in the arguments of the one job), how a wrong or missing passphrase
 * brings the Unlock dialog back without opening the jobs panel, and that nothing keeps a passphrase.
 */
import { flushPromises, mount, type VueWrapper } from '@vue/test-utils';
import { createPinia, setActivePinia, type Pinia } from 'pinia';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ImageInfo, PassphraseChange, RewritePreview, RewriteSummary } from '../../src/shared/ipc/contract.ts';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import DiskHeader from '../../src/renderer/src/components/DiskHeader.vue';
import DiskListItem from '../../src/renderer/src/components/DiskListItem.vue';
import DiskView from '../../src/renderer/src/components/DiskView.vue';
import PassphraseDialog from '../../src/renderer/src/components/dialogs/PassphraseDialog.vue';
import RewriteDialog from '../../src/renderer/src/components/dialogs/RewriteDialog.vue';
import { describePassphraseChange } from '../../src/renderer/src/lib/describe-rewrite.ts';
import { cipherFor } from '../../src/renderer/src/lib/luks-choices.ts';
import { newPassphraseProblem, newPassphraseReady } from '../../src/renderer/src/lib/passphrase-rules.ts';
import { loadStrengthEstimator } from '../../src/renderer/src/lib/passphrase-strength.ts';
import { useJobsStore } from '../../src/renderer/src/stores/jobs.ts';
import { useLibraryStore } from '../../src/renderer/src/stores/library.ts';
import { fakeJobsConnection, imageInfo, type fakeConnection, type JobOutcome, type StartedJob } from './fixtures.ts';

const PATH = '/disks/fedora.qcow2';
const MiB = 1024 * 1024;
const STRONG = 'violet anchor mortgage drizzle kettle';
const SECRET = 'the old disk passphrase';

let pinia: Pinia;
let fake: ReturnType<typeof fakeConnection>;
let started: StartedJob[];
let end: (kind: string, outcome: JobOutcome) => void;
let wrapper: VueWrapper | null = null;

const PLAIN = (): ImageInfo => imageInfo({ filename: PATH, 'actual-size': 800 * MiB });
const LUKS = (): ImageInfo => {
  const info = imageInfo({ filename: PATH, 'actual-size': 800 * MiB, encrypted: true });
  info['format-specific'].data.encrypt = { format: 'luks' };
  return info;
};
const AES = (): ImageInfo => {
  const info = imageInfo({ filename: PATH, encrypted: true });
  info['format-specific'].data.encrypt = { format: 'aes' };
  return info;
};

function useDisk(info: ImageInfo): void {
  useLibraryStore().disks = [{ path: PATH, status: 'ready', info, error: null, refreshing: false }];
}

beforeEach(() => {
  pinia = createPinia();
  setActivePinia(pinia);
  ({ fake, started, end } = fakeJobsConnection({
    'image.open': () => PLAIN(),
    'image.watch': () => null,
  }));
  replaceConnection(fake);
  useDisk(PLAIN());
});

afterEach(() => {
  wrapper?.unmount();
  wrapper = null;
  replaceConnection(null);
});

/** A disk without compressed clusters in any state. */
const NO_COMPRESSED_DATA = { clusters: 0, storedBytes: 0, guestBytes: 0, inCurrent: false, inSnapshots: 0 };

function preview(overrides: Partial<RewritePreview> = {}): RewritePreview {
  return { fileBytes: 800 * MiB, expectedBytes: 810 * MiB, maxBytes: 820 * MiB, sampledClusters: 64, freeBytes: 40 * 1024 * MiB, snapshots: 2, compressed: NO_COMPRESSED_DATA, ...overrides };
}

function summary(encryption: 'luks' | 'none'): RewriteSummary {
  return { beforeBytes: 800 * MiB, afterBytes: 802 * MiB, snapshots: 2, storedClusters: 12800, compressedClusters: 0, zeroClusters: 0, verified: true, encryption, upgradedToVersion3: false };
}

function byTestId(testId: string): HTMLElement | null {
  return document.body.querySelector<HTMLElement>(`[data-testid="${testId}"]`);
}

function textOf(testId: string): string {
  return byTestId(testId)?.textContent?.trim() ?? '';
}

/** The outer dialog's own parts (the Unlock dialog has its own Cancel and Unlock). */
function outer(testId: string): HTMLElement {
  const element = document.body.querySelector<HTMLElement>(`[data-testid="dialog"] [data-testid="${testId}"]`);
  if (!element) throw new Error(`no ${testId} in the dialog`);
  return element;
}

function unlockPart(testId: string): HTMLElement | null {
  return document.body.querySelector<HTMLElement>(`[data-testid="unlock-dialog"] [data-testid="${testId}"]`);
}

async function type(testId: string, value: string): Promise<void> {
  const input = byTestId(testId) as HTMLInputElement | null;
  if (!input) throw new Error(`no ${testId}`);
  input.value = value;
  input.dispatchEvent(new Event('input'));
  await flushPromises();
}

async function submit(selector = '[data-testid="dialog"] form'): Promise<void> {
  document.body.querySelector(selector)?.dispatchEvent(new Event('submit'));
  await flushPromises();
}

function submitDisabled(): boolean {
  return (outer('dialog-submit') as HTMLButtonElement).disabled;
}

async function mountRewrite(mode: 'compress' | 'compact' | 'encrypt' | 'decrypt'): Promise<VueWrapper> {
  wrapper = mount(RewriteDialog, { props: { path: PATH, mode }, global: { plugins: [pinia] }, attachTo: document.body });
  await flushPromises();
  return wrapper;
}

async function strengthSettled(): Promise<void> {
  await vi.waitFor(() => expect(textOf('strength-label')).not.toBe('Estimating…'), { timeout: 10_000 });
}

describe('new passphrases', () => {
  it('must be typed, typed again the same, and no longer than the contract takes', () => {
    expect(newPassphraseProblem('', '')).toBeNull();
    expect(newPassphraseReady('', '')).toBe(false);
    expect(newPassphraseProblem('', 'abc')).toBe('Type the new passphrase in the first field.');
    expect(newPassphraseProblem('abc', '')).toBe('Type the new passphrase again, to be sure of it.');
    expect(newPassphraseProblem('abc', 'abd')).toBe('The two passphrases differ.');
    expect(newPassphraseProblem('x'.repeat(1025), 'x'.repeat(1025))).toBe('A passphrase can be at most 1024 characters long.');
    expect(newPassphraseProblem('abc', 'abc')).toBeNull();
    expect(newPassphraseReady('abc', 'abc')).toBe(true);
  });

  it('are scored by zxcvbn: a common password is very weak and says why, several unrelated words are strong, the disk’s name counts against it', async () => {
    const estimate = await loadStrengthEstimator();
    const common = estimate('password1');
    expect(common).toMatchObject({ score: 0, label: 'Very weak' });
    expect(common.warning).toMatch(/commonly used|frequently used|heavily used/);
    expect(estimate(STRONG).score).toBeGreaterThanOrEqual(3);
    expect(estimate('fedora-disk-2024', ['fedora-disk-2024']).score).toBeLessThan(estimate('fedora-disk-2024').score + 1);
    expect(estimate('fedora-disk-2024', ['fedora-disk-2024']).score).toBeLessThanOrEqual(1);
  }, 20_000);
});

describe('the Encrypt… dialog', () => {
  it('estimates the new file uncompressed, refuses an empty or mismatched passphrase, shows the strength, and offers QEMU’s cipher first', async () => {
    await mountRewrite('encrypt');
    // The estimate is of the new file: a new LUKS key's area, for the cipher offered first.
    expect(started).toEqual([{ id: 'job-1', kind: 'image.rewritePreview', path: PATH, args: { compression: 'uncompress', output: 'luks', cipher: { aesKeyBits: 256, mode: 'xts', ivGenerator: 'plain64' } } }]);
    end('image.rewritePreview', { result: preview() });
    await flushPromises();
    expect(textOf('dialog-title')).toBe('Encrypt fedora.qcow2');
    expect(textOf('rewrite-snapshots-kept')).toContain('Every snapshot is kept (2)');
    expect(textOf('encrypt-warning')).toContain('Keep the passphrase safe');
    expect(submitDisabled()).toBe(true);
    expect(byTestId('dialog-problem')).toBeNull();
    expect((byTestId('encrypt-cipher') as HTMLSelectElement).value).toBe('aes-256-xts-plain64');
    expect((byTestId('encrypt-hash') as HTMLSelectElement).value).toBe('sha256');
    expect((byTestId('encrypt-unlock-time') as HTMLSelectElement).value).toBe('2000');

    await type('new-passphrase', 'password1');
    expect(textOf('dialog-problem')).toBe('Type the new passphrase again, to be sure of it.');
    await strengthSettled();
    expect(textOf('strength-label')).toBe('Very weak');
    expect(byTestId('strength')?.dataset.score).toBe('0');
    expect(textOf('strength-advice')).not.toBe('');

    await type('new-passphrase', STRONG);
    await type('new-passphrase-repeat', `${STRONG}!`);
    expect(textOf('dialog-problem')).toBe('The two passphrases differ.');
    expect(submitDisabled()).toBe(true);
    await submit();
    expect(started.filter((job) => job.kind === 'image.encrypt')).toEqual([]);

    await type('new-passphrase-repeat', STRONG);
    expect(byTestId('dialog-problem')).toBeNull();
    expect(submitDisabled()).toBe(false);
    expect(Number(byTestId('strength')?.dataset.score)).toBeGreaterThanOrEqual(3);
    expect(['Strong', 'Very strong']).toContain(textOf('strength-label'));
    expect(byTestId('strength-advice')).toBeNull();
  }, 20_000);

  it('says nothing of compressed data on a disk that holds none in any state (it used to warn on every disk)', async () => {
    await mountRewrite('encrypt');
    end('image.rewritePreview', { result: preview({ compressed: NO_COMPRESSED_DATA }) });
    await flushPromises();
    expect(textOf('encrypt-warning')).toContain('Keep the passphrase safe');
    expect(byTestId('rewrite-encrypted-note')).toBeNull();
    expect(document.body.textContent).not.toMatch(/compressed/i);
  });

  it('says how much compressed data is stored uncompressed, in which states, and what it takes uncompressed; a re-read keeps it in view', async () => {
    const compressed = { clusters: 8000, storedBytes: 212 * MiB, guestBytes: 500 * MiB, inCurrent: true, inSnapshots: 2 };
    await mountRewrite('encrypt');
    end('image.rewritePreview', { result: preview({ compressed }) });
    await flushPromises();
    expect(byTestId('rewrite-encrypted-note')?.dataset.state).toBe('some');
    expect(textOf('rewrite-encrypted-note')).toBe(
      '212 MiB of compressed data (in the current disk and 2 snapshots) will be stored uncompressed and encrypted. QEMU cannot keep compressed data encrypted. Uncompressed, it takes up to 500 MiB: 288 MiB more than now.',
    );

    // Another cipher asks for a new estimate; the disk's compressed data is the same meanwhile.
    const cipher = byTestId('encrypt-cipher') as HTMLSelectElement;
    cipher.value = 'aes-128-cbc-essiv:sha256';
    cipher.dispatchEvent(new Event('change'));
    await flushPromises();
    expect(started.at(-1)).toMatchObject({ kind: 'image.rewritePreview', args: { output: 'luks' } });
    expect(byTestId('rewrite-encrypted-note')?.dataset.state).toBe('some');
    wrapper?.unmount();

    await mountRewrite('encrypt');
    end('image.rewritePreview', { result: preview({ compressed: { ...compressed, inCurrent: false, inSnapshots: 1 } }) });
    await flushPromises();
    expect(textOf('rewrite-encrypted-note')).toContain('212 MiB of compressed data (in 1 snapshot) will be stored uncompressed');
  });

  it('while the compressed data is being counted says so, and after a failed count only hedges: never a claim it cannot make', async () => {
    await mountRewrite('encrypt');
    expect(byTestId('rewrite-encrypted-note')?.dataset.state).toBe('checking');
    expect(textOf('rewrite-encrypted-note')).toBe('Checking the disk and its snapshots for compressed data…');
    end('image.rewritePreview', { error: { code: 'IO_ERROR', message: 'The disk could not be read' } });
    await flushPromises();
    expect(byTestId('rewrite-encrypted-note')?.dataset.state).toBe('unknown');
    expect(textOf('rewrite-encrypted-note')).toMatch(/^Any compressed data the disk holds is stored uncompressed/);
    expect(textOf('rewrite-encrypted-note')).not.toMatch(/MiB|GiB|will be stored/);
  });

  it('sends the new passphrase once, with the chosen cipher, hash and unlock time; follows the new key and copy; says it is encrypted; forgets the passphrase', async () => {
    await mountRewrite('encrypt');
    end('image.rewritePreview', { result: preview() });
    await flushPromises();
    await type('new-passphrase', STRONG);
    await type('new-passphrase-repeat', STRONG);
    const cipher = byTestId('encrypt-cipher') as HTMLSelectElement;
    cipher.value = 'aes-128-cbc-essiv:sha256';
    cipher.dispatchEvent(new Event('change'));
    await flushPromises();
    // Another cipher, another key size: the estimate is asked again for it.
    expect(started.at(-1)).toMatchObject({ kind: 'image.rewritePreview', args: { output: 'luks', cipher: { aesKeyBits: 128, mode: 'cbc', ivGenerator: 'essiv', ivHash: 'sha256' } } });
    end('image.rewritePreview', { result: preview() });
    const unlockTime = byTestId('encrypt-unlock-time') as HTMLSelectElement;
    unlockTime.value = '1000';
    unlockTime.dispatchEvent(new Event('change'));
    await flushPromises();
    await submit();
    // A plain disk needs no unlocking: the job starts at once.
    expect(byTestId('unlock-dialog')).toBeNull();
    expect(started.at(-1)).toMatchObject({
      kind: 'image.encrypt',
      path: PATH,
      args: { newPassphrase: STRONG, cipher: { aesKeyBits: 128, mode: 'cbc', ivGenerator: 'essiv', ivHash: 'sha256' }, hash: 'sha256', iterTimeMs: 1000, from: 'plain' },
    });
    expect(started.at(-1)?.args).not.toHaveProperty('passphrase');
    const jobId = started.at(-1)?.id ?? '';

    fake.emit('job.progress', { jobId, stage: 'making the new key', done: 0, total: 1, unit: 'steps' });
    await flushPromises();
    const steps = [...document.body.querySelectorAll('[data-testid="job-step"]')];
    expect(steps.map((step) => step.textContent?.trim())).toEqual(['Read tables', 'New key', 'Copy', 'Check', 'Verify']);
    expect(steps.map((step) => step.classList.contains('current'))).toEqual([false, true, false, false, false]);
    expect(textOf('dialog-progress-detail')).toContain('Making the new key');

    end('image.encrypt', { result: summary('luks') });
    await flushPromises();
    expect(textOf('dialog-title')).toBe('Encrypted fedora.qcow2');
    expect(textOf('rewrite-result-detail')).toContain('Encrypted with LUKS (aes-128-cbc-essiv:sha256); 2 snapshots kept; every state was compared');
    expect(useJobsStore().find(jobId)?.outcome).toBe('Encrypted with LUKS; 2 snapshots kept (800 MiB → 802 MiB).');
    // Nothing the page keeps holds the passphrase: not the jobs store, not the dialog's fields.
    expect(JSON.stringify(useJobsStore().jobs)).not.toContain(STRONG);
    expect(document.body.innerHTML).not.toContain(STRONG);
  });

  it('refuses a disk already encrypted with LUKS, and asks for the old passphrase of a legacy AES disk it migrates', async () => {
    useDisk(LUKS());
    await mountRewrite('encrypt');
    expect(textOf('rewrite-blocked')).toContain('already encrypted with LUKS');
    expect(started).toEqual([]);
    wrapper?.unmount();

    useDisk(AES());
    await mountRewrite('encrypt');
    end('image.rewritePreview', { result: preview() });
    await flushPromises();
    expect(textOf('encrypt-migrate')).toContain('old qcow2 AES encryption');
    await type('new-passphrase', STRONG);
    await type('new-passphrase-repeat', STRONG);
    await submit();
    expect(byTestId('unlock-dialog')).not.toBeNull();
    await type('unlock-passphrase', SECRET);
    await submit('[data-testid="unlock-dialog"] form');
    expect(started.at(-1)).toMatchObject({ kind: 'image.encrypt', args: { newPassphrase: STRONG, passphrase: SECRET, from: 'aes' } });
  });
});

describe('the Unlock dialog', () => {
  it('asks before compacting an encrypted disk, sends the passphrase in that job only, and asks again after a wrong one without opening the jobs panel', async () => {
    useDisk(LUKS());
    await mountRewrite('compact');
    expect(started[0]).toMatchObject({ kind: 'image.rewritePreview', args: { compression: 'uncompress' } });
    end('image.rewritePreview', { result: preview({ expectedBytes: 600 * MiB, compressed: { clusters: 32, storedBytes: MiB, guestBytes: 2 * MiB, inCurrent: true, inSnapshots: 0 } }) });
    await flushPromises();
    expect(byTestId('rewrite-uncompress')).toBeNull();
    expect(textOf('rewrite-encrypted-note')).toBe(
      '1 MiB of compressed data (in the current disk) will be stored uncompressed and encrypted. It is stored unencrypted now: QEMU writes compressed clusters of an encrypted disk in the clear. Uncompressed, it takes up to 2 MiB: 1 MiB more than now.',
    );
    await submit();
    expect(started.filter((job) => job.kind === 'image.compact')).toEqual([]);
    expect(byTestId('unlock-dialog')?.dataset.reason).toBe('encrypted');
    expect(unlockPart('dialog-title')?.textContent).toBe('Unlock fedora.qcow2');
    expect((unlockPart('dialog-submit') as HTMLButtonElement).disabled).toBe(true);
    expect(byTestId('dialog')?.dataset.phase).toBe('unlock');

    await type('unlock-passphrase', 'wrong guess');
    await submit('[data-testid="unlock-dialog"] form');
    expect(byTestId('unlock-dialog')).toBeNull();
    expect(started.at(-1)).toMatchObject({ kind: 'image.compact', args: { passphrase: 'wrong guess' } });
    fake.emit('job.progress', { jobId: started.at(-1)?.id ?? '', stage: 'Trying key slots', done: 0, total: 1, unit: 'steps' });
    await flushPromises();
    expect(textOf('dialog-progress-detail')).toContain('Unlocking…');
    expect(document.body.querySelector('[data-testid="job-step"].current')?.textContent?.trim()).toBe('Unlock');

    end('image.compact', { error: { code: 'BAD_PASSPHRASE', message: 'The passphrase opens none of the image’s key slots' } });
    await flushPromises();
    expect(byTestId('unlock-dialog')?.dataset.reason).toBe('BAD_PASSPHRASE');
    expect(textOf('unlock-wrong')).toContain('does not unlock this disk');
    expect(textOf('unlock-wrong')).toContain('Nothing was changed');
    expect((byTestId('unlock-passphrase') as HTMLInputElement).value).toBe('');
    expect(useJobsStore().panelOpen).toBe(false);
    // A screen reader moving to the field hears why it is there again (the notice describes it), and that it is invalid until something is typed.
    const field = byTestId('unlock-passphrase');
    expect(field?.getAttribute('aria-invalid')).toBe('true');
    expect(document.getElementById(field?.getAttribute('aria-describedby') ?? '')).toBe(byTestId('unlock-wrong'));
    await type('unlock-passphrase', 'x');
    expect(field?.getAttribute('aria-invalid')).toBeNull();
    expect(document.getElementById(field?.getAttribute('aria-describedby') ?? '')).toBe(byTestId('unlock-wrong'));

    await type('unlock-passphrase', SECRET);
    await submit('[data-testid="unlock-dialog"] form');
    expect(started.at(-1)).toMatchObject({ kind: 'image.compact', args: { passphrase: SECRET } });
    end('image.compact', { result: summary('luks') });
    await flushPromises();
    expect(byTestId('dialog')?.dataset.phase).toBe('done');
    expect(JSON.stringify(useJobsStore().jobs)).not.toContain(SECRET);
  });

  it('appears when a job finds the disk LOCKED, and the job is retried with the passphrase', async () => {
    await mountRewrite('compact');
    end('image.rewritePreview', { result: preview({ expectedBytes: 600 * MiB }) });
    await flushPromises();
    await submit();
    expect(started.at(-1)).toMatchObject({ kind: 'image.compact', args: {} });
    end('image.compact', { error: { code: 'LOCKED', message: 'The disk is encrypted: unlock it with its passphrase' } });
    await flushPromises();
    expect(byTestId('unlock-dialog')?.dataset.reason).toBe('LOCKED');
    expect(useJobsStore().panelOpen).toBe(false);
    await type('unlock-passphrase', SECRET);
    await submit('[data-testid="unlock-dialog"] form');
    expect(started.at(-1)).toMatchObject({ kind: 'image.compact', args: { passphrase: SECRET } });
  });

  it('cancelled, goes back to the dialog’s fields with nothing started', async () => {
    useDisk(LUKS());
    await mountRewrite('decrypt');
    expect(started.at(-1)).toMatchObject({ kind: 'image.rewritePreview', args: { compression: 'keep', output: 'plain' } });
    end('image.rewritePreview', { result: preview() });
    await flushPromises();
    expect(textOf('decrypt-warning')).toContain('Anyone who can read the file');
    await submit();
    expect(byTestId('unlock-dialog')).not.toBeNull();
    unlockPart('dialog-cancel')?.click();
    await flushPromises();
    expect(byTestId('unlock-dialog')).toBeNull();
    expect(byTestId('dialog')?.dataset.phase).toBe('setup');
    expect(started.filter((job) => job.kind === 'image.decrypt')).toEqual([]);

    await submit();
    await type('unlock-passphrase', SECRET);
    await submit('[data-testid="unlock-dialog"] form');
    expect(started.at(-1)).toMatchObject({ kind: 'image.decrypt', args: { passphrase: SECRET } });
    end('image.decrypt', { result: summary('none') });
    await flushPromises();
    expect(textOf('dialog-title')).toBe('Decrypted fedora.qcow2');
    expect(textOf('rewrite-result-detail')).toContain('Stored plain, without encryption; 2 snapshots kept');
  });

  it('says a failure that is not about the passphrase as any job’s end, without asking again', async () => {
    useDisk(LUKS());
    await mountRewrite('decrypt');
    end('image.rewritePreview', { result: preview() });
    await flushPromises();
    await submit();
    await type('unlock-passphrase', SECRET);
    await submit('[data-testid="unlock-dialog"] form');
    end('image.decrypt', { error: { code: 'NO_SPACE', message: 'the drive is full' } });
    await flushPromises();
    expect(byTestId('unlock-dialog')).toBeNull();
    expect(byTestId('dialog-job-end')?.dataset.code).toBe('NO_SPACE');
  });
});

describe('the Change Passphrase… dialog', () => {
  async function mountPassphrase(): Promise<VueWrapper> {
    wrapper = mount(PassphraseDialog, { props: { path: PATH }, global: { plugins: [pinia] }, attachTo: document.body });
    await flushPromises();
    return wrapper;
  }

  it('needs the current passphrase and a new one typed twice the same; remove needs only the one to remove', async () => {
    useDisk(LUKS());
    await mountPassphrase();
    expect(textOf('dialog-title')).toBe('Change the passphrase of fedora.qcow2');
    expect(submitDisabled()).toBe(true);
    await type('current-passphrase', SECRET);
    expect(submitDisabled()).toBe(true);
    await type('new-passphrase', STRONG);
    await type('new-passphrase-repeat', 'something else');
    expect(textOf('dialog-problem')).toBe('The two passphrases differ.');
    expect(submitDisabled()).toBe(true);
    await type('new-passphrase-repeat', STRONG);
    expect(submitDisabled()).toBe(false);
    await strengthSettled();
    expect(textOf('strength-label')).not.toBe('Strength');

    const remove = byTestId('passphrase-action-remove') as HTMLInputElement;
    remove.checked = true;
    remove.dispatchEvent(new Event('change'));
    await flushPromises();
    expect(byTestId('new-passphrase')).toBeNull();
    expect(outer('dialog-submit').textContent?.trim()).toBe('Remove');
    await submit();
    expect(started.at(-1)).toEqual({ id: 'job-1', kind: 'image.passphrase', path: PATH, args: { passphrase: SECRET, action: 'remove' } });
  }, 20_000);

  it('changes it: follows unlock, add and erase, then says the old one no longer opens the disk', async () => {
    useDisk(LUKS());
    await mountPassphrase();
    await type('current-passphrase', SECRET);
    await type('new-passphrase', STRONG);
    await type('new-passphrase-repeat', STRONG);
    await submit();
    expect(started.at(-1)).toMatchObject({ kind: 'image.passphrase', args: { passphrase: SECRET, action: 'change', newPassphrase: STRONG } });
    const jobId = started.at(-1)?.id ?? '';
    fake.emit('job.progress', { jobId, stage: 'adding the new passphrase', done: 1, total: 3, unit: 'steps' });
    await flushPromises();
    expect(document.body.querySelector('[data-testid="job-step"].current')?.textContent?.trim()).toBe('Add');
    const change: PassphraseChange = { activeSlots: [1], added: 1, removed: [0] };
    end('image.passphrase', { result: change });
    await flushPromises();
    expect(textOf('passphrase-result')).toContain('The new passphrase replaces the old one');
    expect(textOf('passphrase-result-slots')).toContain('One passphrase opens it now');
    expect(describePassphraseChange(change)).toBe('Passphrase changed; 1 passphrase opens the disk now.');
    expect(JSON.stringify(useJobsStore().jobs)).not.toContain(SECRET);
    expect(document.body.innerHTML).not.toContain(STRONG);
  });

  it('after a wrong current passphrase goes back to the fields, says so, and keeps the jobs panel shut', async () => {
    useDisk(LUKS());
    await mountPassphrase();
    await type('current-passphrase', 'wrong guess');
    await type('new-passphrase', STRONG);
    await type('new-passphrase-repeat', STRONG);
    await submit();
    end('image.passphrase', { error: { code: 'BAD_PASSPHRASE', message: 'The passphrase opens none of the image’s key slots' } });
    await flushPromises();
    expect(byTestId('dialog')?.dataset.phase).toBe('setup');
    expect(textOf('passphrase-wrong')).toContain('does not unlock this disk');
    expect((byTestId('current-passphrase') as HTMLInputElement).value).toBe('');
    expect(useJobsStore().panelOpen).toBe(false);
    const field = byTestId('current-passphrase');
    expect(field?.getAttribute('aria-invalid')).toBe('true');
    expect(document.getElementById(field?.getAttribute('aria-describedby') ?? '')).toBe(byTestId('passphrase-wrong'));
    // The focus is back in the field (it was on Cancel: Enter to try again closed the dialog).
    expect(document.activeElement).toBe(field);
    await type('current-passphrase', SECRET);
    expect(byTestId('passphrase-wrong')).toBeNull();
    expect(field?.getAttribute('aria-invalid')).toBeNull();
    expect(field?.getAttribute('aria-describedby')).toBeNull();
  });

  it('is refused on a disk without key slots, with the reason', async () => {
    await mountPassphrase();
    expect(textOf('passphrase-blocked')).toBe('This disk is not encrypted.');
    wrapper?.unmount();
    useDisk(AES());
    await mountPassphrase();
    expect(textOf('passphrase-blocked')).toContain('old qcow2 AES encryption, which has no key slots');
  });
});

describe('an encrypted disk in the window', () => {
  it('is marked in the sidebar and the header; offers Passphrase… and Decrypt…, and Compress… is disabled with the reason', async () => {
    const disk = { path: PATH, status: 'ready' as const, info: LUKS(), error: null, refreshing: false };
    useDisk(disk.info);
    wrapper = mount(DiskView, { props: { disk }, global: { plugins: [pinia] } });
    await flushPromises();
    expect(wrapper.get('[data-testid="disk-encrypted-tag"]').text()).toBe('Encrypted');
    expect(wrapper.find('[data-testid="encrypt-button"]').exists()).toBe(false);
    for (const id of ['passphrase-button', 'decrypt-button', 'compact-button']) expect((wrapper.get(`[data-testid="${id}"]`).element as HTMLButtonElement).disabled).toBe(false);
    const compress = wrapper.get('[data-testid="compress-button"]');
    expect((compress.element as HTMLButtonElement).disabled).toBe(true);
    expect(compress.element.parentElement?.getAttribute('title')).toContain('An encrypted disk cannot be compressed');
    wrapper.unmount();

    const item = mount(DiskListItem, { props: { disk, selected: false }, global: { plugins: [pinia] } });
    expect(item.get('[data-testid="disk-item-encrypted"]').attributes('aria-label')).toBe('Encrypted');
    item.unmount();
    const plainItem = mount(DiskListItem, { props: { disk: { ...disk, info: PLAIN() }, selected: false }, global: { plugins: [pinia] } });
    expect(plainItem.find('[data-testid="disk-item-encrypted"]').exists()).toBe(false);
    plainItem.unmount();
    const aesHeader = mount(DiskHeader, { props: { disk: { ...disk, info: AES() } } });
    expect(aesHeader.get('[data-testid="disk-encrypted-tag"]').text()).toBe('Encrypted (old AES)');
    aesHeader.unmount();
    wrapper = null;
  });

  it('a plain disk offers Encrypt… and no passphrase actions', async () => {
    const disk = { path: PATH, status: 'ready' as const, info: PLAIN(), error: null, refreshing: false };
    wrapper = mount(DiskView, { props: { disk }, global: { plugins: [pinia] } });
    await flushPromises();
    expect((wrapper.get('[data-testid="encrypt-button"]').element as HTMLButtonElement).disabled).toBe(false);
    expect(wrapper.find('[data-testid="passphrase-button"]').exists()).toBe(false);
    expect(wrapper.find('[data-testid="decrypt-button"]').exists()).toBe(false);
    expect(wrapper.find('[data-testid="disk-encrypted-tag"]').exists()).toBe(false);
    expect(cipherFor('no such cipher')).toEqual({ aesKeyBits: 256, mode: 'xts', ivGenerator: 'plain64' });
  });
});
