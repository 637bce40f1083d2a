/**
 * Many requests at once, through the real request handle, job manager, per-image queue, worker
 * pool and engine (and bin/cowbell in processes of its own): one writer per image, readers that
 * only ever see whole changes, images independent of each other, and a dying worker that fails
 * its own job only. Ordering and overlap are read from the order of events, not from timings.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { jobSchemas, type JobEnd } from '../../src/shared/ipc/contract.ts';
import type { CheckResult, ImageInfo, SnapshotTree } from '../../src/shared/qcow2/model.ts';
import { runCowbell, runIntervals, startBackend, type Backend } from '../helpers/job-harness.ts';
import { qemuCheck, qemuImg, qemuInfo, qemuIo, tempDir, type TempDir } from '../helpers/qemu.ts';

let folder: TempDir;
let counter = 0;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

/** A 32 MiB disk with data in several L2 tables, so that each snapshot operation has some work to do. */
async function newImage(): Promise<string> {
  const image = folder.file(`disk-${counter++}.qcow2`);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', image, '32M']);
  await qemuIo(image, ['write -P 0x11 0 64k', 'write -P 0x12 3M 64k', 'write -P 0x13 9M 64k', 'write -P 0x14 20M 64k']);
  return image;
}

type Step =
  | { access: 'write'; kind: 'snapshot.create' | 'snapshot.delete' | 'snapshot.apply'; args: { name: string } }
  | { access: 'write'; kind: 'snapshot.rename'; args: { name: string; newName: string } }
  | { access: 'read'; kind: 'snapshot.tree' | 'image.check' | 'image.usage' | 'image.info'; args: Record<string, never> };

const write = (kind: 'snapshot.create' | 'snapshot.delete' | 'snapshot.apply', name: string): Step => ({ access: 'write', kind, args: { name } });
const read = (kind: 'snapshot.tree' | 'image.check' | 'image.usage' | 'image.info'): Step => ({ access: 'read', kind, args: {} });

/** Rounds of creates, a delete, a rename and an apply, with reads between them; and the snapshot names after each write. */
function stream(rounds: number, prefix: string): { steps: Step[]; namesAfter: string[][] } {
  const steps: Step[] = [];
  const namesAfter: string[][] = [[]];
  let names: string[] = [];
  const changed = (next: string[]): void => {
    names = next;
    namesAfter.push(names);
  };
  for (let round = 0; round < rounds; round++) {
    const a = `${prefix}${round}-a`;
    const b = `${prefix}${round}-b`;
    const c = `${prefix}${round}-c`;
    steps.push(write('snapshot.create', a), read('snapshot.tree'), read('image.check'));
    changed([...names, a]);
    steps.push(write('snapshot.create', b), read('image.info'), read('image.usage'));
    changed([...names, b]);
    steps.push(write('snapshot.delete', a), read('snapshot.tree'), read('image.check'));
    changed(names.filter((name) => name !== a));
    steps.push({ access: 'write', kind: 'snapshot.rename', args: { name: b, newName: c } }, read('snapshot.tree'));
    changed(names.map((name) => (name === b ? c : name)));
    steps.push(write('snapshot.apply', c), read('snapshot.tree'), read('image.check'));
    changed([...names]);
  }
  return { steps, namesAfter };
}

function namesIn(step: Step, end: JobEnd): string[] | null {
  if (!end.ok) return null;
  if (step.kind === 'snapshot.tree') return (end.result as SnapshotTree).snapshots.map((node) => node.name);
  if (step.kind === 'image.info') return ((end.result as ImageInfo).snapshots ?? []).map((snapshot) => snapshot.name);
  return null;
}

function expectCleanCheck(end: JobEnd, where: string): void {
  expect(end.ok, where).toBe(true);
  const result = (end as { result: CheckResult }).result;
  expect({ where, corruptions: result.corruptions ?? 0, leaks: result.leaks ?? 0, errors: result['check-errors'], messages: result.messages }).toEqual({ where, corruptions: 0, leaks: 0, errors: 0, messages: [] });
}

