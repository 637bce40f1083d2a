/**
 * QEMU's own image locks, so that Cowbell and QEMU keep out of each other's way: Cowbell never
 * writes a disk a running VM (or qemu-nbd, qemu-img) uses, and they cannot start writing one
 * Cowbell is changing.
 *
 * QEMU (block/file-posix.c) takes shared open-file-description (OFD) locks on single bytes of the
 * image file: byte 100 + bit for each permission it uses, byte 200 + bit for each it will not share
 * with anyone else (bits from include/block/block-common.h). Before it starts, it tests that nobody
 * else locks 200 + bit for a permission it wants, nor 100 + bit for one it refuses to share.
 * Checked on qemu 7.2 via /proc/locks:
 *  - qemu-io / qemu-nbd read-write: uses 100, 101, 103; unshared 201, 203
 *  - qemu-io -r / qemu-nbd -r:     uses 100;           unshared 201, 203
 *  - with -U (force share):         uses 100;           unshared none
 * Cowbell writing takes the same bytes as a read-write qemu-io; Cowbell reading takes what
 * `qemu-img info -U` takes, so QEMU never refuses a Cowbell reader and is never refused by one.
 *
 * Between Cowbell processes (the app and the command line) one more byte, 300 — outside QEMU's
 * ranges — keeps readers from seeing a change another Cowbell has half made: a writer holds it
 * exclusively, readers shared. Each waits its turn for a few seconds (Cowbell's changes are short),
 * then gives up with IN_USE. Within one process the per-image queue already orders jobs.
 *
 * The locks live as long as the file descriptor: closing it releases them. OFD locks (unlike
 * POSIX fcntl locks, which a process loses when it closes any descriptor of the file, and which
 * threads of one process share) also exclude two descriptors of the same process, so two workers
 * or two Cowbell processes exclude each other exactly as they exclude QEMU.
 */
import { Qcow2Error } from '../errors.ts';
import { libc } from './libc.ts';

/** QEMU's permission bit numbers (BLK_PERM_*); GRAPH_MOD (bit 4) is gone and not locked since QEMU 6.2. */
export const PERMISSION_BITS = { consistentRead: 0, write: 1, writeUnchanged: 2, resize: 3 } as const;
/** Byte 100 + bit: "I use this permission". */
export const USES_BASE = 100;
/** Byte 200 + bit: "I do not share this permission". */
export const UNSHARED_BASE = 200;

export interface LockSet {
  uses: readonly number[];
  unshared: readonly number[];
}

const { consistentRead, write, resize } = PERMISSION_BITS;

/** Like `qemu-img info -U`: consistent reads, everything shared. */
export const READER_LOCKS: LockSet = { uses: [consistentRead], unshared: [] };
/** Like a read-write qemu-io on a qcow2 image: it grows the file too, and shares neither writing nor resizing. */
export const WRITER_LOCKS: LockSet = { uses: [consistentRead, write, resize], unshared: [write, resize] };
/** Like `qemu-io -r`: reads, and lets nobody write or resize the image meanwhile (the source of a rewrite that will replace it). */
export const GUARD_LOCKS: LockSet = { uses: [consistentRead], unshared: [write, resize] };

/** The reason a read-only view gives when another program writes the image. */
export const IN_USE_REASON = 'in use by another program';

export function inUseError(): Qcow2Error {
  return new Qcow2Error('IN_USE', 'The disk is in use by another program (a running VM or qemu-nbd); close it first');
}

/**
 * Where asked (`refuseInUse`, the CLI's reads without -U), fails with IN_USE when another program
 * is writing the file just opened: what is read would be a copy or a report of no moment in
 * particular (qemu-img refuses too).
 */
