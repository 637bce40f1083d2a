/**
 * Hostile LUKS headers inside a guest: the LUKS2 and LUKS1 volumes cryptsetup made (luks-disks.ts),
 * their JSON metadata changed at random places — each change re-checksummed, so that it is the
 * parser and not the checksum that must stand — and their binary headers changed byte by byte.
 * Reading, unlocking with the right passphrase and reading the decrypted data end in Cowbell's own
 * typed errors (or succeed), never in anything else; and a damaged primary copy falls back to the
 * secondary, as cryptsetup's does.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../../src/shared/qcow2/errors.ts';
import { decryptedReader, readGuestLuks } from '../../../../src/shared/qcow2/files/guest-luks.ts';
import { buildLuksDisk, extractPartition, LUKS_VOLUMES, type LuksFixtureDisk } from '../../../helpers/luks-disks.ts';
import { tempDir, type TempDir } from '../../../helpers/qemu.ts';
import { SeededRandom } from '../../../helpers/seeded-random.ts';
import { jsonOf, mutateJson, withJson } from './luks-mutations.ts';

const CASES = Number(process.env.LUKS_FUZZ_CASES ?? 120);
const EXPECTED_CODES = new Set(['FILESYSTEM_CORRUPT', 'FILESYSTEM_UNSUPPORTED', 'BAD_PASSPHRASE']);
/** Parameters whose key derivation would take longer than a test should wait are judged only by the parser. */
const CHEAP_KDF_KIB = 64 * 1024;

let folder: TempDir;
let disk: LuksFixtureDisk;
const encoder = new TextEncoder();

beforeAll(async () => {
  folder = tempDir();
  disk = await buildLuksDisk(folder.path, 'a');
}, 120_000);
afterAll(() => folder.cleanup());

function volumeBytes(partition: number): Uint8Array {
  return new Uint8Array(fs.readFileSync(extractPartition(disk, disk.raw, partition, folder.file(`p${partition}.img`))));
}

const readerOf = (bytes: Uint8Array) => (offset: number, length: number): Promise<Uint8Array> => {
  if (offset < 0 || offset + length > bytes.length) throw new Error(`the test's volume was read out of bounds (${offset}+${length})`);
  return Promise.resolve(bytes.slice(offset, offset + length));
};

/** Reads, unlocks and reads some decrypted sectors; returns what it ended in. */
async function exercise(bytes: Uint8Array, passphrase: string): Promise<string> {
  try {
    const luks = await readGuestLuks(readerOf(bytes), bytes.length);
    const costly = /"memory":\s*(\d+)/.exec(JSON.stringify(luks));
    if (costly !== null && Number(costly[1]) > CHEAP_KDF_KIB) return 'parsed';
    const key = await luks.unlock(encoder.encode(passphrase));
    const reader = decryptedReader(luks, luks.dataCipher(key), (buffer, offset) => {
      if (offset < 0 || offset + buffer.length > bytes.length) throw new Qcow2Error('FILESYSTEM_CORRUPT', 'past the volume');
      buffer.set(bytes.subarray(offset, offset + buffer.length));
    });
    const sector = new Uint8Array(4096);
    for (const at of [0, reader.virtualSize - sector.length]) if (at >= 0) reader.readInto(sector, at);
    return 'read';
  } catch (error) {
    if (error instanceof Qcow2Error && EXPECTED_CODES.has(error.code)) return error.code;
    throw error;
  }
}

describe('hostile LUKS headers inside a guest', { timeout: 300_000 }, () => {
  it('the real volumes read and unlock (the baseline every mutation departs from)', async () => {
    for (const spec of LUKS_VOLUMES) expect(await exercise(volumeBytes(spec.partition), spec.passphrases[0]!)).toBe('read');
  });

  it(`LUKS2 metadata changed at random (${CASES} cases per volume, checksums made good): typed errors only`, async () => {
    for (const spec of LUKS_VOLUMES.filter((volume) => volume.format === 'luks2')) {
      const original = volumeBytes(spec.partition);
      const random = new SeededRandom(spec.partition * 1000 + 7);
      const outcomes = new Map<string, number>();
      for (let index = 0; index < CASES; index++) {
        const json = jsonOf(original);
        for (let changes = random.int(1, 4); changes > 0; changes--) mutateJson(json, random);
        let bytes = withJson(original, 0, JSON.stringify(json));
        if (bytes === null) continue;
        // The secondary copy says the same (else the untouched one would simply be read).
        const secondary = Number(new DataView(bytes.buffer).getBigUint64(8));
        bytes = withJson(bytes, secondary, JSON.stringify(json)) ?? bytes;
        const outcome = await exercise(bytes, spec.passphrases[0]!);
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      }
      // The changes reach the parser's checks, and some leave a volume that still opens.
      expect(outcomes.get('FILESYSTEM_CORRUPT') ?? 0).toBeGreaterThan(CASES / 10);
      expect((outcomes.get('read') ?? 0) + (outcomes.get('parsed') ?? 0)).toBeGreaterThan(0);
    }
  });

  it('binary headers and key material changed byte by byte: typed errors only; a damaged primary falls back to the secondary', async () => {
    const random = new SeededRandom(99);
    for (const spec of LUKS_VOLUMES) {
      const original = volumeBytes(spec.partition);
      for (let index = 0; index < CASES / 3; index++) {
        const bytes = original.slice();
        const region = random.int(0, 3) === 0 ? 4096 : 600;
        for (let changes = random.int(1, 4); changes > 0; changes--) bytes[random.int(0, region)] = random.int(0, 256);
        await exercise(bytes, spec.passphrases[0]!);
      }
    }
    const luks2 = volumeBytes(2);
    luks2[4096 + 10] = luks2[4096 + 10]! ^ 0xff;
    expect(await exercise(luks2, LUKS_VOLUMES[0]!.passphrases[0]!)).toBe('read');
    const both = luks2.slice();
    const secondary = Number(new DataView(both.buffer).getBigUint64(8));
    both[secondary + 4096 + 10] = both[secondary + 4096 + 10]! ^ 0xff;
    expect(await exercise(both, LUKS_VOLUMES[0]!.passphrases[0]!)).toBe('FILESYSTEM_CORRUPT');
  });
});
