/**
 * Encrypt, decrypt, change passphrase and compact of an encrypted disk as the page asks for them:
 * arguments checked against the contract, passphrases kept out of every message, event and log
 * line, the jobs queued as writers of the disk; then the real request handle, job manager, queue,
 * worker pool and engine on disks qemu-img makes, judged by qemu-img and qemu-io with the secret.
 */
import { MessageChannel } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { jobSchemas, type JobEnd, type JobProgress, type PassphraseChange, type RewriteSummary } from '../../src/shared/ipc/contract.ts';
import { scrubSecrets, secretsIn } from '../../src/shared/ipc/secrets.ts';
import { Qcow2Error } from '../../src/shared/qcow2/errors.ts';
import { createJobManager } from '../../src/main/jobs.ts';
import type { JobPool } from '../../src/main/pool.ts';
import { createJobRunner } from '../../src/main/worker/job-runner.ts';
import type { WorkerOutcome } from '../../src/main/worker/protocol.ts';
import { withSecretBytes } from '../../src/main/worker/secret-bytes.ts';
import { fileHash } from '../helpers/image-locks.ts';
import { runIntervals, startBackend, type Backend } from '../helpers/job-harness.ts';
import { tempDir, type TempDir } from '../helpers/qemu.ts';
import {
  encryptedStateDigests,
  fileContains,
  guestBytes,
  makeEncryptedSnapshottedDisk,
  qemuCheckEncrypted,
  qemuEncryptFormat,
  qemuOpensWith,
} from '../helpers/encrypted-disks.ts';
import { allStateDigests, makeSnapshottedDisk, MiB, qemuCheckReport, qemuSnapshotNames, temporaryFilesIn } from '../helpers/rewrite-disks.ts';

const OLD = 'correct horse battery staple';
const NEW = 'Tr0ub4dor&3 is not a passphrase';
const THIRD = 'a third one for the spare slot';
const WRONG = 'not the passphrase at all';
const ALL_SECRETS = [OLD, NEW, THIRD, WRONG];
// Key slots cheap to open: the app lets a user choose no less.
const ITER_TIME_MS = 100;

let folder: TempDir;
let counter = 0;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

function resultOf<T>(end: JobEnd): T {
  if (!end.ok) throw new Error(`the job failed: ${end.error.code} ${end.error.message}`);
  return end.result as T;
}

function errorOf(end: JobEnd): { code: string; message: string } {
  if (end.ok) throw new Error('the job succeeded');
  return end.error;
}

function mentionsASecret(text: string): string | null {
  return ALL_SECRETS.find((secret) => text.includes(secret)) ?? null;
}

