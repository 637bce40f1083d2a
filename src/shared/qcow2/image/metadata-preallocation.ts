/**
 * Whether an image looks made with `preallocation=metadata`: every guest cluster mapped to host
 * space the file never wrote (holes). QEMU's test, which this follows (block/qcow2-refcount.c,
 * qcow2_detect_metadata_preallocation): the clusters with a refcount, up to the file's length,
 * reach max(real × 10/9, real + 2), `real` being the clusters' worth of space the file system holds
 * for the file. Only then does QEMU ask the file system which data clusters are holes (reading as
 * zeros; map.ts does the same), so an ordinary image's map does not depend on its holes.
 */
import * as fs from 'node:fs';
import { getRefcount } from '../format/entries.ts';
import { descriptorOf } from '../io/fail-stop-file.ts';
import type { Qcow2Image } from './image.ts';

const answers = new WeakMap<Qcow2Image, boolean>();

/** Asked once per open image, as QEMU does. */
export function looksMetadataPreallocated(image: Qcow2Image): boolean {
  let answer = answers.get(image);
  if (answer === undefined) {
    answer = detect(image);
    answers.set(image, answer);
  }
  return answer;
}

function detect(image: Qcow2Image): boolean {
  const descriptor = descriptorOf(image.file);
  if (descriptor === null) return false;
  let allocatedBytes: number;
  try {
    allocatedBytes = fs.fstatSync(descriptor).blocks * 512;
  } catch {
    return false;
  }
  const realClusters = Math.floor(allocatedBytes / image.clusterBytes);
  const threshold = Math.max(Math.floor((realClusters * 10) / 9), realClusters + 2);
  const endCluster = Math.ceil(image.file.size() / image.clusterBytes);
  const refcounts = image.refcounts;
  let inUse = 0;
  // A block at a time: each refcount block's entries are read from its bytes, not looked up one by one.
  for (let tableIndex = 0; tableIndex * refcounts.entriesPerBlock < endCluster && inUse < threshold; tableIndex++) {
    const blockOffset = refcounts.blockOffsetIfValid(tableIndex);
    // QEMU's lookup fails on a damaged table entry, and the answer is then no.
    if (blockOffset === null) return false;
    if (blockOffset === 0) continue;
    let block;
    try {
      block = refcounts.cache.get(blockOffset);
    } catch {
      return false;
    }
    const first = tableIndex * refcounts.entriesPerBlock;
    const entries = Math.min(refcounts.entriesPerBlock, endCluster - first);
    for (let index = 0; index < entries && inUse < threshold; index++) {
      if (getRefcount(block.bytes, block.view, index, refcounts.order) !== 0) inUse++;
    }
  }
  return inUse >= threshold;
}
