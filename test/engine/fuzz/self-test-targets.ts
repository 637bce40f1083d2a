/** Deliberately broken targets that prove the harness catches each kind of failure. */
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import type { FuzzTarget } from './targets.ts';

export const SELF_TEST_TARGETS: FuzzTarget[] = [
  { name: 'self-test:typed', run: () => { throw new Qcow2Error('CORRUPT', 'a typed failure'); } },
  { name: 'self-test:internal', run: () => { throw new Qcow2Error('INTERNAL', 'an invariant the file broke'); } },
  { name: 'self-test:raw', run: () => (null as unknown as { length: number }).length },
  { name: 'self-test:stack', run: function recurse(imagePath: string): unknown { return [recurse(imagePath)]; } },
  {
    name: 'self-test:hang',
    run: () => {
      for (;;) {
        // Spins like a loop over a cycle in the file would.
      }
    },
  },
  { name: 'self-test:allocate', run: () => new Uint8Array(2 ** 31).length },
  {
    name: 'self-test:swallowed-allocation',
    run: () => {
      try {
        return new Uint32Array(2 ** 30).length;
      } catch {
        throw new Qcow2Error('CORRUPT', 'the allocation failed, reported as corrupt');
      }
    },
  },
  {
    name: 'self-test:heap',
    run: () => {
      const hoard: number[][] = [];
      for (;;) hoard.push(new Array<number>(1024 * 1024).fill(1));
    },
  },
];
