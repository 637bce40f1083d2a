/**
 * A file's extended attributes (Linux xattrs: POSIX ACLs as system.posix_acl_access, SELinux
 * labels, user.* and trusted.* names such as libvirt's owner records), read from one open file and
 * set on another, through the C library (Node has no call for them). A file that replaces another
 * keeps them: without its ACL, a disk's mode alone would give the owning group what the ACL's mask
 * allowed named users, and take from those users what they had.
 */
import { libc } from './libc.ts';

/** One attribute by name (its bytes as the kernel has them, which need not be UTF-8), with its value. */
export interface ExtendedAttribute {
  name: Uint8Array;
  value: Uint8Array;
}

/** A name for messages and comparisons (bytes that are not UTF-8 shown as U+FFFD). */
export function attributeName(name: Uint8Array): string {
  return new TextDecoder().decode(name);
}

/** An attribute that could not be set on the new file, and why (errno's name). */
export interface AttributeNotKept {
  name: string;
  code: string;
}

/** Names are passed NUL-terminated, as bytes. */
interface XattrCalls {
  list(fd: number, list: Uint8Array | null, size: number): number;
  get(fd: number, name: Uint8Array, value: Uint8Array | null, size: number): number;
  set(fd: number, name: Uint8Array, value: Uint8Array, size: number, flags: number): number;
  remove(fd: number, name: Uint8Array): number;
  errno(): number;
}

/** The POSIX ACL that gives named users and groups their rights (and whose mask is the mode's group bits). */
export const ACCESS_ACL = 'system.posix_acl_access';

const ERANGE = 34;

let calls: XattrCalls | null | undefined;

function xattrCalls(): XattrCalls | null {
  if (calls !== undefined) return calls;
  const loaded = libc();
  if (loaded instanceof Error) {
    calls = null;
    return calls;
  }
  const { koffi, library } = loaded;
  const list = library.func('long flistxattr(int fd, void *list, size_t size)') as unknown as XattrCalls['list'];
  const get = library.func('long fgetxattr(int fd, const void *name, void *value, size_t size)') as unknown as XattrCalls['get'];
  const set = library.func('int fsetxattr(int fd, const void *name, const void *value, size_t size, int flags)') as unknown as XattrCalls['set'];
  const remove = library.func('int fremovexattr(int fd, const void *name)') as unknown as XattrCalls['remove'];
  calls = { list, get, set, remove, errno: () => koffi.errno() };
  return calls;
}

/** Calls `read` with a buffer grown until the answer fits (another program may add to it between the two calls). */
function readSized(sizeOf: () => number, read: (buffer: Uint8Array) => number, errno: () => number): Uint8Array | null {
  for (let attempt = 0; attempt < 4; attempt++) {
    const size = sizeOf();
    if (size < 0) return null;
    if (size === 0) return new Uint8Array(0);
    const buffer = new Uint8Array(size);
    const got = read(buffer);
    if (got >= 0) return buffer.subarray(0, got);
    if (errno() !== ERANGE) return null;
  }
  return null;
}

/** The names in flistxattr's answer, each NUL-terminated. */
function splitNames(list: Uint8Array): Uint8Array[] {
  const names: Uint8Array[] = [];
  let start = 0;
  for (let at = 0; at < list.length; at++) {
    if (list[at] !== 0) continue;
    if (at > start) names.push(list.slice(start, at + 1));
    start = at + 1;
  }
  return names;
}

function readValue(xattr: XattrCalls, fd: number, name: Uint8Array): Uint8Array | null {
  return readSized(() => xattr.get(fd, name, null, 0), (buffer) => xattr.get(fd, name, buffer, buffer.length), xattr.errno);
}

function readNames(xattr: XattrCalls, fd: number): Uint8Array[] {
  const list = readSized(() => xattr.list(fd, null, 0), (buffer) => xattr.list(fd, buffer, buffer.length), xattr.errno);
  return list === null ? [] : splitNames(list);
}

/** Every extended attribute this process may read on an open file; [] where there are none or the system has no such calls. */
export function readExtendedAttributes(fd: number): ExtendedAttribute[] {
  const xattr = xattrCalls();
  if (xattr === null) return [];
  const attributes: ExtendedAttribute[] = [];
  for (const name of readNames(xattr, fd)) {
    const value = readValue(xattr, fd, name);
    // Gone since the listing, or not ours to read.
    if (value !== null) attributes.push({ name: name.subarray(0, -1), value });
  }
  return attributes;
}

const withNul = (name: Uint8Array): Uint8Array => {
  const bytes = new Uint8Array(name.length + 1);
  bytes.set(name);
  return bytes;
};

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/**
 * Makes an open file's extended attributes exactly `attributes`: what it has that they lack (a
 * folder's default ACL, inherited on creation) is removed first, then each is set. Those that could
 * not be set and whose value the file does not already hold (a label the new file got from its
 * folder counts as kept) are returned, as are those that could not be removed.
 */
export function writeExtendedAttributes(fd: number, attributes: readonly ExtendedAttribute[]): AttributeNotKept[] {
  const xattr = xattrCalls();
  if (xattr === null) return attributes.map(({ name }) => ({ name: attributeName(name), code: 'ENOTSUP' }));
  const notKept: AttributeNotKept[] = [];
  for (const present of readNames(xattr, fd)) {
    const bare = present.subarray(0, -1);
    if (attributes.some(({ name }) => sameBytes(name, bare))) continue;
    if (xattr.remove(fd, present) !== 0) notKept.push({ name: attributeName(bare), code: errnoName(xattr.errno()) });
  }
  for (const { name, value } of attributes) {
    const terminated = withNul(name);
    if (xattr.set(fd, terminated, value, value.length, 0) === 0) continue;
    const errno = xattr.errno();
    const now = readValue(xattr, fd, terminated);
    if (now !== null && sameBytes(now, value)) continue;
    notKept.push({ name: attributeName(name), code: errnoName(errno) });
  }
  return notKept;
}

/** errno's name (EPERM, E2BIG…), as Node names system errors. */
function errnoName(errno: number): string {
  try {
    return process.getBuiltinModule('node:util').getSystemErrorName(-errno);
  } catch {
    return `errno ${errno}`;
  }
}