describe('requests from the UI on one image', () => {
  let backend: Backend;
  beforeAll(() => {
    backend = startBackend({ maxThreads: 2 });
  });
  afterAll(() => backend.close());

  it('run in the order they came, one writer at a time; every read sees the table after a whole change', async () => {
    const image = await newImage();
    const { steps, namesAfter } = stream(5, 'ui');
    // All requests leave before any answer comes back.
    const ids = await Promise.all(steps.map((step) => backend.start(step.kind, image, step.args)));
    const ends = await Promise.all(ids.map((id) => backend.ended(id)));

    let writes = 0;
    steps.forEach((step, index) => {
      const end = ends[index] as JobEnd;
      const where = `request ${index} (${step.kind} ${JSON.stringify(step.args)})`;
      expect(end.ok ? null : end.error, where).toBeNull();
      if (step.access === 'write') writes++;
      const names = namesIn(step, end);
      if (names !== null) expect(names, where).toEqual(namesAfter[writes]);
      if (step.kind === 'image.check') expectCleanCheck(end, where);
    });

    // The pool saw the jobs in the order they were asked for; a writer never overlapped anything.
    const log = backend.pool.log.filter((event) => event.path === image);
    const intervals = [...runIntervals(log).values()];
    expect(intervals.map((interval) => interval.kind)).toEqual(steps.map((step) => step.kind));
    intervals.forEach((interval, index) => {
      if (steps[index]?.access !== 'write') return;
      const overlapping = intervals.filter((other) => other !== interval && other.start < interval.end && interval.start < other.end);
      expect(overlapping, `write ${index}`).toEqual([]);
    });
    // Readers granted together ran together: each read right after another read started before that one ended.
    const readPairs = steps.flatMap((step, index) => (index > 0 && step.access === 'read' && steps[index - 1]?.access === 'read' ? [index] : []));
    expect(readPairs.length).toBeGreaterThan(5);
    for (const index of readPairs) expect((intervals[index]?.start ?? 0) < (intervals[index - 1]?.end ?? 0), `read ${index}`).toBe(true);

    expect((await qemuCheck(image)).code).toBe(0);
    expect((await qemuInfo(image)).snapshots?.map((snapshot) => snapshot.name)).toEqual(namesAfter.at(-1));
  }, 60_000);

  it('image.open answers with a whole table while changes stream past it', async () => {
    const image = await newImage();
    const { steps, namesAfter } = stream(3, 'open');
    const writes = steps.filter((step) => step.access === 'write');
    const ids = await Promise.all(writes.map((step) => backend.start(step.kind, image, step.args)));
    const opens = await Promise.all(Array.from({ length: 12 }, () => backend.handle('image.open', { path: image })));
    await Promise.all(ids.map((id) => backend.ended(id)));
    const states = namesAfter.map((names) => JSON.stringify(names));
    for (const reply of opens) {
      expect(reply.ok).toBe(true);
      const names = ((reply as { value: ImageInfo }).value.snapshots ?? []).map((snapshot) => snapshot.name);
      expect(states).toContain(JSON.stringify(names));
    }
  }, 60_000);
});

describe('requests on different images', () => {
  let backend: Backend;
  beforeAll(() => {
    backend = startBackend({ maxThreads: 2 });
  });
  afterAll(() => backend.close());

  it('run in parallel: a writer on one image starts while a writer on another has not finished', async () => {
    const first = await newImage();
    const second = await newImage();
    // The first write does not reach its worker until the second has started: a queue that
    // serialized the two images would never let that happen, and the test would time out.
    let secondStarted = (): void => {};
    const started = new Promise<void>((resolve) => (secondStarted = resolve));
    backend.pool.beforeRun = async (_kind, path) => {
      if (path === second) secondStarted();
      else await started;
    };
    try {
      const a = await backend.start('snapshot.create', first, { name: 'a' });
      const b = await backend.start('snapshot.create', second, { name: 'b' });
      expect((await backend.ended(a)).ok).toBe(true);
      expect((await backend.ended(b)).ok).toBe(true);
    } finally {
      backend.pool.beforeRun = undefined;
    }
    const intervals = [...runIntervals(backend.pool.log).values()].filter((interval) => interval.kind === 'snapshot.create');
    const [onFirst, onSecond] = [intervals.find((interval) => interval.path === first), intervals.find((interval) => interval.path === second)];
    expect(onFirst !== undefined && onSecond !== undefined && onFirst.start < onSecond.end && onSecond.start < onFirst.end).toBe(true);
    expect((await qemuInfo(first)).snapshots?.map((snapshot) => snapshot.name)).toEqual(['a']);
    expect((await qemuInfo(second)).snapshots?.map((snapshot) => snapshot.name)).toEqual(['b']);
  }, 60_000);
});

