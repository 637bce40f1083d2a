/**
 * mutationPatches against applyMutations: written over the seed in order, the patches give the
 * mutated image byte for byte, including writes and copies that grow the image (up to the 1 MiB
 * limit), copies out of bytes an earlier patch wrote or from past the seed's end, and null for a
 * truncation (which needs the whole image).
 */
import { describe, expect, it } from 'vitest';
import { SeededRandom } from '../../helpers/seeded-random.ts';
import { applyMutations, mutationPatches, toHex, writtenOver, type Mutation, type Patch } from './patches.ts';

const SEED_BYTES = 4096;
const MiB = 1024 * 1024;

/** Somewhere in the seed, near its end, or past it (up to beyond the growth limit). */
function place(random: SeededRandom): number {
  const where = random.int(0, 16);
  if (where < 7) return random.int(0, SEED_BYTES);
  if (where < 11) return SEED_BYTES - random.int(0, 64);
  if (where < 15) return SEED_BYTES + random.int(0, 4096);
  return SEED_BYTES + MiB - random.int(0, 8192);
}

function randomPatch(random: SeededRandom): Patch {
  const kind = random.int(0, 3);
  if (kind === 0) return { op: 'write', at: place(random), hex: toHex(random.bytes(random.int(1, 9000))) };
  if (kind === 1) return { op: 'fill', at: place(random), length: random.int(1, 9000), hex: toHex(random.bytes(random.int(1, 5))) };
  return { op: 'copy', from: place(random), to: place(random), length: random.int(1, 9000) };
}

describe('mutationPatches', () => {
  it('gives, written over the seed in order, the image applyMutations makes: 600 seeded random cases of writes, fills and copies in and past the seed', () => {
    const random = new SeededRandom(2205);
    const seed = random.bytes(SEED_BYTES);
    let grown = 0;
    let capped = 0;
    for (let trial = 0; trial < 600; trial++) {
      const mutations: Mutation[] = Array.from({ length: random.int(1, 4) }, (_, index) => ({ label: `m${index}`, patches: Array.from({ length: random.int(1, 4) }, () => randomPatch(random)) }));
      const expected = applyMutations(seed, mutations);
      const patches = mutationPatches(seed, mutations);
      expect(patches, `trial ${trial}`).not.toBeNull();
      // Buffer.equals: a deep equality of 1 MiB arrays takes vitest a second.
      const written = Buffer.from(writtenOver(seed, patches ?? []));
      expect([written.length, written.equals(expected)], `trial ${trial}: ${JSON.stringify(mutations).slice(0, 300)}`).toEqual([expected.length, true]);
      if (expected.length > SEED_BYTES) grown++;
      if (expected.length === SEED_BYTES + MiB) capped++;
    }
    // The edges were reached: images that grew, and ones cut at the limit.
    expect(grown).toBeGreaterThan(150);
    expect(capped).toBeGreaterThan(10);
  });

  it('copies what an earlier patch of the same case wrote, not the seed below it', () => {
    const seed = new Uint8Array(64);
    const mutations: Mutation[] = [{ label: 'write then copy', patches: [{ op: 'write', at: 0, hex: 'aabbcc' }, { op: 'copy', from: 1, to: 10, length: 4 }] }];
    const patches = mutationPatches(seed, mutations) ?? [];
    expect(writtenOver(seed, patches).subarray(10, 14)).toEqual(new Uint8Array([0xbb, 0xcc, 0, 0]));
    expect(writtenOver(seed, patches)).toEqual(applyMutations(seed, mutations));
  });

  it('is null for a case that truncates', () => {
    expect(mutationPatches(new Uint8Array(64), [{ label: 'cut', patches: [{ op: 'write', at: 0, hex: '01' }, { op: 'truncate', size: 10 }] }])).toBeNull();
  });
});
