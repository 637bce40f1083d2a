"""What the guest filesystem fixture scripts share (XFS, btrfs): running the tools, content that
compresses well but differs block by block, the manifest of what the kernel reports of every
entry, and a qcow2 of one or more states written as a running guest would leave them."""
import ctypes
import gzip
import hashlib
import os
import shutil
import stat
import subprocess

PIECE = 64 * 1024
libc = ctypes.CDLL('libc.so.6', use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2


def run(*args, **kwargs):
    return subprocess.run(list(args), check=True, capture_output=True, **kwargs)


def pattern(length, seed):
    """Bytes that compress well but differ block by block (a block's index is in it)."""
    block = 1024
    return b''.join((f'{seed}:{index:08d};'.encode() * (block // 10 + 1))[:block] for index in range((length + block - 1) // block))[:length]


def punch_every_other_block(path, block):
    """Every other block of the file becomes a hole: each block left is an extent of its own."""
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        for offset in range(block, size, 2 * block):
            if libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, block) != 0:
                raise OSError(ctypes.get_errno(), 'fallocate punch hole')
    finally:
        os.close(fd)


def guest_name(raw):
    """A name as Cowbell spells it: UTF-8, a byte that is not as \\xNN, a backslash doubled."""
    return '\\\\'.join(part.decode('utf-8', 'backslashreplace') for part in raw.split(b'\\'))


def data_ranges(path, size):
    ranges = []
    fd = os.open(path, os.O_RDONLY)
    try:
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            ranges.append([start, end - start])
            offset = end
    finally:
        os.close(fd)
    return ranges


def manifest(root, errors=None):
    """What the kernel says of every entry under root (paths as Cowbell spells them). With an
    `errors` list, an entry the kernel cannot read is noted there instead of ending the walk."""
    entries = {}
    for folder, folders, files in os.walk(root.encode(), onerror=None if errors is None else lambda error: errors.append(str(error))):
        for name in folders + files:
            path = os.path.join(folder, name)
            rel = '/' + '/'.join(guest_name(part) for part in os.path.relpath(path, root.encode()).split(b'/'))
            try:
                entries[rel] = manifest_entry(path)
            except OSError as error:
                if errors is None:
                    raise
                errors.append(f'{rel}: {error}')
    return dict(sorted(entries.items()))


def manifest_entry(path):
    info = os.lstat(path)
    kind = 'directory' if stat.S_ISDIR(info.st_mode) else 'symlink' if stat.S_ISLNK(info.st_mode) else 'file' if stat.S_ISREG(info.st_mode) else 'other'
    entry = {'kind': kind, 'size': 0 if kind == 'directory' else info.st_size, 'mtimeNs': str(info.st_mtime_ns), 'permissions': stat.S_IMODE(info.st_mode), 'inode': info.st_ino}
    if kind == 'symlink':
        entry['target'] = guest_name(os.readlink(path))
    if kind == 'file':
        with open(path, 'rb') as f:
            # The first 64 bits of the hash: enough to tell content apart, a third of the manifest's size.
            entry['sha256'] = hashlib.sha256(f.read()).hexdigest()[:16]
        entry['dataRanges'] = data_ranges(path, info.st_size)
    return entry


def mounted(image, target, *options):
    run('mount', '-o', ','.join(('loop',) + options), image, target)


def qcow2_of(work, raws, target, snapshots=()):
    """A qcow2 of raws[0]; each later raw written over it as the 64 KiB pieces that differ, after a
    snapshot named by `snapshots` (one name for each later raw) keeps the state before it."""
    qcow2 = os.path.join(work, 'out.qcow2')
    run('qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', raws[0], qcow2)
    for earlier, later, name in zip(raws, raws[1:], snapshots):
        run('qemu-img', 'snapshot', '-c', name, qcow2)
        with open(earlier, 'rb') as a, open(later, 'rb') as b:
            commands = []
            offset = 0
            while True:
                before, after = a.read(PIECE), b.read(PIECE)
                if not after:
                    break
                if before != after:
                    piece = os.path.join(work, f'piece-{offset}')
                    with open(piece, 'wb') as f:
                        f.write(after)
                    commands += ['-c', f'write -s {piece} {offset} {len(after)}']
                offset += PIECE
        for start in range(0, len(commands), 200):
            run('qemu-io', '-f', 'qcow2', *commands[start:start + 200], qcow2)
    run('qemu-img', 'check', qcow2)
    with open(qcow2, 'rb') as source, gzip.open(target, 'wb', 9) as out:
        shutil.copyfileobj(source, out)
    os.unlink(qcow2)


def write_file(path, data, mode=0o644):
    """A file with its folders made, its content and mode set; its path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)
    os.chmod(path, mode)
    return path


def change_behind_size_and_time(path, data):
    """`data` written over the file's first bytes, its size and time left as they were: only its content tells."""
    times = os.stat(path)
    fd = os.open(path, os.O_WRONLY)
    os.pwrite(fd, data, 0)
    os.close(fd)
    os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))
