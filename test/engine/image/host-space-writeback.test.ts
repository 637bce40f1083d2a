/**
 * A new image written front to back starts the kernel's writeback of what it appended as it goes,
 * in ranges that follow each other without a gap or overlap, only when asked and only for a file
 * with a descriptor.
 */
import { describe, expect, it, vi } from 'vitest';
import type { DescribedBlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import type * as FileWriteback from '../../../src/shared/qcow2/io/file-writeback.ts';

const started: [number, number, number][] = [];
vi.mock('../../../src/shared/qcow2/io/file-writeback.ts', async (importOriginal) => ({
  ...(await importOriginal<typeof FileWriteback>()),
  startWriteback: (fd: number, offset: number, length: number) => started.push([fd, offset, length]),
}));
const { HostSpaceWriter } = await import('../../../src/shared/qcow2/image/host-space-writer.ts');

const CLUSTER = 65536;
const MiB = 1024 * 1024;

function memoryFile(descriptor?: number): DescribedBlockFile {
  let bytes = new Uint8Array(0);
  const file = {
    path: 'memory.qcow2',
    readOnly: false,
    read: (buffer: Uint8Array, position: number) => {
      const part = bytes.subarray(position, position + buffer.length);
      buffer.set(part);
      return part.length;
    },
    write: (buffer: Uint8Array, position: number) => {
      if (position + buffer.length > bytes.length) {
        const grown = new Uint8Array(position + buffer.length);
        grown.set(bytes);
        bytes = grown;
      }
      bytes.set(buffer, position);
    },
    flush: () => {},
    size: () => bytes.length,
    truncate: (size: number) => {
      bytes = bytes.slice(0, size);
    },
    close: () => {},
  };
  return (descriptor === undefined ? file : { ...file, descriptor }) as DescribedBlockFile;
}

/** Appends 40 MiB of data the ways a rewrite does: whole runs, single clusters, compressed pieces. */
function appendMixed(writer: InstanceType<typeof HostSpaceWriter>): void {
  for (let run = 0; run < 5; run++) writer.appendClusters(new Uint8Array(4 * MiB).fill(run + 1));
  for (let cluster = 0; cluster < 256; cluster++) writer.appendClusters(new Uint8Array(CLUSTER).fill(7));
  for (let piece = 0; piece < 1000; piece++) writer.appendCompressed(new Uint8Array(4000).fill(9));
  writer.finish();
}

describe('HostSpaceWriter with startWriteback', () => {
  it('starts writeback of the appended bytes in consecutive ranges of at least 8 MiB, from the end of the reserved area', () => {
    started.length = 0;
    const file = memoryFile(42);
    const reserved = 2 * CLUSTER;
    appendMixed(new HostSpaceWriter(file, { clusterBits: 16, refcountOrder: 4 }, reserved, { startWriteback: true }));
    expect(started.length).toBeGreaterThanOrEqual(3);
    let expectedOffset = reserved;
    for (const [fd, offset, length] of started) {
      expect(fd).toBe(42);
      expect(offset).toBe(expectedOffset);
      expect(length).toBeGreaterThanOrEqual(8 * MiB);
      expectedOffset = offset + length;
    }
    expect(expectedOffset).toBeLessThanOrEqual(file.size());
    expect(file.size() - expectedOffset).toBeLessThan(8 * MiB + 4 * MiB);
  });

  it('starts none unless asked, nor for a file without a descriptor', () => {
    started.length = 0;
    appendMixed(new HostSpaceWriter(memoryFile(42), { clusterBits: 16, refcountOrder: 4 }, CLUSTER));
    appendMixed(new HostSpaceWriter(memoryFile(), { clusterBits: 16, refcountOrder: 4 }, CLUSTER, { startWriteback: true }));
    expect(started).toEqual([]);
  });
});
