/** The early comparison's queue of runs waiting for room in its ring (rewrite/run-queue.ts). */
import { describe, expect, it } from 'vitest';
import { RUN, RunQueue } from '../../../src/shared/qcow2/rewrite/run-queue.ts';

/** Every run in the queue, oldest first, as [source host, output host, clusters, tag, output end]. */
function contents(queue: RunQueue): number[][] {
  return Array.from({ length: queue.length }, (_, index) => [RUN.sourceHost, RUN.outputHost, RUN.clusters, RUN.tag, RUN.outputEnd].map((field) => queue.get(index, field)));
}

describe('the run queue', () => {
  it('gives runs back oldest first, across its wrap, with the fields they were pushed with', () => {
    const queue = new RunQueue(3);
    queue.push(0, 100, 1, 0, 101);
    queue.push(1, -2, 2, 0, 0);
    queue.shift();
    queue.push(2, 300, 1, 700, 1000);
    queue.push(3, 400, 4, 0, 404);
    expect(contents(queue)).toEqual([
      [1, -2, 2, 0, 0],
      [2, 300, 1, 700, 1000],
      [3, 400, 4, 0, 404],
    ]);
    queue.set(2, RUN.clusters, 5);
    expect(queue.get(2, RUN.clusters)).toBe(5);
  });

  it('drops its oldest run when full, and never holds more than it was made for', () => {
    const queue = new RunQueue(4);
    for (let run = 0; run < 10; run++) queue.push(run, run * 10, 1, 0, run * 10 + 1);
    expect(queue.length).toBe(4);
    expect(contents(queue).map(([source]) => source)).toEqual([6, 7, 8, 9]);
    for (let left = 4; left > 0; left--) queue.shift();
    queue.shift();
    expect(queue.length).toBe(0);
  });
});
