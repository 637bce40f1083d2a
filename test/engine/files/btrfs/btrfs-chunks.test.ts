/** btrfs's chunk map: logical addresses onto this device, chunks added in any order (the chunk tree gives them in order; damage may not). */
import { describe, expect, it } from 'vitest';
import { ChunkMap, type Chunk } from '../../../../src/shared/qcow2/files/btrfs/btrfs-chunks.ts';

const MiB = 1024 * 1024;
const chunk = (logical: number, offset: number, type = 1n): Chunk => ({ logical, length: MiB, type, stripes: [{ deviceId: 1n, offset }], itemBytes: 80 });

describe('ChunkMap', () => {
  it('maps addresses through chunks added in order, in reverse and in between', () => {
    const map = new ChunkMap(1n, 1024 * MiB, []);
    for (let index = 0; index < 100; index += 2) map.add(chunk(index * MiB, (200 + index) * MiB));
    for (let index = 99; index >= 1; index -= 2) map.add(chunk(index * MiB, (200 + index) * MiB));
    for (let index = 0; index < 100; index++) expect(map.physical(index * MiB + 4096, 4096)).toBe((200 + index) * MiB + 4096);
    // The same chunk again (the system array's, met again in the chunk tree) is taken once; an overlapping one is damage.
    map.add(chunk(5 * MiB, 205 * MiB));
    expect(() => map.add({ ...chunk(5 * MiB + 4096, 0) })).toThrow(/overlaps another/);
    expect(() => map.physical(100 * MiB, 4096)).toThrow(/lies in no chunk/);
    expect(() => map.physical(MiB - 4096, 8192)).toThrow(/lies in no chunk/);
  });

  it('refuses a striped chunk and one kept only on another device, by name', () => {
    const map = new ChunkMap(1n, 1024 * MiB, [chunk(0, MiB, 1n | 8n), { ...chunk(MiB, 2 * MiB), stripes: [{ deviceId: 2n, offset: 0 }] }]);
    expect(() => map.physical(0, 4096)).toThrow(/striped over several devices/);
    expect(() => map.physical(MiB, 4096)).toThrow(/only on another device/);
  });
});