export function refuseIfWrittenElsewhere(file: { path: string; inUseElsewhere?: boolean }, refuseInUse: RefuseInUse | undefined): void {
  if (file.inUseElsewhere !== true || refuseInUse === undefined || refuseInUse === false) return;
  // A change (commit, rebase) reads to write: forcing the read is no way out there.
  if (refuseInUse === 'changing') throw new Qcow2Error('IN_USE', `${file.path} is being written by another program (a running VM or qemu-nbd); shut it down first`);
  throw inUseForReadingError(file.path);
}

/** Whether to refuse a file another program is writing: true for a read (forced with -U), 'changing' for a read that feeds a change. */
export type RefuseInUse = boolean | 'changing';

function inUseForReadingError(filePath: string): Qcow2Error {
  return new Qcow2Error('IN_USE', `${filePath} is being written by another program (a running VM or qemu-nbd), so a copy or a report made now may be inconsistent; shut it down first, or force the read (-U, as in qemu-img)`);
}

/** Cowbell's own byte: held exclusively while a Cowbell process changes the image, shared while one reads it. */
export const COWBELL_BYTE = 300;
/**
 * Claimed by one rewrite alone that will replace the file (compact, compress, encrypt… in place;
 * see awaitSoleClaim).
 * Two such rewrites may each read the file (their guards share), but the second rename would throw
 * the first one's work away (an encrypt reported done, its disk unencrypted): the second waits.
 */
export const COWBELL_REPLACING_BYTE = 301;

/** How long an open waits for another Cowbell process to finish with the image (tests shorten it). */
export const lockTiming = { busyWaitMs: 5000, pollMs: 10 };

export function busyError(): Qcow2Error {
  return new Qcow2Error('IN_USE', 'The disk is busy in another Cowbell window or command; try again when it has finished');
}

type LockType = 'shared' | 'exclusive';

/** What the platform offers: OFD locks through fcntl, or nothing. */
interface ByteLocks {
  /** Locks one byte; 'conflict' when another open file description holds a lock that excludes it. */
  lock(fd: number, byte: number, type: LockType): 'locked' | 'conflict' | 'unsupported';
  /** Whether a lock on the byte by another open file description would stop an exclusive lock. */
  heldElsewhere(fd: number, byte: number): boolean;
  /** Lets go of this descriptor's lock on the byte, if it holds one. */
  unlock(fd: number, byte: number): void;
}

/**
 * Waits for other Cowbell processes to finish, takes a writer's locks, then refuses (closing
 * nothing: the caller closes fd) if another program is in the way.
 */
export function lockForWriting(fd: number): void {
  const locks = byteLocks();
  if (locks === null) return;
  if (!awaitCowbellTurn(locks, fd, 'exclusive')) return;
  if (!applyLocks(locks, fd, WRITER_LOCKS)) return;
  if (conflictFor(locks, fd, WRITER_LOCKS)) throw inUseError();
}

/**
 * Waits for another Cowbell process's change to finish, takes a reader's locks (QEMU never
 * refuses them, as with qemu-img -U) and answers whether another program holds the image for
 * writing, so the reader can say so and refuse every write.
 */
export function lockForReading(fd: number): { writtenElsewhere: boolean } {
  const locks = byteLocks();
  if (locks === null) return { writtenElsewhere: false };
  if (!awaitCowbellTurn(locks, fd, 'shared')) return { writtenElsewhere: false };
  if (!applyLocks(locks, fd, READER_LOCKS)) return { writtenElsewhere: false };
  return { writtenElsewhere: locks.heldElsewhere(fd, USES_BASE + write) };
}

/**
 * Takes a reader's locks that also keep every writer out (QEMU refuses to start writing it; other
 * Cowbell processes wait), for a file read now and replaced later; IN_USE if someone writes it.
 */
export function lockForGuarding(fd: number, replacing = false): void {
  const locks = byteLocks();
  if (locks === null) return;
  if (!awaitCowbellTurn(locks, fd, 'shared')) return;
  if (replacing && !awaitSoleClaim(locks, fd, COWBELL_REPLACING_BYTE)) return;
  if (!applyLocks(locks, fd, GUARD_LOCKS)) return;
  if (conflictFor(locks, fd, GUARD_LOCKS)) throw inUseError();
  if (replacing && keptFromWriters(locks, fd)) throw replacingRefusal(locks, fd);
}

