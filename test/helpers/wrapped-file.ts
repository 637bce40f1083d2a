/**
 * A BlockFile that passes every call to another, but for the changes a test takes over (to record
 * them, or to fail one): `wrapFile(file, { truncate: () => { throw … } })`.
 */
import type { BlockFile } from '../../src/shared/qcow2/io/block-file.ts';

export type FileChanges = Partial<Pick<BlockFile, 'write' | 'flush' | 'truncate'>>;

export function wrapFile(inner: BlockFile, changes: FileChanges): BlockFile {
  return {
    get path() {
      return inner.path;
    },
    get readOnly() {
      return inner.readOnly;
    },
    read: (buffer, position) => inner.read(buffer, position),
    write: changes.write ?? ((buffer, position) => inner.write(buffer, position)),
    flush: changes.flush ?? (() => inner.flush()),
    size: () => inner.size(),
    truncate: changes.truncate ?? ((size) => inner.truncate(size)),
    close: () => inner.close(),
  };
}