describe('the contract for encryption', () => {
  it('accepts what the dialogs send and refuses anything else', () => {
    const cipher = { aesKeyBits: 256, mode: 'xts', ivGenerator: 'plain64' };
    const accepted: [keyof typeof jobSchemas, unknown][] = [
      ['image.encrypt', { newPassphrase: NEW }],
      ['image.encrypt', { newPassphrase: NEW, cipher, hash: 'sha512', iterTimeMs: 2000 }],
      ['image.encrypt', { newPassphrase: NEW, cipher: { aesKeyBits: 128, mode: 'cbc', ivGenerator: 'essiv', ivHash: 'sha256' } }],
      ['image.encrypt', { newPassphrase: NEW, passphrase: OLD }],
      ['image.encrypt', { newPassphrase: NEW, from: 'plain' }],
      ['image.encrypt', { newPassphrase: NEW, passphrase: OLD, from: 'aes' }],
      ['image.decrypt', { passphrase: OLD }],
      ['image.passphrase', { passphrase: OLD, action: 'change', newPassphrase: NEW }],
      ['image.passphrase', { passphrase: OLD, action: 'add', newPassphrase: NEW, iterTimeMs: 500 }],
      ['image.passphrase', { passphrase: OLD, action: 'remove' }],
      ['image.compact', { passphrase: OLD }],
      ['image.compact', { uncompress: true, passphrase: 'ü 中文 🔑' }],
    ];
    const refused: [keyof typeof jobSchemas, unknown][] = [
      ['image.encrypt', {}],
      ['image.encrypt', { newPassphrase: '' }],
      ['image.encrypt', { newPassphrase: 'a\0b' }],
      ['image.encrypt', { newPassphrase: 'x'.repeat(1025) }],
      ['image.encrypt', { newPassphrase: 42 }],
      ['image.encrypt', { newPassphrase: NEW, cipher: { ...cipher, aesKeyBits: 512 } }],
      ['image.encrypt', { newPassphrase: NEW, cipher: { ...cipher, mode: 'ecb' } }],
      ['image.encrypt', { newPassphrase: NEW, cipher: { ...cipher, ivHash: 'sha256' } }],
      ['image.encrypt', { newPassphrase: NEW, hash: 'md5' }],
      ['image.encrypt', { newPassphrase: NEW, iterTimeMs: 1 }],
      ['image.encrypt', { newPassphrase: NEW, iterTimeMs: 600_000 }],
      ['image.encrypt', { newPassphrase: NEW, target: '/elsewhere.qcow2' }],
      ['image.encrypt', { newPassphrase: NEW, from: 'luks' }],
      ['image.decrypt', {}],
      ['image.decrypt', { passphrase: '' }],
      ['image.passphrase', { passphrase: OLD, action: 'change' }],
      ['image.passphrase', { passphrase: OLD, action: 'add' }],
      ['image.passphrase', { passphrase: OLD, action: 'remove', newPassphrase: NEW }],
      ['image.passphrase', { passphrase: OLD, action: 'wipe' }],
      ['image.passphrase', { action: 'change', newPassphrase: NEW }],
      ['image.passphrase', { passphrase: OLD, action: 'remove', slot: 0 }],
      ['image.compact', { passphrase: '' }],
    ];
    for (const [kind, args] of accepted) expect(jobSchemas[kind].args.safeParse(args).success, `${kind} ${JSON.stringify(args)}`).toBe(true);
    for (const [kind, args] of refused) expect(jobSchemas[kind].args.safeParse(args).success, `${kind} ${JSON.stringify(args)}`).toBe(false);
  });

  it('queues encrypt, decrypt and passphrase changes as writers of the disk', () => {
    expect(jobSchemas['image.encrypt'].access).toBe('write');
    expect(jobSchemas['image.decrypt'].access).toBe('write');
    expect(jobSchemas['image.passphrase'].access).toBe('write');
  });

  it('finds the passphrases in a job’s arguments, valid or not, and scrubs them from text', () => {
    expect(secretsIn({ passphrase: 'ab', newPassphrase: 'abc', name: 'not a secret' })).toEqual(['abc', 'ab']);
    expect(secretsIn({ passphrase: 7, newPassphrase: '' })).toEqual([]);
    expect(secretsIn(null)).toEqual([]);
    expect(secretsIn('passphrase')).toEqual([]);
    // Passphrases of encrypted volumes inside the guest (files jobs), valid entries or not.
    expect(secretsIn({ passphrase: 'disk secret', volumePassphrases: [{ uuid: 'u1', passphrase: 'volume one' }, { passphrase: 'no uuid given' }, { uuid: 'u3' }, 'x', null] })).toEqual(['no uuid given', 'disk secret', 'volume one']);
    expect(secretsIn({ volumePassphrases: 'not a list' })).toEqual([]);
    expect(scrubSecrets('moo-cow-pass then moo-cow-pas then moo-cow-passs', ['moo-cow-pass', 'moo-cow-pas'])).toBe('[passphrase] then [passphrase] then [passphrase]s');
    // Scrubbing again (main does, on the way out) leaves the placeholders whole, whatever the secret.
    const secrets = ['[passphrase]x', 'passphrase', 'ssphrase]'];
    const once = scrubSecrets('passphrase: passphrase', secrets);
    expect(once).toBe('[passphrase]: [passphrase]');
    expect(scrubSecrets(once, secrets)).toBe(once);
    // A short passphrase is too common a string to hide: marking where "a" stands would spell it out.
    expect(scrubSecrets('Invalid passphrase', ['a'])).toBe('Invalid passphrase');
    expect(scrubSecrets('Invalid passphrase', ['phrase'])).toBe('Invalid passphrase');
  });
});

