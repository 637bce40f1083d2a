/**
 * Check, step 2: compare the stored refcount of every cluster of the file with the count the
 * scan found. Stored below expected is a corruption (a write could free or overwrite a cluster in
 * use); stored above expected is a leak (space wasted, data safe). Each refcount block is read once.
 */
import { ROLE_REFCOUNT_BLOCK, ROLE_REFCOUNT_TABLE } from './expected.ts';
import type { CheckFindings } from './findings.ts';
import { needRebuild, type ReferenceScan } from './scan.ts';
import type { JobContext } from '../job-context.ts';

export interface Comparison {
  /** The last cluster with a stored or expected refcount (image-end-offset is the end of it). */
  highestCluster: number;
  /** Clusters whose refcount is too low, or too high, in a block that can be written in place. */
  tooLow: number;
  tooHigh: number;
}

export function compareRefcounts(scan: ReferenceScan, findings: CheckFindings, job: JobContext): Comparison {
  const { expected, stored } = scan;
  const end = expected.compareEnd;
  const perBlock = stored.entriesPerBlock;
  const comparison: Comparison = { highestCluster: 0, tooLow: 0, tooHigh: 0 };
  const blocks = Math.ceil(end / perBlock);
  for (let index = 0; index < blocks; index++) {
    if (index % 256 === 0) {
      job.throwIfCancelled();
      job.progress('comparing refcounts', index, blocks, 'steps');
    }
    const block = stored.block(index);
    const state = stored.state(index);
    const first = index * perBlock;
    const last = Math.min(end, first + perBlock);
    for (let cluster = first; cluster < last; cluster++) {
      const refcount = block === null ? 0 : stored.entry(block, cluster - first);
      const reference = expected.target(cluster);
      if (refcount === 0 && reference === 0) continue;
      comparison.highestCluster = cluster;
      const overlaps = expected.overlaps(cluster);
      if (refcount !== reference) {
        if (refcount < reference) {
          findings.corruption(`ERROR cluster ${cluster} refcount=${refcount} reference=${reference}`);
          if (block === null) {
            needRebuild(scan, `cluster ${cluster} is in use but ${state === 'none' ? 'no refcount block covers it' : 'its refcount block is invalid'}`);
          } else comparison.tooLow++;
        } else {
          findings.leak(`Leaked cluster ${cluster} refcount=${refcount} reference=${reference}`);
          if (block !== null) comparison.tooHigh++;
        }
        if (overlaps) findings.note(`  (cluster ${cluster} is used as ${expected.describeRoles(cluster)})`);
      } else if (overlaps && (expected.rolesOf(cluster) & ROLE_REFCOUNT_BLOCK) === 0) {
        // Refcounts that agree do not make an overlap safe: a write to one use changes the other.
        findings.corruption(`ERROR cluster ${cluster} is used as ${expected.describeRoles(cluster)}`);
      }
      if (overlaps && (expected.rolesOf(cluster) & (ROLE_REFCOUNT_TABLE | ROLE_REFCOUNT_BLOCK)) !== 0) {
        needRebuild(scan, `cluster ${cluster} is used as ${expected.describeRoles(cluster)}`);
      }
    }
  }
  return comparison;
}
