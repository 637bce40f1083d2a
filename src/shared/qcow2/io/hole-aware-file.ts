/**
 * A file opened for reading alone whose holes (SEEK_DATA/SEEK_HOLE, asked once at open) read as
 * zeros without a read. A disk made with `preallocation=metadata` maps every guest cluster to host
 * space the file never wrote: without this a compact reads, and verifies, every such cluster's zeros
 * from the file system (10 GiB took 50 s where qemu-img, which asks for holes, takes a moment).
 * Only for a file no one writes while it is open — a rewrite's source, which it guards against
 * every other writer (image-lock.ts) — since the holes are those of the moment it opened.
 */
import { Qcow2Error } from '../errors.ts';
import { hasDescriptor, type BlockFile, type DescribedBlockFile } from './block-file.ts';
import { fileExtents } from './file-extents.ts';

/** The file itself where it is writable, has no descriptor, or has no holes. */
export function holeAwareSource(file: BlockFile): BlockFile {
  if (!file.readOnly || !hasDescriptor(file)) return file;
  const holes = holesOf(file.descriptor, file.size());
  return holes === null ? file : new HoleAwareFile(file, holes);
}

/** The holes of the open file `descriptor` as they are now (SEEK_DATA/SEEK_HOLE), or null where it has none. */
export function holesOf(descriptor: number, size: number): HoleList | null {
  const holes = fileExtents(descriptor, 0, size).filter((extent) => !extent.data);
  return holes.length === 0 ? null : { starts: Float64Array.from(holes, (hole) => hole.start), ends: Float64Array.from(holes, (hole) => hole.start + hole.length) };
}

/** A file's holes as two parallel lists (start, end), in file order: what a helper thread is given. */
export interface HoleList {
  starts: Float64Array;
  ends: Float64Array;
}

/** Whether [start, end) lies inside one of the holes. */
export function withinHole(holes: HoleList, start: number, end: number): boolean {
  let low = 0;
  let high = holes.starts.length - 1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    if ((holes.starts[middle] ?? 0) <= start) low = middle + 1;
    else high = middle - 1;
  }
  // high: the last hole starting at or before `start`.
  return high >= 0 && end <= (holes.ends[high] ?? 0);
}

/** The holes a file (under the engine's wrappers) was opened knowing, or null. */
export function knownHoles(file: BlockFile): HoleList | null {
  let inner: BlockFile | undefined = file;
  while (inner !== undefined && !(inner instanceof HoleAwareFile)) inner = (inner as { inner?: BlockFile }).inner;
  return inner === undefined ? null : inner.holes;
}

class HoleAwareFile implements DescribedBlockFile {
  private readonly inner: DescribedBlockFile;
  readonly holes: HoleList;

  constructor(inner: DescribedBlockFile, holes: HoleList) {
    this.inner = inner;
    this.holes = holes;
  }

  get path(): string {
    return this.inner.path;
  }

  get readOnly(): boolean {
    return true;
  }

  get inUseElsewhere(): boolean | undefined {
    return this.inner.inUseElsewhere;
  }

  get descriptor(): number {
    return this.inner.descriptor;
  }

  read(buffer: Uint8Array, position: number): number {
    if (buffer.length > 0 && withinHole(this.holes, position, position + buffer.length)) {
      buffer.fill(0);
      return buffer.length;
    }
    return this.inner.read(buffer, position);
  }

  write(): void {
    throw new Qcow2Error('INTERNAL', `${this.path} was opened for reading only`);
  }

  flush(): void {
    this.inner.flush();
  }

  size(): number {
    return this.inner.size();
  }

  truncate(): void {
    throw new Qcow2Error('INTERNAL', `${this.path} was opened for reading only`);
  }

  close(): void {
    this.inner.close();
  }
}
