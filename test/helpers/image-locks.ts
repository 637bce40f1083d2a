/**
 * QEMU's image locks as a test sees them: which bytes of a file are locked (from /proc/locks), and
 * real qemu programs holding an image open until released (qemu-nbd, qemu-io in a long sleep).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { qemuImg } from './qemu.ts';

export interface HeldLock {
  kind: 'OFDLCK' | 'POSIX' | 'FLOCK' | string;
  type: 'READ' | 'WRITE' | string;
  start: number;
  end: number;
}

/** The locks anyone holds on `file` right now (Linux /proc/locks; OFD locks show pid -1). */
export function locksOn(file: string): HeldLock[] {
  const inode = fs.statSync(file).ino;
  const locks: HeldLock[] = [];
  for (const line of fs.readFileSync('/proc/locks', 'utf8').split('\n')) {
    // Blocked waiters are listed with "->"; only held locks count.
    if (line.includes('->')) continue;
    const fields = line.trim().split(/\s+/);
    // "7: OFDLCK ADVISORY READ -1 fe:00:2155611 203 203"
    if (fields.length < 8) continue;
    const [, kind = '', , type = '', , device = '', start = '', end = ''] = fields;
    if (device.split(':').at(-1) !== String(inode)) continue;
    locks.push({ kind, type, start: Number(start), end: end === 'EOF' ? Number.POSITIVE_INFINITY : Number(end) });
  }
  return locks;
}

/** Every locked byte of `file`, sorted (each lock range spelled out; QEMU's are single bytes or short runs). */
export function lockedBytes(file: string): number[] {
  const bytes = new Set<number>();
  for (const lock of locksOn(file)) for (let byte = lock.start; byte <= Math.min(lock.end, lock.start + 1024); byte++) bytes.add(byte);
  return [...bytes].sort((a, b) => a - b);
}

export function fileHash(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

export interface Holder {
  /** Stops the program and waits until its locks are gone. */
  release(): Promise<void>;
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Gone, or a zombie: a daemon reparented to a PID 1 that does not reap (as in some containers) stays one. */
function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/**
 * `qemu-nbd --fork` serving the image on a Unix socket: it returns once the server holds the
 * image (its locks taken), and keeps it until killed.
 */
export async function holdWithQemuNbd(image: string, options: { readOnly?: boolean; socketDir: string }): Promise<Holder> {
  const socket = `${options.socketDir}/nbd-${process.pid}-${Date.now()}.sock`;
  const pidFile = `${socket}.pid`;
  const args = ['-t', `--socket=${socket}`, '--fork', `--pid-file=${pidFile}`, '-f', 'qcow2'];
  if (options.readOnly) args.push('-r');
  args.push(image);
  await new Promise<void>((resolve, reject) => {
    const child = spawn('qemu-nbd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`qemu-nbd exited with ${code}: ${stderr}`))));
  });
  const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
  return {
    async release() {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // Already gone.
      }
      // On a loaded machine qemu-nbd has once let a SIGTERM go unanswered for over 10 s: then it is killed.
      try {
        await waitFor(() => processGone(pid), 'qemu-nbd to exit', 5_000);
      } catch {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Gone meanwhile.
        }
        await waitFor(() => processGone(pid), 'qemu-nbd to exit after SIGKILL');
      }
      fs.rmSync(socket, { force: true });
      fs.rmSync(pidFile, { force: true });
    },
  };
}

/** qemu-io with `extraArgs` (e.g. ['-r'], ['-r', '-U']) sleeping with the image (qcow2 unless told) open; ready once its locks show. */
export async function holdWithQemuIo(image: string, extraArgs: string[] = [], format: 'qcow2' | 'raw' = 'qcow2'): Promise<Holder> {
  const before = lockedBytes(image).length;
  const child: ChildProcess = spawn('qemu-io', [...extraArgs, '-f', format, '-c', 'sleep 60000', image], { stdio: 'ignore' });
  let exited = false;
  child.on('exit', () => (exited = true));
  await waitFor(() => exited || lockedBytes(image).length > before, 'qemu-io to lock the image');
  if (exited) throw new Error(`qemu-io ${extraArgs.join(' ')} exited before holding ${image}`);
  return {
    async release() {
      if (!exited) child.kill('SIGKILL');
      await waitFor(() => exited, 'qemu-io to exit');
    },
  };
}

/** Whether qemu-img can open the image for writing now: the error text if it cannot. */
export async function qemuImgSnapshotCreate(image: string, name: string): Promise<{ code: number; output: string }> {
  const result = await qemuImg(['snapshot', '-c', name, image], { okCodes: [0, 1] });
  return { code: result.code, output: result.stdout + result.stderr };
}
