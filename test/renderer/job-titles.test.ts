/**
 * A job's title names its snapshot as the tree shows it: bytes that are not UTF-8 as \xHH, and
 * characters that hide or reorder text as \uXXXX (from the UI audit: a rename's new name and a
 * note's snapshot were printed raw in the jobs panel, "evil\u202eman" drawn reversed).
 */
import { createPinia, setActivePinia } from 'pinia';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { JobEnd } from '../../src/shared/ipc/contract.ts';
import type { SnapshotNode } from '../../src/shared/qcow2/model.ts';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import { useDiskActions } from '../../src/renderer/src/stores/disk-actions.ts';
import { useJobsStore } from '../../src/renderer/src/stores/jobs.ts';
import { useSnapshotActions } from '../../src/renderer/src/stores/snapshot-actions.ts';
import { fakeConnection } from './fixtures.ts';

const PATH = '/disks/names.qcow2';
const BIDI = 'evil\u202eman';
const NOT_UTF8 = 'lat\udce9n';

function snapshot(name: string): SnapshotNode {
  return { id: '1', name, parentId: null, parentInferred: false, date: '2026-12-01T10:00:00Z', vmClock: 0, vmStateSize: 0, exclusiveBytes: 0, sharedBytes: 0 };
}

beforeEach(() => {
  setActivePinia(createPinia());
  let jobs = 0;
  const connection = fakeConnection({
    'job.start': () => {
      const jobId = `job-${++jobs}`;
      // Every job fails at once: only its title is looked at.
      setTimeout(() => connection.emit('job.end', { jobId, ok: false, error: { code: 'IO_ERROR', message: 'stopped by the test' } } as JobEnd), 0);
      return { jobId };
    },
    'image.watch': () => null,
    'image.info': () => ({}),
  });
  replaceConnection(connection);
});

afterEach(() => replaceConnection(null));

function titles(): string[] {
  return useJobsStore().jobs.map((job) => job.title);
}

describe('job titles', () => {
  it('show a snapshot name escaped wherever one is named: take, rename (both names), note, save as', async () => {
    const actions = useSnapshotActions();
    await actions.take(PATH, BIDI).catch(() => undefined);
    await actions.rename(PATH, snapshot(BIDI), `${BIDI}X`).catch(() => undefined);
    await actions.setNote(PATH, snapshot(NOT_UTF8), 'a note').catch(() => undefined);
    await actions.setNote(PATH, snapshot(NOT_UTF8), '').catch(() => undefined);
    await useDiskActions().exportSnapshot(PATH, { name: BIDI, id: '1', date: '2026-12-01T10:00:00Z', target: '/disks/out.qcow2', format: 'qcow2' }).catch(() => undefined);
    const shown = titles();
    expect(shown).toHaveLength(5);
    for (const title of shown) {
      expect(title).not.toMatch(/[\u202e\udc80-\udcff]/);
    }
    expect(shown.some((title) => title.includes('“evil\\u202eman” to “evil\\u202emanX”'))).toBe(true);
    expect(shown.filter((title) => title.includes('“lat\\xe9n”'))).toHaveLength(2);
  });
});
