/**
 * A qcow2 disk holding a whole-disk ext4 filesystem with a snapshot "before" and files changed after
 * it, for files-diff's tests (engine, worker, CLI, e2e). The filesystem is made by `mke2fs -d`,
 * changed with `debugfs -w` (guest-filesystems.ts), and one file's bytes are changed on the raw image behind the
 * filesystem's back (same size, same time: only its content tells). Only the 64 KiB pieces of the
 * raw image that changed are written into the qcow2 (qemu-io write -s; guest-filesystems.ts's
 * writeRawIntoQcow2 writes every cluster), so the guest ranges that differ between the states are
 * those the changes touched, as a running guest would leave them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { debugfs, debugfsFacts, makeExtImage } from './guest-filesystems.ts';
import { qemuImg, qemuIo, tempDir, type TempDir } from './qemu.ts';

const PIECE = 64 * 1024;

export const BEFORE_FILES: Record<string, string> = {
  'etc/hostname': 'box\n',
  'etc/hosts': '127.0.0.1 localhost\n',
  'home/me/notes.txt': 'first notes\n',
  'home/me/keep.txt': 'kept as it is, said the file\n',
  'old/gone.txt': 'bye\n',
};

/** The same length as keep.txt's content: the change only its bytes show. */
export const KEEP_AFTER = 'KEPT AS IT IS, SAID THE FILE\n';
export const MOTD = 'welcome back\n';
export const NOTES_AFTER = 'second notes, longer than the first\n';

/** Writes into the qcow2's current state the 64 KiB pieces where `after` differs from `before`. */
export async function writeChangedPieces(image: string, before: Uint8Array, after: Uint8Array, folder: string): Promise<void> {
  const commands: string[] = [];
  for (let offset = 0; offset < after.length; offset += PIECE) {
    const piece = after.subarray(offset, offset + PIECE);
    if (Buffer.from(piece).equals(Buffer.from(before.subarray(offset, offset + PIECE)))) continue;
    const source = path.join(folder, `piece-${offset}`);
    fs.writeFileSync(source, piece);
    commands.push(`write -s ${source} ${offset} ${piece.length}`);
  }
  if (commands.length > 0) await qemuIo(image, commands);
}

export interface ChangedExtDisk {
  path: string;
  /** Guest bytes of keep.txt's data block, for tests that look at ranges. */
  keepOffset: number;
}

export async function makeChangedExtDisk(folder: string, name = 'files.qcow2'): Promise<ChangedExtDisk> {
  const work = fs.mkdtempSync(path.join(folder, 'ext-'));
  const raw = path.join(work, 'disk.raw');
  await makeExtImage(raw, 32, BEFORE_FILES, { label: 'guestroot', mkfsArgs: ['-b', '4096'] });
  const image = path.join(folder, name);
  await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', raw, image]);
  await qemuImg(['snapshot', '-c', 'before', image]);
  const before = new Uint8Array(fs.readFileSync(raw));

  fs.writeFileSync(path.join(work, 'motd'), MOTD);
  fs.writeFileSync(path.join(work, 'notes'), NOTES_AFTER);
  await debugfs(raw, ['write ' + path.join(work, 'motd') + ' etc/motd', 'rm old/gone.txt', 'rmdir old', 'rm home/me/notes.txt', 'write ' + path.join(work, 'notes') + ' home/me/notes.txt']);
  const keep = await debugfsFacts(raw, 'home/me/keep.txt');
  const keepOffset = (keep.blocks[0] ?? 0) * keep.blockBytes;
  if (!(keepOffset > 0)) throw new Error('debugfs gave no block for keep.txt');
  const fd = fs.openSync(raw, 'r+');
  fs.writeSync(fd, Buffer.from(KEEP_AFTER), 0, KEEP_AFTER.length, keepOffset);
  fs.closeSync(fd);
  await writeChangedPieces(image, before, new Uint8Array(fs.readFileSync(raw)), work);
  fs.rmSync(work, { recursive: true, force: true });
  return { path: image, keepOffset };
}

/** One changed disk for a whole test file: made in a temporary folder before the first test (handed to `made`), the folder removed after the last. */
export function useChangedExtDisk(made: (fixture: { folder: TempDir; disk: ChangedExtDisk }) => void): void {
  let folder: TempDir | null = null;
  beforeAll(async () => {
    folder = tempDir();
    made({ folder, disk: await makeChangedExtDisk(folder.path) });
  });
  afterAll(() => folder?.cleanup());
}