/**
 * A guard for a file only read (a copy of the current state, the files of a chain that commit or
 * rebase reads): waits while another Cowbell process replaces the file (compact in place: its
 * rename would come after this read began), then keeps writers out. A file another program writes
 * now takes a reader's locks instead and says so (writtenElsewhere), for the caller to refuse it in
 * its own words (naming the file, offering -U where a read may be forced).
 */
export function lockForGuardedReading(fd: number): { writtenElsewhere: boolean } {
  const locks = byteLocks();
  if (locks === null) return { writtenElsewhere: false };
  if (!awaitCowbellTurn(locks, fd, 'shared')) return { writtenElsewhere: false };
  awaitNoClaim(locks, fd, COWBELL_REPLACING_BYTE);
  if (locks.heldElsewhere(fd, USES_BASE + write) || locks.heldElsewhere(fd, USES_BASE + resize)) {
    applyLocks(locks, fd, READER_LOCKS);
    return { writtenElsewhere: true };
  }
  if (!applyLocks(locks, fd, GUARD_LOCKS)) return { writtenElsewhere: false };
  if (conflictFor(locks, fd, GUARD_LOCKS)) throw inUseError();
  return { writtenElsewhere: false };
}

/** Why a file about to be replaced cannot be: another Cowbell process reading it (it takes turns), or another program holding it against writers. */
function replacingRefusal(locks: ByteLocks, fd: number): Qcow2Error {
  return locks.heldElsewhere(fd, COWBELL_BYTE) ? busyError() : keptFromWritersError();
}

/**
 * Whether another program reads the file and lets nobody write or resize it meanwhile: a running
 * VM's backing file, qemu-io -r, qemu-nbd -r, a qemu-img reading it. Replacing the file is a write
 * to them (QEMU refuses its own writes there): a VM that later reopens it by name (a live
 * block-commit) would write into the new file with the old file's tables.
 */
function keptFromWriters(locks: ByteLocks, fd: number): boolean {
  return locks.heldElsewhere(fd, UNSHARED_BASE + write) || locks.heldElsewhere(fd, UNSHARED_BASE + resize);
}

function keptFromWritersError(): Qcow2Error {
  return new Qcow2Error('IN_USE', 'The disk is held by another program that lets nobody write it (a running VM using it as a backing file, or qemu-img/qemu-io/qemu-nbd reading it); replacing it now could lose data: stop that program first');
}

/**
 * For a guarded source about to be replaced by its rewrite, through the guard's own descriptor (a
 * fresh one would see the guard's locks as another program's): IN_USE if another program now
 * writes it, or has begun to hold it against writers since the guard was taken — the guard keeps
 * writers out, not readers, so a VM can start on an overlay of it meanwhile.
 */
export function refuseReplacingGuarded(guardFd: number): void {
  const locks = byteLocks();
  if (locks === null) return;
  if (locks.heldElsewhere(guardFd, USES_BASE + write) || locks.heldElsewhere(guardFd, USES_BASE + resize)) throw inUseError();
  if (keptFromWriters(locks, guardFd)) throw replacingRefusal(locks, guardFd);
}

/**
 * Whether a file about to be replaced by a new one (not the caller's own source) is written,
 * resized, or held against writers by another program: IN_USE if so.
 */
export function refuseReplacingHeld(fd: number): void {
  const locks = byteLocks();
  if (locks === null) return;
  if (locks.heldElsewhere(fd, USES_BASE + write) || locks.heldElsewhere(fd, USES_BASE + resize)) throw inUseError();
  if (keptFromWriters(locks, fd)) throw keptFromWritersError();
}