describe('passphrases never leave a job in words', () => {
  it('refusing arguments does not repeat the passphrase, whatever the schema found wrong', async () => {
    const backend = startBackend({ maxThreads: 1 });
    try {
      const path = makeSnapshottedDisk(folder.path, `refused-${counter++}.qcow2`, 1).path;
      const attempts: unknown[] = [
        { kind: 'image.encrypt', path, args: { newPassphrase: `${NEW}\0` } },
        { kind: 'image.encrypt', path, args: { newPassphrase: NEW, passphrase: OLD, unknownKey: OLD } },
        { kind: 'image.passphrase', path, args: { passphrase: OLD, action: 'remove', newPassphrase: NEW } },
        { kind: 'image.decrypt', path, args: { passphrase: OLD.repeat(100) } },
        { kind: 'image.decrypt', path: `${path}.missing`, args: { passphrase: OLD } },
        { kind: 'image.decrypt', path: 'relative.qcow2', args: { passphrase: OLD } },
      ];
      for (const attempt of attempts) {
        const reply = await backend.handle('job.start', attempt);
        expect(reply.ok, JSON.stringify(reply)).toBe(false);
        expect(mentionsASecret(JSON.stringify(reply)), JSON.stringify(reply)).toBeNull();
      }
    } finally {
      await backend.close();
    }
  });

  it('a worker’s error that names a passphrase comes back scrubbed, from the worker and again from main', async () => {
    const runJob = createJobRunner({
      'test.leak': (_path: string, args: { passphrase: string; newPassphrase: string }) => {
        throw new Error(`could not use ${args.passphrase} or ${args.newPassphrase}`);
      },
    });
    const { port1, port2 } = new MessageChannel();
    const outcome: WorkerOutcome = await runJob({ kind: 'test.leak', path: '/x', args: { passphrase: OLD, newPassphrase: NEW }, progressPort: port2, cancelFlag: new Int32Array(new SharedArrayBuffer(4)) });
    port1.close();
    expect(outcome).toEqual({ ok: false, error: { code: 'INTERNAL', message: 'Internal error in Cowbell: could not use [passphrase] or [passphrase]' } });

    const leakyPool: JobPool = {
      run: async (_kind, _path, args) => {
        throw new Qcow2Error('CORRUPT', `the slot for ${(args as { passphrase: string }).passphrase} is damaged`);
      },
      close: async () => undefined,
    };
    const ends: JobEnd[] = [];
    const jobs = createJobManager({
      pool: leakyPool,
      emit: (event, payload) => event === 'job.end' && ends.push(payload as JobEnd),
      specs: { 'test.leak': { access: 'write', args: z.object({ passphrase: z.string() }).strict() } },
    });
    jobs.start('test.leak', folder.path, { passphrase: OLD });
    await vi.waitFor(() => expect(ends).toHaveLength(1));
    expect(ends[0]).toMatchObject({ ok: false, error: { code: 'CORRUPT', message: 'the slot for [passphrase] is damaged' } });
    await expect(jobs.run('test.leak', folder.path, { passphrase: OLD })).rejects.toThrow('the slot for [passphrase] is damaged');
  });

  it('the worker hands the engine byte copies of the passphrases and zeroes them however the call ends', () => {
    let kept: Uint8Array[] = [];
    const result = withSecretBytes([OLD, undefined], (secrets) => {
      kept = secrets.filter((secret): secret is Uint8Array => secret !== undefined);
      expect(Buffer.from(secrets[0]).toString('utf8')).toBe(OLD);
      expect(secrets[1]).toBeUndefined();
      return 'done';
    });
    expect(result).toBe('done');
    expect(kept[0]?.every((byte) => byte === 0)).toBe(true);
    expect(() =>
      withSecretBytes([NEW], (secrets) => {
        kept = [secrets[0]];
        throw new Qcow2Error('BAD_PASSPHRASE', 'no slot opens');
      }),
    ).toThrow('no slot opens');
    expect(kept[0]?.length).toBe(Buffer.byteLength(NEW));
    expect(kept[0]?.every((byte) => byte === 0)).toBe(true);
  });
});

