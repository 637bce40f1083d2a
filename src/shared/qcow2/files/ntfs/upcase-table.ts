/**
 * NTFS compares names case-insensitively through the volume's own $UpCase table (one UTF-16 code
 * unit to another), so lookups match what Windows finds. A volume whose table cannot be read falls
 * back to JavaScript's per-unit upper case rather than refusing every path.
 */
import { ATTRIBUTE } from './mft-record.ts';
import { MFT_RECORD, type NtfsVolume } from './ntfs-volume.ts';
import { simpleUpperCase } from '../simple-upcase.ts';

const UPCASE_SIZE = 65536 * 2;

export type UpcaseName = (name: string) => string;

const fallbackUpcase: UpcaseName = simpleUpperCase;

export async function loadUpcase(volume: NtfsVolume): Promise<UpcaseName> {
  try {
    const file = await volume.file(MFT_RECORD.upcase);
    const stream = volume.attributeStream(file, ATTRIBUTE.data, '');
    if (stream === null || stream.size !== UPCASE_SIZE) return fallbackUpcase;
    const table = new Uint8Array(UPCASE_SIZE);
    await stream.read(table, 0, '$UpCase');
    const tableView = new DataView(table.buffer);
    const units = new Uint16Array(65536);
    for (let unit = 0; unit < 65536; unit++) units[unit] = tableView.getUint16(unit * 2, true);
    return (name) => {
      const mapped = new Uint16Array(name.length);
      for (let index = 0; index < name.length; index++) mapped[index] = units[name.charCodeAt(index)] ?? 0;
      return String.fromCharCode(...mapped);
    };
  } catch {
    return fallbackUpcase;
  }
}
