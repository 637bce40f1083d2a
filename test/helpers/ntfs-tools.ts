/**
 * The ntfs-3g utilities (ntfsls, ntfscat, ntfsinfo, mkntfs, ntfscp) as the reference for the NTFS
 * reader's tests: they read a volume image without mounting it.
 */
import { execFile } from 'node:child_process';

function run(tool: string, args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(tool, args, { encoding: 'buffer', maxBuffer: 256 * 1024 * 1024, env: { ...process.env, TZ: 'UTC', LC_ALL: 'C.UTF-8' } }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`${tool} ${args.join(' ')} failed: ${error.message}\n${stderr.toString()}`));
      else resolve(stdout);
    });
  });
}

export interface NtfslsEntry {
  name: string;
  size: number;
  isDirectory: boolean;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** `ntfsls -l -F [-s]` of one folder, without "." and "..". */
export async function ntfsls(image: string, folder: string, options: { system?: boolean } = {}): Promise<NtfslsEntry[]> {
  const output = (await run('ntfsls', ['-l', '-F', ...(options.system ? ['-s'] : []), '-p', folder, image])).toString('utf8');
  const entries: NtfslsEntry[] = [];
  for (const line of output.split('\n')) {
    if (line.trim() === '') continue;
    // "   SIZE Mon DD HH:MM YYYY NAME": that time is not the modification time (sparse.vhd, touched to 2030, shows its creation), so it is not compared.
    const match = /^\s*(\d+) \w{3} +\d+ \d\d:\d\d \d{4} (.*)$/.exec(line);
    if (match === null) throw new Error(`unexpected ntfsls line: ${line}`);
    const [, size, rawName] = match as unknown as string[];
    const isDirectory = rawName!.endsWith('/');
    const name = isDirectory ? rawName!.slice(0, -1) : rawName!;
    if (name === '.' || name === '..') continue;
    entries.push({ name, size: Number(size), isDirectory });
  }
  return entries;
}

export function ntfscat(image: string, path: string): Promise<Buffer> {
  return run('ntfscat', [image, path]);
}

/** `ntfsinfo -F PATH`'s full text. */
export async function ntfsinfoFile(image: string, path: string): Promise<string> {
  return (await run('ntfsinfo', ['-F', path, image])).toString('utf8');
}

/** The $STANDARD_INFORMATION modification time ntfsinfo prints (the first "File Altered Time"), to the second. */
export async function ntfsinfoModifiedSeconds(image: string, path: string): Promise<number> {
  const match = /File Altered Time:\s+\w{3} (\w{3}) +(\d+) (\d\d):(\d\d):(\d\d) (\d{4}) UTC/.exec(await ntfsinfoFile(image, path));
  if (match === null) throw new Error(`ntfsinfo printed no modification time for ${path}`);
  const [, month, day, hour, minute, second, year] = match as unknown as string[];
  return Date.UTC(Number(year), MONTHS.indexOf(month!), Number(day), Number(hour), Number(minute), Number(second)) / 1000;
}

export async function ntfsVolumeName(image: string): Promise<string> {
  const match = /Volume Name: (.*)/.exec((await run('ntfsinfo', ['-m', image])).toString('utf8'));
  if (match === null) throw new Error('ntfsinfo printed no volume name');
  return match[1]!;
}

export async function mkntfs(image: string, label: string, clusterSize = 4096): Promise<void> {
  await run('mkntfs', ['--force', '--quick', '--sector-size', '512', '--cluster-size', String(clusterSize), '--label', label, image]);
}

/** Copies a host file into the volume (ntfscp writes through libntfs-3g, no mount needed). */
export async function ntfscp(image: string, source: string, destination: string): Promise<void> {
  await run('ntfscp', ['--force', image, source, destination]);
}

/** The byte holding $Volume's VOLUME_INFORMATION flags (record 3; its value's offset 10), found as the format lays it out. */
export function volumeFlagsOffset(bytes: Uint8Array): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const clusterBytes = view.getUint16(0x0b, true) * (bytes[0x0d] as number);
  const perRecord = view.getInt8(0x40);
  const recordBytes = perRecord < 0 ? 2 ** -perRecord : perRecord * clusterBytes;
  const record = Number(view.getBigUint64(0x30, true)) * clusterBytes + 3 * recordBytes;
  for (let at = record + view.getUint16(record + 0x14, true); view.getUint32(at, true) !== 0xffffffff; at += view.getUint32(at + 4, true)) {
    if (view.getUint32(at, true) === 0x70) return at + view.getUint16(at + 20, true) + 10;
  }
  throw new Error('no VOLUME_INFORMATION in $Volume');
}