describe('encryption jobs, through the queue and the pool', () => {
  let backend: Backend;
  const printed: string[] = [];
  const restore: (() => void)[] = [];

  beforeAll(() => {
    backend = startBackend({ maxThreads: 2 });
    // Everything main and its workers print while these jobs run (a worker's console reaches this process's streams).
    for (const method of ['log', 'info', 'warn', 'error', 'debug'] as const) {
      const spy = vi.spyOn(console, method).mockImplementation((...parts: unknown[]) => {
        printed.push(parts.map(String).join(' '));
      });
      restore.push(() => spy.mockRestore());
    }
    for (const stream of [process.stdout, process.stderr]) {
      const write = stream.write.bind(stream);
      stream.write = ((chunk: unknown, ...rest: unknown[]) => {
        printed.push(String(chunk));
        return (write as (...args: unknown[]) => boolean)(chunk, ...rest);
      }) as typeof stream.write;
      restore.push(() => {
        stream.write = write;
      });
    }
  });

  afterAll(async () => {
    await backend.close();
    for (const undo of restore) undo();
  });

  async function run<T>(kind: string, path: string, args: unknown): Promise<T> {
    return resultOf<T>(await backend.ended(await backend.start(kind, path, args)));
  }

  async function failure(kind: string, path: string, args: unknown): Promise<{ code: string; message: string }> {
    return errorOf(await backend.ended(await backend.start(kind, path, args)));
  }

  function stagesOf(jobId: string): string[] {
    return backend.events.filter((entry) => entry.event === 'job.progress' && (entry.payload as JobProgress).jobId === jobId).map((entry) => (entry.payload as JobProgress).stage);
  }

  it('encrypts a disk with 2 snapshots: qemu-img reads every state with the passphrase, check is clean, and the file holds none of the plaintext', async () => {
    const { path, snapshots } = makeSnapshottedDisk(folder.path, `plain-${counter++}.qcow2`, 4);
    const before = allStateDigests(path);
    // Random letters every state shares: stored plainly in the file now.
    const sample = guestBytes(path, 2 * MiB, 4096);
    expect(fileContains(path, sample)).toBe(true);

    const jobId = await backend.start('image.encrypt', path, { newPassphrase: NEW, iterTimeMs: ITER_TIME_MS });
    const summary = resultOf<RewriteSummary>(await backend.ended(jobId));
    expect(summary).toMatchObject({ snapshots: 2, verified: true, encryption: 'luks', compressedClusters: 0 });
    expect(stagesOf(jobId)).toEqual(expect.arrayContaining(['making the new key', 'copying', 'verifying']));

    expect(qemuEncryptFormat(path)).toBe('luks');
    expect(qemuSnapshotNames(path)).toEqual(snapshots);
    expect(encryptedStateDigests(path, NEW)).toEqual(before);
    expect(qemuCheckEncrypted(path, NEW).code).toBe(0);
    expect(qemuOpensWith(path, WRONG)).toBe(false);
    expect(fileContains(path, sample)).toBe(false);
    expect(temporaryFilesIn(folder.path)).toEqual([]);
  }, 120_000);

  it('compacts an encrypted disk only with its passphrase: LOCKED without, BAD_PASSPHRASE with a wrong one (the file byte for byte as it was), then every state the same', async () => {
    const { path, snapshots } = await makeEncryptedSnapshottedDisk(folder.path, `luks-${counter++}.qcow2`, OLD);
    const before = encryptedStateDigests(path, OLD);
    const hashBefore = fileHash(path);

    expect((await failure('image.compact', path, {})).code).toBe('LOCKED');
    const wrong = await failure('image.compact', path, { passphrase: WRONG });
    expect(wrong.code).toBe('BAD_PASSPHRASE');
    expect(fileHash(path)).toBe(hashBefore);

    const jobId = await backend.start('image.compact', path, { passphrase: OLD });
    const summary = resultOf<RewriteSummary>(await backend.ended(jobId));
    expect(summary).toMatchObject({ snapshots: 2, verified: true, encryption: 'luks' });
    // Unlocking (PBKDF2) is reported as its own stage before the copy.
    const stages = stagesOf(jobId);
    expect(stages).toContain('Trying key slots');
    expect(stages.indexOf('Trying key slots')).toBeLessThan(stages.indexOf('copying'));
    expect(qemuSnapshotNames(path)).toEqual(snapshots);
    expect(encryptedStateDigests(path, OLD)).toEqual(before);
    expect(qemuCheckEncrypted(path, OLD).code).toBe(0);
  }, 120_000);

  it('an Encrypt… asked of a plain disk that another window has encrypted since is refused, the file unchanged (not encrypted afresh)', async () => {
    const { path } = await makeEncryptedSnapshottedDisk(folder.path, `luks-${counter++}.qcow2`, OLD, 1);
    const hashBefore = fileHash(path);
    const refused = await failure('image.encrypt', path, { newPassphrase: NEW, passphrase: OLD, from: 'plain', iterTimeMs: ITER_TIME_MS });
    expect(refused.code).toBe('INVALID_ARGUMENT');
    expect(refused.message).toMatch(/has changed since .* encrypted with LUKS now/);
    expect(fileHash(path)).toBe(hashBefore);
    expect(qemuOpensWith(path, OLD)).toBe(true);
    expect(temporaryFilesIn(folder.path)).toEqual([]);
  }, 120_000);

  it('never compresses an encrypted disk (refused before any passphrase is asked for) and writes nothing', async () => {
    const { path } = await makeEncryptedSnapshottedDisk(folder.path, `luks-${counter++}.qcow2`, OLD, 1);
    const hashBefore = fileHash(path);
    expect(jobSchemas['image.compress'].args.safeParse({ passphrase: OLD }).success).toBe(false);
    // QEMU would store compressed clusters of an encrypted disk unencrypted: it is never done.
    expect((await failure('image.compress', path, {})).code).toBe('INVALID_ARGUMENT');
    expect(fileHash(path)).toBe(hashBefore);
    expect(temporaryFilesIn(folder.path)).toEqual([]);
  }, 120_000);

  it('changes the passphrase in place: qemu-io opens with the new one, not the old; adds one; removes one but never the last', async () => {
    const { path } = await makeEncryptedSnapshottedDisk(folder.path, `luks-${counter++}.qcow2`, OLD, 1);
    const before = encryptedStateDigests(path, OLD);

    const wrongHash = fileHash(path);
    expect((await failure('image.passphrase', path, { passphrase: WRONG, action: 'change', newPassphrase: NEW })).code).toBe('BAD_PASSPHRASE');
    expect(fileHash(path)).toBe(wrongHash);

    const changed = await run<PassphraseChange>('image.passphrase', path, { passphrase: OLD, action: 'change', newPassphrase: NEW, iterTimeMs: ITER_TIME_MS });
    expect(changed.removed).toEqual([0]);
    expect(changed.activeSlots).toEqual([changed.added]);
    expect(qemuOpensWith(path, NEW)).toBe(true);
    expect(qemuOpensWith(path, OLD)).toBe(false);
    expect(encryptedStateDigests(path, NEW)).toEqual(before);

    const added = await run<PassphraseChange>('image.passphrase', path, { passphrase: NEW, action: 'add', newPassphrase: THIRD, iterTimeMs: ITER_TIME_MS });
    expect(added.activeSlots).toHaveLength(2);
    expect(qemuOpensWith(path, NEW)).toBe(true);
    expect(qemuOpensWith(path, THIRD)).toBe(true);

    const removed = await run<PassphraseChange>('image.passphrase', path, { passphrase: NEW, action: 'remove' });
    expect(removed.activeSlots).toEqual([added.added]);
    expect(qemuOpensWith(path, NEW)).toBe(false);
    expect(qemuOpensWith(path, THIRD)).toBe(true);

    const lastHash = fileHash(path);
    const last = await failure('image.passphrase', path, { passphrase: THIRD, action: 'remove' });
    expect(last.code).toBe('INVALID_ARGUMENT');
    expect(last.message).toMatch(/last key slot/);
    expect(fileHash(path)).toBe(lastHash);
    expect(qemuCheckEncrypted(path, THIRD).code).toBe(0);
  }, 120_000);

  it('decrypts only with the right passphrase: a wrong one leaves the file byte for byte as it was; then qemu-img reads every state without a secret', async () => {
    const { path, snapshots } = await makeEncryptedSnapshottedDisk(folder.path, `luks-${counter++}.qcow2`, OLD);
    const before = encryptedStateDigests(path, OLD);
    const hashBefore = fileHash(path);
    expect((await failure('image.decrypt', path, { passphrase: WRONG })).code).toBe('BAD_PASSPHRASE');
    expect(fileHash(path)).toBe(hashBefore);
    expect(temporaryFilesIn(folder.path)).toEqual([]);

    const summary = await run<RewriteSummary>('image.decrypt', path, { passphrase: OLD });
    expect(summary).toMatchObject({ snapshots: 2, verified: true, encryption: 'none' });
    expect(qemuEncryptFormat(path)).toBeNull();
    expect(qemuSnapshotNames(path)).toEqual(snapshots);
    expect(allStateDigests(path)).toEqual(before);
    expect(qemuCheckReport(path)).toMatchObject({ code: 0, corruptions: 0, leaks: 0 });
  }, 120_000);

  it('runs an encryption job as the disk’s only job, between the reads asked before and after it', async () => {
    const { path } = makeSnapshottedDisk(folder.path, `queued-${counter++}.qcow2`, 2);
    const steps = [
      { kind: 'snapshot.tree', args: {} },
      { kind: 'image.encrypt', args: { newPassphrase: NEW, iterTimeMs: ITER_TIME_MS } },
      { kind: 'image.usage', args: {} },
      { kind: 'image.passphrase', args: { passphrase: NEW, action: 'add', newPassphrase: THIRD, iterTimeMs: ITER_TIME_MS } },
      { kind: 'snapshot.tree', args: {} },
    ];
    const logStart = backend.pool.log.length;
    const ids = await Promise.all(steps.map((step) => backend.start(step.kind, path, step.args)));
    for (const end of await Promise.all(ids.map((id) => backend.ended(id)))) expect(end.ok ? null : end.error).toBeNull();
    const intervals = [...runIntervals(backend.pool.log.slice(logStart)).values()].filter((interval) => interval.path === path);
    expect(intervals.map((interval) => interval.kind)).toEqual(steps.map((step) => step.kind));
    for (const writer of intervals.filter((interval) => interval.kind.startsWith('image.') && interval.kind !== 'image.usage')) {
      expect(intervals.filter((other) => other !== writer && other.start < writer.end && writer.start < other.end)).toEqual([]);
    }
  }, 120_000);

  it('no passphrase appeared in any event sent to the page, nor in anything main or a worker printed', () => {
    const events = JSON.stringify(backend.events);
    expect(events).toContain('BAD_PASSPHRASE');
    expect(mentionsASecret(events)).toBeNull();
    expect(mentionsASecret(printed.join('\n'))).toBeNull();
  });
});