/**
 * Whether another program holds the file to write or resize it (a VM, qemu-nbd, a Cowbell writer),
 * tested without taking any lock: for a file about to be replaced, whose readers may be this very
 * process (an in-place rewrite reads the old file until the new one replaces it).
 */
export function writtenElsewhere(fd: number): boolean {
  const locks = byteLocks();
  if (locks === null) return false;
  return locks.heldElsewhere(fd, USES_BASE + write) || locks.heldElsewhere(fd, USES_BASE + resize);
}

/**
 * Whether nobody else has the file open to write it: Cowbell's byte can be taken exclusively
 * (every Cowbell writer holds it) and no QEMU program uses it for writing. Takes that byte, which
 * closing fd gives back. False whenever the platform or the file system cannot tell; fd must be
 * open for writing.
 */
export function abandonedByWriters(fd: number): boolean {
  const locks = byteLocks();
  if (locks === null) return false;
  return locks.lock(fd, COWBELL_BYTE, 'exclusive') === 'locked' && !locks.heldElsewhere(fd, USES_BASE + write) && !locks.heldElsewhere(fd, USES_BASE + resize);
}

const nap = new Int32Array(new SharedArrayBuffer(4));

/** False when the file system cannot lock; IN_USE when another Cowbell keeps the image past the wait. */
function awaitCowbellTurn(locks: ByteLocks, fd: number, type: LockType): boolean {
  const deadline = Date.now() + lockTiming.busyWaitMs;
  for (;;) {
    const outcome = locks.lock(fd, COWBELL_BYTE, type);
    if (outcome !== 'conflict') return outcome === 'locked';
    if (Date.now() >= deadline) throw busyError();
    // The engine is synchronous (a worker thread or the command line): sleeping blocks nothing else.
    Atomics.wait(nap, 0, 0, lockTiming.pollMs);
  }
}

/**
 * Takes `byte` as a claim no other descriptor holds, waiting for one that does (IN_USE past the
 * wait). A read-only descriptor cannot take a write lock, so the claim is a read lock tested
 * before and after: two claiming at once both see the other, let go, and try again after a
 * random nap. False when the file system cannot lock.
 */
function awaitSoleClaim(locks: ByteLocks, fd: number, byte: number): boolean {
  const deadline = Date.now() + lockTiming.busyWaitMs;
  for (;;) {
    if (!locks.heldElsewhere(fd, byte)) {
      const outcome = locks.lock(fd, byte, 'shared');
      if (outcome === 'unsupported') return false;
      if (outcome === 'locked' && !locks.heldElsewhere(fd, byte)) return true;
      locks.unlock(fd, byte);
    }
    if (Date.now() >= deadline) throw busyError();
    Atomics.wait(nap, 0, 0, lockTiming.pollMs + Math.floor(Math.random() * lockTiming.pollMs));
  }
}

/** Waits (up to the busy wait) while another open file description holds `byte`: a rewrite replacing the file (awaitSoleClaim's claim). */
function awaitNoClaim(locks: ByteLocks, fd: number, byte: number): void {
  const deadline = Date.now() + lockTiming.busyWaitMs;
  while (locks.heldElsewhere(fd, byte)) {
    if (Date.now() >= deadline) throw busyError();
    Atomics.wait(nap, 0, 0, lockTiming.pollMs + Math.floor(Math.random() * lockTiming.pollMs));
  }
}

/** False when the file system cannot lock (QEMU then warns and goes on; so does Cowbell, silently). */
function applyLocks(locks: ByteLocks, fd: number, set: LockSet): boolean {
  const bytes = [...set.uses.map((bit) => USES_BASE + bit), ...set.unshared.map((bit) => UNSHARED_BASE + bit)];
  for (const byte of bytes) {
    const outcome = locks.lock(fd, byte, 'shared');
    if (outcome === 'unsupported') return false;
    // Nobody following QEMU's protocol takes an exclusive lock there; whoever did is in the way.
    if (outcome === 'conflict') throw inUseError();
  }
  return true;
}

