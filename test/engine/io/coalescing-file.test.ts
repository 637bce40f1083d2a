/** The write-joining file commit and rebase write through: same bytes, same order at flushes, and a failed held write stops every later change. */
import { describe, expect, it } from 'vitest';
import { CoalescingFile } from '../../../src/shared/qcow2/io/coalescing-file.ts';
import { FailingFile } from '../../helpers/failing-file.ts';
import { FaultFile } from '../../helpers/fault-file.ts';

describe('CoalescingFile', () => {
  it('joins writes that continue one another, and writes what it holds before a read, a write elsewhere or a flush', () => {
    const inner = new FaultFile('/disk', new Uint8Array(0));
    const file = new CoalescingFile(inner);
    file.write(new Uint8Array(1000).fill(1), 0);
    file.write(new Uint8Array(1000).fill(2), 1000);
    expect(inner.log).toEqual([]);
    const back = new Uint8Array(2000);
    expect(file.read(back, 0)).toBe(2000);
    expect(back.subarray(999, 1001)).toEqual(new Uint8Array([1, 2]));
    expect(inner.log.map((event) => (event.kind === 'write' ? `write ${event.position}+${event.bytes.length}` : event.kind))).toEqual(['write 0+2000']);
    file.write(new Uint8Array(10).fill(3), 5000);
    file.write(new Uint8Array(10).fill(4), 100);
    file.flush();
    expect(inner.log.map((event) => (event.kind === 'write' ? `write ${event.position}+${event.bytes.length}` : event.kind))).toEqual(['write 0+2000', 'write 5000+10', 'write 100+10', 'flush']);
    expect(inner.contents().subarray(100, 102)).toEqual(new Uint8Array([4, 4]));
  });

  it('a held write that fails when a read sends it out fails every later write and flush', () => {
    const inner = new FailingFile(new FaultFile('/disk', new Uint8Array(0)), { event: 0, code: 'ENOSPC' });
    const file = new CoalescingFile(inner);
    file.write(new Uint8Array(512), 0);
    expect(() => file.read(new Uint8Array(512), 0)).toThrow(/ENOSPC/);
    expect(() => file.write(new Uint8Array(512), 4096)).toThrow(/ENOSPC/);
    expect(() => file.flush()).toThrow(/ENOSPC/);
  });
});
