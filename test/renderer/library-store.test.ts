import { createPinia, setActivePinia } from 'pinia';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import { useLibraryStore } from '../../src/renderer/src/stores/library.ts';
import { fakeConnection, imageInfo } from './fixtures.ts';

function flush(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

describe('library store', () => {
  beforeEach(() => setActivePinia(createPinia()));
  afterEach(() => replaceConnection(null));

  it('opens the initial paths at start and selects the first', async () => {
    const fake = fakeConnection({
      'app.initialPaths': () => ['/disks/a.qcow2', '/disks/b.qcow2'],
      'image.open': (args) => imageInfo({ filename: (args as { path: string }).path }),
    });
    replaceConnection(fake);
    const library = useLibraryStore();
    await library.start();
    expect(library.disks.map((disk) => [disk.path, disk.status])).toEqual([
      ['/disks/a.qcow2', 'ready'],
      ['/disks/b.qcow2', 'ready'],
    ]);
    expect(library.selectedPath).toBe('/disks/a.qcow2');
  });

  it('keeps a disk that failed to open, with the error code and message', async () => {
    replaceConnection(
      fakeConnection({
        'image.open': () => {
          throw { code: 'NOT_FOUND', message: '/gone.qcow2: no such file' };
        },
      }),
    );
    const library = useLibraryStore();
    await library.open('/gone.qcow2');
    expect(library.selected?.status).toBe('error');
    expect(library.selected?.error).toEqual({ code: 'NOT_FOUND', message: '/gone.qcow2: no such file' });
  });

  it('treats a reply that is not an image description as BAD_REPLY', async () => {
    replaceConnection(fakeConnection({ 'image.open': () => ({ 'virtual-size': 'huge' }) }));
    const library = useLibraryStore();
    await library.open('/odd.qcow2');
    expect(library.selected?.error?.code).toBe('BAD_REPLY');
  });

  it('re-reads an open disk when main reports it changed, and ignores disks not open', async () => {
    let reads = 0;
    const fake = fakeConnection({
      'app.initialPaths': () => [],
      'image.open': () => {
        reads += 1;
        return imageInfo({ snapshots: [] });
      },
    });
    replaceConnection(fake);
    const library = useLibraryStore();
    await library.start();
    await library.open('/disks/a.qcow2');
    fake.emit('image.changed', { path: '/disks/a.qcow2' });
    fake.emit('image.changed', { path: '/disks/other.qcow2' });
    await flush();
    expect(reads).toBe(2);
    expect(fake.calls.filter((call) => call.name === 'image.open')).toHaveLength(2);
    // The same file typed another way is the same entry (read again), not a second one.
    await library.open('/disks/./a.qcow2');
    await library.openMany(['/disks//a.qcow2']);
    expect(library.disks.map((disk) => disk.path)).toEqual(['/disks/a.qcow2']);
    expect(library.selectedPath).toBe('/disks/a.qcow2');
  });

  it('opens and shows the disks main sends after start (a second launch, Open with Cowbell)', async () => {
    const fake = fakeConnection({
      'app.initialPaths': () => ['/disks/a.qcow2'],
      'image.open': (args) => imageInfo({ filename: (args as { path: string }).path }),
    });
    replaceConnection(fake);
    const library = useLibraryStore();
    await library.start();
    fake.emit('app.openPaths', { paths: ['/disks/b.qcow2', '/disks/a.qcow2'] });
    await flush();
    expect(library.disks.map((disk) => [disk.path, disk.status])).toEqual([
      ['/disks/a.qcow2', 'ready'],
      ['/disks/b.qcow2', 'ready'],
    ]);
    expect(library.selectedPath).toBe('/disks/b.qcow2');
  });

  it('selects a neighbour when the selected disk is closed', async () => {
    replaceConnection(fakeConnection({ 'image.open': () => imageInfo() }));
    const library = useLibraryStore();
    await library.openMany(['/a.qcow2', '/b.qcow2', '/c.qcow2']);
    library.select('/b.qcow2');
    library.close('/b.qcow2');
    expect(library.selectedPath).toBe('/c.qcow2');
    library.close('/c.qcow2');
    expect(library.selectedPath).toBe('/a.qcow2');
    library.close('/a.qcow2');
    expect(library.selectedPath).toBeNull();
  });

  it('lets the newest read of a path win when replies arrive out of order', async () => {
    const replies: ((value: unknown) => void)[] = [];
    replaceConnection(fakeConnection({ 'image.open': () => new Promise((resolve) => replies.push(resolve)) }));
    const library = useLibraryStore();
    const first = library.open('/a.qcow2');
    const second = library.reload('/a.qcow2');
    replies[1]?.(imageInfo({ 'virtual-size': 2048 }));
    replies[0]?.(imageInfo({ 'virtual-size': 1024 }));
    await Promise.all([first, second]);
    expect(library.selected?.info?.['virtual-size']).toBe(2048);
  });
});

describe('library store: opening several disks', () => {
  beforeEach(() => setActivePinia(createPinia()));
  afterEach(() => replaceConnection(null));

  it('keeps a disk the user selects while the others are still being read', async () => {
    const replies: ((value: unknown) => void)[] = [];
    replaceConnection(fakeConnection({ 'image.open': () => new Promise((resolve) => replies.push(resolve)) }));
    const library = useLibraryStore();
    const opening = library.openMany(['/a.qcow2', '/b.qcow2']);
    expect(library.selectedPath).toBe('/a.qcow2');
    library.selectNeighbour(1);
    for (const reply of replies) reply(imageInfo());
    await opening;
    expect(library.selectedPath).toBe('/b.qcow2');
  });
});