/** QEMU's check: nobody unshares what we use, nobody uses what we do not share. */
function conflictFor(locks: ByteLocks, fd: number, set: LockSet): boolean {
  return set.uses.some((bit) => locks.heldElsewhere(fd, UNSHARED_BASE + bit)) || set.unshared.some((bit) => locks.heldElsewhere(fd, USES_BASE + bit));
}

// ------------------------------------------------------------------ the platform

let loaded: ByteLocks | null | undefined;

/**
 * OFD locks on 64-bit Linux (struct flock with 64-bit offsets, F_RDLCK 0, F_WRLCK 1, F_UNLCK 2).
 * Elsewhere locking is a no-op: macOS and the BSDs have no OFD locks (QEMU falls back to POSIX
 * locks there, which one close() in the process drops), Windows has neither.
 */
function byteLocks(): ByteLocks | null {
  if (loaded !== undefined) return loaded;
  loaded = process.platform === 'linux' && (process.arch === 'x64' || process.arch === 'arm64') ? linuxOfdLocks() : null;
  return loaded;
}

const F_OFD_GETLK = 36;
const F_OFD_SETLK = 37;
const F_RDLCK = 0;
const F_WRLCK = 1;
const F_UNLCK = 2;
const SEEK_SET = 0;
const EACCES = 13;
const EAGAIN = 11;
/** The kernel or the file system has no OFD locks (EINVAL before Linux 3.15, ENOLCK/EOPNOTSUPP on some network file systems). */
const UNSUPPORTED_ERRNOS = new Set([22, 37, 95]);

interface Flock {
  l_type: number;
  l_whence: number;
  l_start: number;
  l_len: number;
  l_pid: number;
}

function linuxOfdLocks(): ByteLocks {
  const loaded = libc();
  if (loaded instanceof Error) {
    throw new Qcow2Error('INTERNAL', `Cowbell cannot lock disk images here: its native helper (koffi) did not load (${loaded.message})`, { cause: loaded });
  }
  const { koffi, library } = loaded;
  const flock = koffi.struct({ l_type: 'short', l_whence: 'short', l_start: 'int64', l_len: 'int64', l_pid: 'int' });
  const flockIn = koffi.pointer(flock);
  const flockInOut = koffi.inout(koffi.pointer(flock));
  const fcntl = library.func('int fcntl(int fd, int cmd, ...)');
  const request = (type: number, byte: number): Flock => ({ l_type: type, l_whence: SEEK_SET, l_start: byte, l_len: 1, l_pid: 0 });
  const failure = (what: string, errno: number): Qcow2Error => new Qcow2Error('IO_ERROR', `Could not ${what} the disk's lock (errno ${errno})`);
  return {
    lock(fd, byte, type) {
      if ((fcntl(fd, F_OFD_SETLK, flockIn, request(type === 'shared' ? F_RDLCK : F_WRLCK, byte)) as number) === 0) return 'locked';
      const errno = koffi.errno();
      if (errno === EAGAIN || errno === EACCES) return 'conflict';
      if (UNSUPPORTED_ERRNOS.has(errno)) return 'unsupported';
      throw failure('take', errno);
    },
    heldElsewhere(fd, byte) {
      const probe = request(F_WRLCK, byte);
      if ((fcntl(fd, F_OFD_GETLK, flockInOut, probe) as number) !== 0) {
        const errno = koffi.errno();
        if (UNSUPPORTED_ERRNOS.has(errno)) return false;
        throw failure('test', errno);
      }
      return probe.l_type !== F_UNLCK;
    },
    unlock(fd, byte) {
      if ((fcntl(fd, F_OFD_SETLK, flockIn, request(F_UNLCK, byte)) as number) !== 0) throw failure('release', koffi.errno());
    },
  };
}
