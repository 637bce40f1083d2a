/**
 * What a backing file named in a dialog looks like (useBackingFileLook, behind New Disk's and
 * Rebase's format warnings): a known file without a read, another read once the path stops
 * changing, a read an edit overtook dropped, and a file that is not qcow2 taken as raw.
 */
import { flushPromises, mount } from '@vue/test-utils';
import { createPinia, setActivePinia } from 'pinia';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { defineComponent, h, ref } from 'vue';
import type { JobEnd } from '../../src/shared/ipc/contract.ts';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import { BACKING_READ_DELAY_MS, useBackingFileLook, type BackingFileLook } from '../../src/renderer/src/composables/useBackingFileLook.ts';
import { fakeConnection, imageInfo } from './fixtures.ts';

/** Per path: the info job's reply (an info, or a failure's code). */
let replies: Map<string, { encrypted: boolean } | { code: string }>;
let reads: string[];

beforeEach(() => {
  vi.useFakeTimers();
  setActivePinia(createPinia());
  replies = new Map();
  reads = [];
  const connection = fakeConnection({
    'job.start': (request) => {
      const { kind, path } = request as { kind: string; path: string };
      reads.push(path);
      const jobId = `job-${reads.length}`;
      const reply = replies.get(path) ?? { code: 'NOT_FOUND' };
      const end: JobEnd = 'code' in reply ? { jobId, ok: false, error: { code: reply.code, message: reply.code } } as JobEnd : { jobId, ok: true, result: imageInfo({ filename: path, encrypted: reply.encrypted }) };
      expect(kind).toBe('image.info');
      setTimeout(() => connection.emit('job.end', end), 5);
      return { jobId };
    },
    'image.watch': () => null,
  });
  replaceConnection(connection);
});

afterEach(() => {
  vi.useRealTimers();
  replaceConnection(null);
});

function probe(known: (path: string) => BackingFileLook | undefined = () => undefined) {
  const path = ref('');
  let look!: ReturnType<typeof useBackingFileLook>;
  const wrapper = mount(defineComponent({ setup: () => { look = useBackingFileLook(path, 'Read the backing file', known); return () => h('div'); } }));
  return { path, look, unmount: () => wrapper.unmount() };
}

async function settle(ms = BACKING_READ_DELAY_MS + 50): Promise<void> {
  await vi.advanceTimersByTimeAsync(ms);
  await flushPromises();
}

describe('useBackingFileLook', () => {
  it('reads a qcow2 file once the path stops changing, and says whether it is encrypted', async () => {
    replies.set('/disks/secret.qcow2', { encrypted: true });
    const { path, look } = probe();
    path.value = '/disks/sec';
    await settle(100);
    path.value = '/disks/secret.qcow2';
    await settle();
    expect(reads).toEqual(['/disks/secret.qcow2']);
    expect(look.looksLike.value).toBe('qcow2');
    expect(look.encrypted.value).toBe(true);
  });

  it('takes a file that is not a qcow2 image (BAD_MAGIC) as raw; another failure says nothing', async () => {
    replies.set('/disks/golden.img', { code: 'BAD_MAGIC' });
    replies.set('/disks/locked.qcow2', { code: 'LOCKED' });
    const { path, look } = probe();
    path.value = '/disks/golden.img';
    await settle();
    expect(look.looksLike.value).toBe('raw');
    path.value = '/disks/locked.qcow2';
    await settle();
    expect(look.looksLike.value).toBeNull();
    expect(look.encrypted.value).toBe(false);
  });

  it('drops a read that an edit overtook', async () => {
    replies.set('/disks/a.qcow2', { encrypted: true });
    replies.set('/disks/b.img', { code: 'BAD_MAGIC' });
    const { path, look } = probe();
    path.value = '/disks/a.qcow2';
    await vi.advanceTimersByTimeAsync(BACKING_READ_DELAY_MS + 1);
    // The read of a.qcow2 has started; its answer comes after the path changed.
    path.value = '/disks/b.img';
    await settle();
    expect(reads).toEqual(['/disks/a.qcow2', '/disks/b.img']);
    expect(look.looksLike.value).toBe('raw');
    expect(look.encrypted.value).toBe(false);
  });

  it('reads nothing for a path typed just before the dialog closed, and takes no answer after', async () => {
    replies.set('/disks/late.qcow2', { encrypted: true });
    replies.set('/disks/started.qcow2', { encrypted: true });
    const closedEarly = probe();
    closedEarly.path.value = '/disks/late.qcow2';
    await settle(BACKING_READ_DELAY_MS / 2);
    closedEarly.unmount();
    await settle();
    expect(reads).toEqual([]);
    const closedReading = probe();
    closedReading.path.value = '/disks/started.qcow2';
    await vi.advanceTimersByTimeAsync(BACKING_READ_DELAY_MS + 1);
    closedReading.unmount();
    await settle();
    expect(reads).toEqual(['/disks/started.qcow2']);
    expect(closedReading.look.looksLike.value).toBeNull();
    expect(closedReading.look.encrypted.value).toBe(false);
  });

  it('takes a known file from what is known, and reads nothing for it or for a relative path', async () => {
    const { path, look } = probe((name) => (name === '/disks/open.qcow2' ? { format: 'qcow2', encrypted: true } : undefined));
    path.value = '  /disks/open.qcow2 ';
    await settle();
    expect(look.looksLike.value).toBe('qcow2');
    expect(look.encrypted.value).toBe(true);
    path.value = 'relative.qcow2';
    await settle();
    expect(look.looksLike.value).toBeNull();
    expect(reads).toEqual([]);
  });

  it('says a path names no file to build on: nothing there, or a folder (Rebase said so only once its job failed)', async () => {
    replies.set('/disks', { code: 'NOT_A_FILE' });
    const { path, look } = probe();
    path.value = '/disks/gone.qcow2';
    await settle();
    expect(look.unusable.value).toBe('There is no file at this path.');
    path.value = '/disks';
    await settle();
    expect(look.unusable.value).toBe('That is not a file.');
    replies.set('/disks/plain.qcow2', { encrypted: false });
    path.value = '/disks/plain.qcow2';
    await settle();
    expect(look.unusable.value).toBeNull();
  });
});
