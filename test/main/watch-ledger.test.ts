/** A page's watches, released when it goes — also one it asked for just before going, answered after (found by an audit). */
import { describe, expect, it } from 'vitest';
import type { RequestHandle } from '../../src/main/handlers.ts';
import { watchLedger } from '../../src/main/watch-ledger.ts';

function countingHandle(): { handle: RequestHandle; counts: Map<string, number>; release: () => void } {
  const counts = new Map<string, number>();
  let release = (): void => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const handle: RequestHandle = async (name, args) => {
    const path = (args as { path: string }).path;
    if (name === 'image.watch') {
      if (path === '/slow.qcow2') await gate;
      counts.set(path, (counts.get(path) ?? 0) + 1);
    } else if (name === 'image.unwatch') counts.set(path, (counts.get(path) ?? 0) - 1);
    return { ok: true, value: null };
  };
  return { handle, counts, release: () => release() };
}

describe('watchLedger', () => {
  it('releases each watch the page still holds, as many times as it was taken', async () => {
    const { handle, counts } = countingHandle();
    const ledger = watchLedger(handle);
    await ledger.handle('image.watch', { path: '/a.qcow2' });
    await ledger.handle('image.watch', { path: '/a.qcow2' });
    await ledger.handle('image.watch', { path: '/b.qcow2' });
    await ledger.handle('image.unwatch', { path: '/b.qcow2' });
    await ledger.releaseAll();
    expect([...counts]).toEqual([['/a.qcow2', 0], ['/b.qcow2', 0]]);
  });

  it('releases a watch whose answer came after the page went', async () => {
    const { handle, counts, release } = countingHandle();
    const ledger = watchLedger(handle);
    const late = ledger.handle('image.watch', { path: '/slow.qcow2' });
    await ledger.releaseAll();
    release();
    await late;
    expect(counts.get('/slow.qcow2')).toBe(0);
  });
});
