/**
 * QEMU's system emulator (Debian's qemu-system-x86, 7.2) as the judge of what only a VM can
 * tell: `savevm` writes a real VM state into an image, `loadvm` reads one back. No guest runs:
 * the machine is created paused, with the disk attached to no device, and the monitor (HMP) is
 * driven on stdin.
 */
import { runTool } from './qemu.ts';

/** The monitor's line editing: ANSI escape sequences (ESC [ … letter). */
const MONITOR_ECHO = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*[A-Za-z]`, 'g');

/** Runs HMP `commands` against a paused VM holding `image`; returns what the monitor printed, without its line editing. */
export async function qemuMonitor(image: string, commands: string[]): Promise<string> {
  const script = [...commands, 'quit', ''].join('\n');
  const result = await runTool('sh', [
    '-c',
    `printf '%s' "$0" | timeout 60 qemu-system-x86_64 -machine pc,accel=tcg -nodefaults -display none -S -drive "file=$1,if=none,id=disk0,format=qcow2" -monitor stdio`,
    script,
    image,
  ]);
  return (result.stdout + result.stderr).replace(MONITOR_ECHO, '');
}

/** `savevm NAME`: a snapshot with the VM's state (a few hundred KiB), as a user's VM would take it. */
export async function saveVm(image: string, name: string): Promise<void> {
  const output = await qemuMonitor(image, [`savevm ${name}`]);
  if (/error/i.test(output)) throw new Error(`savevm ${name} failed:\n${output}`);
}

/** Whether `loadvm NAME` restores the snapshot's VM state without an error. */
export async function loadVm(image: string, name: string): Promise<{ ok: boolean; output: string }> {
  const output = await qemuMonitor(image, [`loadvm ${name}`, 'info status']);
  return { ok: !/error/i.test(output) && /VM status/.test(output), output };
}
