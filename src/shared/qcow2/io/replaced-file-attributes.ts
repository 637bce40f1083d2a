/**
 * A new file that takes an existing file's name (a rewrite in place, convert or create --force)
 * gets what the file had besides its bytes, before any data is in it: owner, group, mode and
 * extended attributes (its POSIX ACL above all). A private disk (0600, a VM's user) stays private
 * and usable by that VM; a disk shared through an ACL keeps exactly the users the ACL names —
 * without it the mode's group bits, which are the ACL's mask, would open the disk to the owning
 * group. qemu-img's own changes keep all of it (they write the same file).
 */
import * as fs from 'node:fs';
import { Qcow2Error } from '../errors.ts';
import { ACCESS_ACL, readExtendedAttributes, writeExtendedAttributes } from './extended-attributes.ts';
import { BEFORE_DATA_FLAGS, KEPT_FLAGS, keepInodeFlags, readInodeFlags } from './inode-flags.ts';

/** What a replaced file had, read before the new one is written. */
export interface ReplacedFile {
  path: string;
  stats: fs.Stats;
  attributes: ReturnType<typeof readExtendedAttributes>;
  /** Its inode flags (chattr's), null where they cannot be read. */
  inodeFlags: number | null;
}

/** The file at `filePath` as a new one should keep it, or null where there is no regular file. */
export function readReplacedFile(filePath: string): ReplacedFile | null {
  let fd: number;
  try {
    fd = fs.openSync(filePath, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch {
    // A file the caller may replace but not read (mode 0200): its owner and mode still, no attributes.
    try {
      const stats = fs.statSync(filePath);
      return stats.isFile() ? { path: filePath, stats, attributes: [], inodeFlags: null } : null;
    } catch {
      return null;
    }
  }
  try {
    const stats = fs.fstatSync(fd);
    return stats.isFile() ? { path: filePath, stats, attributes: readExtendedAttributes(fd), inodeFlags: readInodeFlags(fd) } : null;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Gives the new file (open as `fd`) the replaced file's owner, group, permission bits and extended
 * attributes, and only those (not the ACL its folder's default gave it). `strict` (the disk rewritten in place: its users expect the same file) refuses what
 * cannot be kept; otherwise (a file replaced by request) what can be kept is, and the mode still
 * keeps others out. The setuid, setgid and sticky bits follow in keepSpecialModeBits: writing data
 * would clear the first two.
 */
export function keepReplacedAttributes(fd: number, replaced: ReplacedFile, strict: boolean): void {
  const { stats } = replaced;
  try {
    fs.fchownSync(fd, stats.uid, stats.gid);
  } catch (error) {
    const now = fs.fstatSync(fd);
    if (strict && now.uid !== stats.uid) {
      throw new Qcow2Error('PERMISSION_DENIED', `${replaced.path}: the disk belongs to another user (uid ${stats.uid}), and a rewrite in place would give it to you; run it as that user (or as root), or write to a new file (OUTPUT)`, { cause: error });
    }
    if (strict && now.gid !== stats.gid) {
      throw new Qcow2Error('PERMISSION_DENIED', `${replaced.path}: the disk's group (gid ${stats.gid}) cannot be kept (you are not in it), and its members would lose their access; run it as root or as a member, or write to a new file (OUTPUT)`, { cause: error });
    }
  }
  fs.fchmodSync(fd, stats.mode & 0o777);
  // How the data is to be stored (btrfs's No_COW), while the file is empty; the others (synchronous
  // writes above all) once the data is in, and none of them from the folder meanwhile.
  if (replaced.inodeFlags !== null) keepInodeFlags(fd, replaced.inodeFlags & BEFORE_DATA_FLAGS, KEPT_FLAGS);
  // security.* and trusted.* belong to the system (an IMA hash, file capabilities, which a write
  // drops anyway; a label its folder gives): kept where allowed, never a reason to refuse.
  const notKept = writeExtendedAttributes(fd, replaced.attributes).filter(({ name }) => name.startsWith('user.') || name.startsWith('system.posix_acl'));
  if (notKept.length === 0) return;
  const aclLost = notKept.some(({ name }) => name === ACCESS_ACL);
  if (strict || aclLost) {
    const names = notKept.map(({ name, code }) => `${name} (${code})`).join(', ');
    const why = aclLost ? 'without its access control list, other users would get other rights to it' : 'the new file would lose them';
    throw new Qcow2Error('PERMISSION_DENIED', `${replaced.path}: its extended attributes ${names} cannot be set on the new file, and ${why}; run it as the disk's owner or as root, or write to a new file (OUTPUT)`);
  }
}

/**
 * What follows the data: the setuid, setgid and sticky bits (a write by anyone but root clears the
 * first two) and the inode flags kept. A flag is never a reason to refuse: it holds no one's data
 * or rights (and a file system may ignore one, as btrfs ignores No_COW on a file with data).
 */
export function keepAfterData(fd: number, replaced: ReplacedFile): void {
  if ((replaced.stats.mode & 0o7000) !== 0) fs.fchmodSync(fd, replaced.stats.mode & 0o7777);
  if (replaced.inodeFlags !== null) keepInodeFlags(fd, replaced.inodeFlags, KEPT_FLAGS);
}
