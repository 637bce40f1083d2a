/** The power-cut model itself: what each loss pattern keeps, for block files and for whole files and names. */
import { describe, expect, it } from 'vitest';
import { crashPoints, crashState, FaultFile, FaultFileSystem, survivingChanges, unflushedChanges } from '../../helpers/fault-file.ts';

const bytes = (length: number, fill: number): Uint8Array => new Uint8Array(length).fill(fill);

/** A file of 2048 bytes of 0: writes of 1s at 0, a flush, 2s at 512 (two sectors), 3s at 1536, a truncate to 4096, 4s at 3000. */
function sampleRun(): FaultFile {
  const file = new FaultFile('/sample', bytes(2048, 0));
  file.write(bytes(512, 1), 0);
  file.flush();
  file.write(bytes(1024, 2), 512);
  file.write(bytes(512, 3), 1536);
  file.truncate(4096);
  file.write(bytes(100, 4), 3000);
  return file;
}

describe('FaultFile power cuts', () => {
  it('records writes, truncates and flushes in order, and the program sees every write', () => {
    const file = sampleRun();
    expect(file.log.map((event) => event.kind)).toEqual(['write', 'flush', 'write', 'write', 'truncate', 'write']);
    const contents = file.contents();
    expect(contents.length).toBe(4096);
    expect([contents[0], contents[600], contents[1600], contents[2500], contents[3050]]).toEqual([1, 2, 3, 0, 4]);
  });

  it('keep-all keeps everything before the cut; lose-all keeps only what a flush made durable', () => {
    const file = sampleRun();
    const initial = bytes(2048, 0);
    const kept = crashState('/sample', initial, file.log, { cut: 4, pattern: { kind: 'keep-all' } }).bytes();
    expect([kept[0], kept[600], kept[1600], kept.length]).toEqual([1, 2, 3, 2048]);
    const lost = crashState('/sample', initial, file.log, { cut: 6, pattern: { kind: 'lose-all' } }).bytes();
    expect([lost[0], lost[600], lost[1600], lost.length]).toEqual([1, 0, 0, 2048]);
    expect(unflushedChanges(file.log, 6)).toEqual([2, 3, 4, 5]);
  });

  it('random subsets are reproducible by seed and vary across seeds', () => {
    const file = sampleRun();
    const keptBy = (seed: number): number[] => survivingChanges(file.log, { cut: 6, pattern: { kind: 'random', seed } }).map(({ index }) => index);
    expect(keptBy(7)).toEqual(keptBy(7));
    const variety = new Set(Array.from({ length: 32 }, (_, seed) => keptBy(seed).join(',')));
    expect(variety.size).toBeGreaterThan(4);
    for (let seed = 0; seed < 32; seed++) expect(keptBy(seed)[0]).toBe(0);
  });

  it('torn patterns keep or lose each 512-byte sector of a write on its own', () => {
    const file = sampleRun();
    const initial = bytes(2048, 0);
    const halves = new Set<string>();
    for (let seed = 0; seed < 40; seed++) {
      const state = crashState('/sample', initial, file.log, { cut: 3, pattern: { kind: 'torn', seed } }).bytes();
      halves.add(`${state[600]}${state[1100]}`);
    }
    expect([...halves].sort()).toEqual(['00', '02', '20', '22']);
    expect(crashPoints(file.log, 0, 1, 1).some((point) => point.pattern.kind === 'torn')).toBe(true);
  });

  it('a shrinking truncate then a write past the old end leave a hole of zeros', () => {
    const file = new FaultFile('/grow', bytes(1024, 9));
    file.truncate(512);
    file.write(bytes(10, 5), 2000);
    const state = crashState('/grow', bytes(1024, 9), file.log, { cut: 2, pattern: { kind: 'keep-all' } }).bytes();
    expect(state.length).toBe(2010);
    expect([state[0], state[700], state[1500], state[2005]]).toEqual([9, 0, 0, 5]);
  });
});

describe('FaultFileSystem power cuts', () => {
  function replace(fileSystem: FaultFileSystem): void {
    const file = fileSystem.create('/d/.new');
    file.write(bytes(8, 1), 0);
    file.flush();
    file.close();
    fileSystem.rename('/d/.new', '/d/x');
    fileSystem.syncFolder('/d');
  }

  it('a rename not yet covered by a folder sync may be lost; after the sync it stays', () => {
    const fileSystem = new FaultFileSystem({ '/d/x': bytes(4, 7) });
    replace(fileSystem);
    const beforeSync = fileSystem.crash(5, { kind: 'lose-all' });
    expect(beforeSync.get('/d/x')).toEqual(bytes(4, 7));
    expect(beforeSync.has('/d/.new')).toBe(false);
    expect(fileSystem.crash(5, { kind: 'keep-all' }).get('/d/x')).toEqual(bytes(8, 1));
    expect(fileSystem.crash(6, { kind: 'lose-all' }).get('/d/x')).toEqual(bytes(8, 1));
  });

  it("a file's writes not yet flushed may be lost even when its name survives", () => {
    const fileSystem = new FaultFileSystem();
    const file = fileSystem.create('/d/y');
    file.write(bytes(8, 3), 0);
    fileSystem.syncFolder('/d');
    expect(fileSystem.crash(3, { kind: 'lose-all' }).get('/d/y')).toEqual(new Uint8Array(0));
    expect(fileSystem.crash(3, { kind: 'keep-all' }).get('/d/y')).toEqual(bytes(8, 3));
  });
});