describe('the UI and the command line at once', () => {
  let backend: Backend;
  beforeAll(() => {
    backend = startBackend({ maxThreads: 2 });
  });
  afterAll(() => backend.close());

  it('bin/cowbell waits for the UI\'s changes and the UI for its: every check clean, every list a whole table', async () => {
    const image = await newImage();
    const { steps, namesAfter } = stream(3, 'ui');
    const cliNames = ['cli-0', 'cli-1', 'cli-2'];
    const cli = Promise.all([
      ...cliNames.map((name) => runCowbell(['snapshot', 'create', image, name])),
      runCowbell(['check', image]),
      runCowbell(['snapshot', 'list', '--json', image]),
      runCowbell(['check', image]),
    ]);
    const ids = [];
    for (const step of steps) ids.push(await backend.start(step.kind, image, step.args));
    const ends = await Promise.all(ids.map((id) => backend.ended(id)));
    const runs = await cli;

    for (const [index, run] of runs.entries()) expect({ index, code: run.code, stderr: run.stderr }).toEqual({ index, code: 0, stderr: '' });
    for (const checkRun of [runs[3], runs[5]]) expect(checkRun?.stdout).toContain('No errors were found');
    const listed = (JSON.parse(runs[4]?.stdout ?? '{}') as SnapshotTree).snapshots.map((node) => node.name);
    const uiStates = namesAfter.map((names) => JSON.stringify(names));
    expect(uiStates).toContain(JSON.stringify(listed.filter((name) => !cliNames.includes(name))));

    // The UI's reads see its own changes in order, and the command line's snapshots whole (never taken back).
    let writes = 0;
    let cliSeen = 0;
    steps.forEach((step, index) => {
      const end = ends[index] as JobEnd;
      const where = `request ${index} (${step.kind})`;
      expect(end.ok ? null : end.error, where).toBeNull();
      if (step.access === 'write') writes++;
      const names = namesIn(step, end);
      if (names !== null) {
        expect(names.filter((name) => !cliNames.includes(name)), where).toEqual(namesAfter[writes]);
        const seen = names.filter((name) => cliNames.includes(name)).length;
        expect(seen, where).toBeGreaterThanOrEqual(cliSeen);
        cliSeen = seen;
      }
      if (step.kind === 'image.check') expectCleanCheck(end, where);
    });
    expect((await qemuCheck(image)).code).toBe(0);
    const final = (await qemuInfo(image)).snapshots?.map((snapshot) => snapshot.name) ?? [];
    expect(final.filter((name) => !cliNames.includes(name))).toEqual(namesAfter.at(-1));
    expect(final.filter((name) => cliNames.includes(name)).sort()).toEqual(cliNames);
  }, 60_000);
});

describe('a worker that dies', () => {
  const specs = {
    ...jobSchemas,
    'test.dieHolding': { access: 'write' as const, args: z.object({ how: z.enum(['exit', 'throw']) }).strict() },
  };
  let backend: Backend;
  beforeAll(() => {
    backend = startBackend({ workerFile: fileURLToPath(new URL('./fixtures/engine-worker.ts', import.meta.url)), maxThreads: 2, specs });
  });
  afterAll(() => backend.close());

  it.each(['exit', 'throw'] as const)('(%s, holding an image open for writing) fails only its own job; the image is free again and the pool goes on', async (how) => {
    const image = await newImage();
    const other = await newImage();
    const neighbour = await backend.start('image.usage', other, {});
    const dying = await backend.start('test.dieHolding', image, { how });
    const next = await backend.start('snapshot.create', image, { name: 'after' });
    const reading = await backend.start('snapshot.tree', image, {});

    const died = await backend.ended(dying);
    expect(died.ok).toBe(false);
    expect((died as { error: { code: string; message: string } }).error).toMatchObject({ code: 'INTERNAL', message: expect.stringMatching(/stopped unexpectedly/) });
    // Its image locks went with its thread: the next writer got in.
    expect(await backend.ended(next)).toMatchObject({ ok: true, result: { name: 'after' } });
    expect(((await backend.ended(reading)) as { result: SnapshotTree }).result.snapshots.map((node) => node.name)).toEqual(['after']);
    expect((await backend.ended(neighbour)).ok).toBe(true);

    const check = await qemuCheck(image);
    expect(check.report?.corruptions ?? 0, check.output).toBe(0);
    // The pool still works.
    const again = await backend.start('image.check', image, {});
    expect((await backend.ended(again)).ok).toBe(true);
  }, 60_000);
});
