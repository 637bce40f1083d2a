/**
 * qemu-img's small languages, as pure functions: sizes (`64M`, `1.5T`, `4096`) and `-o` option
 * strings (`cluster_size=64k,compat=1.1,extended_l2=on`, with `,,` for a comma in a value).
 */
import type { LuksCipherChoice } from '../shared/qcow2/crypto/luks-keys.ts';
import type { CreateOptions } from '../shared/qcow2/image/create.ts';
import { UsageError } from './command.ts';

const SIZE_SUFFIXES: Readonly<Record<string, number>> = { b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50, e: 2 ** 60 };

/**
 * A size in bytes: a number with an optional binary suffix (K, M, G, T, P, E; case does not
 * matter), as qemu-img reads one: decimal with an optional fraction (1.5T), or hexadecimal with a
 * 0x prefix and no fraction (0x100000, 0x10M), an optional leading +.
 */
export function parseSize(text: string): number {
  const match = /^\+?(?:0x([0-9a-f]+)|(\d+(?:\.\d+)?))([bkmgtpe])?$/i.exec(text.trim());
  if (match === null) throw new UsageError(`invalid size '${text}' (examples: 4096, 64M, 2G, 1.5T, 0x100000)`);
  const [, hex, digits = '', suffix] = match;
  const unit = suffix === undefined ? 1 : (SIZE_SUFFIXES[suffix.toLowerCase()] ?? 1);
  // Hexadecimal through BigInt: a double would round 0x20000000000001 to a neighbour without a word.
  const exact = hex === undefined ? null : BigInt(`0x${hex}`) * BigInt(unit);
  if (exact !== null && exact > BigInt(Number.MAX_SAFE_INTEGER)) throw new UsageError(`size '${text}' is too large`);
  const bytes = exact !== null ? Number(exact) : Math.floor(Number(digits) * unit);
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`size '${text}' is too large`);
  if (suffix === undefined && digits.includes('.')) throw new UsageError(`invalid size '${text}': a size in bytes must be a whole number`);
  return bytes;
}

/** Splits `-o` values into key=value pairs, in order; `,,` stands for a literal comma, a bare name is name=on. */
export function parseOptionString(text: string): Map<string, string> {
  const options = new Map<string, string>();
  let current = '';
  const finish = (): void => {
    if (current === '') return;
    const equals = current.indexOf('=');
    if (equals === 0) throw new UsageError(`invalid option '${current}' (expected name=value)`);
    // A bare name is name=on, as qemu-img reads it (-o extended_l2); an option that is no switch then refuses "on".
    const name = equals < 0 ? current : current.slice(0, equals);
    if (options.has(name)) throw new UsageError(`option '${name}' is given twice`);
    options.set(name, equals < 0 ? 'on' : current.slice(equals + 1));
    current = '';
  };
  for (let index = 0; index < text.length; index++) {
    const character = text[index];
    if (character === ',' && text[index + 1] === ',') {
      current += ',';
      index++;
    } else if (character === ',') finish();
    else current += character;
  }
  finish();
  return options;
}

function parseBoolean(name: string, value: string): boolean {
  const lower = value.toLowerCase();
  if (['on', 'yes', 'true', 'y'].includes(lower)) return true;
  if (['off', 'no', 'false', 'n'].includes(lower)) return false;
  throw new UsageError(`option ${name} must be on or off, not '${value}'`);
}

function oneOf<T extends string>(name: string, value: string, allowed: readonly T[]): T {
  const found = allowed.find((candidate) => candidate === value);
  if (found === undefined) throw new UsageError(`option ${name} must be one of ${allowed.join(', ')}, not '${value}'`);
  return found;
}

function positiveInteger(name: string, value: string): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`option ${name} must be a whole number, not '${value}'`);
  return Number(value);
}

const COMPAT_NAMES: Readonly<Record<string, '0.10' | '1.1'>> = { '0.10': '0.10', v2: '0.10', '1.1': '1.1', v3: '1.1' };

/** The create options that `-o` names (qemu-img's spelling); unknown names are a usage error. */
export function createOptionsFrom(options: Map<string, string>): CreateOptions {
  const result: CreateOptions = {};
  for (const [name, value] of options) {
    switch (name) {
      case 'size':
        result.size = parseSize(value);
        break;
      case 'cluster_size':
        result.clusterSize = parseSize(value);
        break;
      case 'compat': {
        const compat = COMPAT_NAMES[value];
        if (compat === undefined) throw new UsageError(`option compat must be 0.10 or 1.1, not '${value}'`);
        result.compat = compat;
        break;
      }
      case 'refcount_bits':
        result.refcountBits = positiveInteger(name, value);
        break;
      case 'extended_l2':
        result.extendedL2 = parseBoolean(name, value);
        break;
      case 'backing_file':
        result.backingFile = value;
        break;
      case 'backing_fmt':
        result.backingFormat = oneOf(name, value, ['qcow2', 'raw'] as const);
        break;
      case 'preallocation':
        // qemu-img's falloc and full reserve the whole disk's bytes up front; Cowbell's images stay sparse.
        if (value === 'falloc' || value === 'full') throw new UsageError(`preallocation=${value} is not supported (Cowbell's images stay sparse): use off, or metadata with create`);
        result.preallocation = oneOf(name, value, ['off', 'metadata'] as const);
        break;
      case 'compression_type':
        result.compressionType = oneOf(name, value, ['zlib', 'zstd'] as const);
        break;
      default:
        throw new UsageError(`unknown or unsupported option '${name}' (supported: ${CREATE_OPTION_NAMES.join(', ')}; -o help says what each takes)`);
    }
  }
  return result;
}

/** One `-o` option as `-o help` lists it: its name, the values it takes, what it does. */
export interface OptionHelp {
  name: string;
  values: string;
  what: string;
}

const CREATE_OPTION_HELP: readonly OptionHelp[] = [
  { name: 'backing_file', values: '<str>', what: 'file name of the backing file (its base image)' },
  { name: 'backing_fmt', values: '<qcow2|raw>', what: 'format of the backing file' },
  { name: 'cluster_size', values: '<size>', what: 'qcow2 cluster size, a power of two from 512 to 2M (default 64k)' },
  { name: 'compat', values: '<0.10|1.1>', what: 'qcow2 version: 0.10 (v2) or 1.1 (v3, the default)' },
  { name: 'compression_type', values: '<zlib|zstd>', what: 'how compressed clusters are compressed (zstd needs compat=1.1)' },
  { name: 'extended_l2', values: '<on|off>', what: 'extended L2 tables: 32 subclusters per cluster (compat=1.1)' },
  { name: 'preallocation', values: '<off|metadata>', what: 'metadata maps every cluster up front (create only); falloc and full are not supported' },
  { name: 'refcount_bits', values: '<1|2|4|8|16|32|64>', what: 'width of a refcount entry in bits (default 16)' },
  { name: 'size', values: '<size>', what: 'virtual disk size' },
];

/** compat as compress and compact take it: a disk keeps its own version unless upgraded. */
export const REWRITE_COMPAT_HELP: OptionHelp = { name: 'compat', values: '<1.1>', what: 'upgrade a compat 0.10 (v2) disk to 1.1 (v3) on the way, keeping every snapshot (by default a disk keeps its own)' };

const LUKS_OPTION_HELP: readonly OptionHelp[] = [
  { name: 'encrypt.format', values: '<luks>', what: 'encryption format (LUKS; Cowbell never writes the old qcow2 AES)' },
  { name: 'encrypt.cipher-alg', values: '<aes-128|aes-192|aes-256>', what: 'cipher (default aes-256)' },
  { name: 'encrypt.cipher-mode', values: '<xts|cbc>', what: 'cipher mode (default xts)' },
  { name: 'encrypt.ivgen-alg', values: '<plain|plain64|essiv>', what: 'IV generator (default plain64)' },
  { name: 'encrypt.ivgen-hash-alg', values: '<sha256>', what: 'hash for the essiv IV generator' },
  { name: 'encrypt.hash-alg', values: '<sha1|sha256|sha512>', what: 'hash for PBKDF2 and the anti-forensic splitter (default sha256)' },
  { name: 'encrypt.iter-time', values: '<ms>', what: 'time spent deriving the key from the passphrase, in milliseconds (default 2000)' },
];

/** What `-o help` prints: the options `names` (qemu-img's spelling), one a line, as qemu-img lists them. */
export function optionsHelp(names: readonly string[], overrides: readonly OptionHelp[] = []): string {
  const known = [...CREATE_OPTION_HELP, ...LUKS_OPTION_HELP].filter((entry) => names.includes(entry.name)).map((entry) => overrides.find((override) => override.name === entry.name) ?? entry);
  const width = Math.max(...known.map((entry) => entry.name.length + 1 + entry.values.length));
  return `Supported options:\n${known.map((entry) => `  ${`${entry.name}=${entry.values}`.padEnd(width)}  - ${entry.what}`).join('\n')}\n`;
}

export const CREATE_OPTION_NAMES: readonly string[] = CREATE_OPTION_HELP.map((entry) => entry.name);
export const LUKS_OPTION_NAMES: readonly string[] = LUKS_OPTION_HELP.map((entry) => entry.name);

/** Every `-o` given (qemu-img accepts several and joins them), parsed into create options. */
export function createOptionsFromArgs(values: readonly string[]): CreateOptions {
  return createOptionsFrom(parseOptionString(values.join(',')));
}

/** What `-o encrypt.…` asks of a new LUKS key (qemu-img's option names); absent fields take QEMU's defaults. */
export interface LuksOptions {
  cipher?: LuksCipherChoice;
  hash?: 'sha1' | 'sha256' | 'sha512';
  iterTimeMs?: number;
}

const LUKS_CREATE_OPTIONS = ['encrypt.format', 'encrypt.cipher-alg', 'encrypt.cipher-mode', 'encrypt.ivgen-alg', 'encrypt.ivgen-hash-alg', 'encrypt.hash-alg', 'encrypt.iter-time'];

/**
 * `-o encrypt.cipher-alg=aes-256,encrypt.cipher-mode=xts,encrypt.ivgen-alg=plain64,encrypt.hash-alg=sha256,encrypt.iter-time=2000`
 * for a new LUKS area; `only` narrows the names a command takes (`cowbell passphrase`: iter-time).
 */
export function luksOptionsFromArgs(values: readonly string[], command: string, only: readonly string[] = LUKS_CREATE_OPTIONS): LuksOptions {
  const options = parseOptionString(values.join(','));
  const result: LuksOptions = {};
  let keyBits: 128 | 192 | 256 = 256;
  let mode: LuksCipherChoice['mode'] = 'xts';
  let ivGenerator: LuksCipherChoice['ivGenerator'] = 'plain64';
  let ivHash: 'sha256' | undefined;
  let cipherAsked = false;
  for (const [name, value] of options) {
    if (!only.includes(name)) throw new UsageError(`${command}: unknown or unsupported option '${name}' (supported: ${only.join(', ')})`);
    switch (name) {
      case 'encrypt.format':
        if (value !== 'luks') throw new UsageError(`${command}: encrypt.format must be luks (Cowbell never writes the old qcow2 AES encryption), not '${value}'`);
        break;
      case 'encrypt.cipher-alg':
        keyBits = Number(oneOf(name, value, ['aes-128', 'aes-192', 'aes-256'] as const).slice(4)) as 128 | 192 | 256;
        cipherAsked = true;
        break;
      case 'encrypt.cipher-mode':
        mode = oneOf(name, value, ['xts', 'cbc'] as const);
        cipherAsked = true;
        break;
      case 'encrypt.ivgen-alg':
        ivGenerator = oneOf(name, value, ['plain', 'plain64', 'essiv'] as const);
        cipherAsked = true;
        break;
      case 'encrypt.ivgen-hash-alg':
        ivHash = oneOf(name, value, ['sha256'] as const);
        cipherAsked = true;
        break;
      case 'encrypt.hash-alg':
        result.hash = oneOf(name, value, ['sha1', 'sha256', 'sha512'] as const);
        break;
      case 'encrypt.iter-time': {
        const milliseconds = positiveInteger(name, value);
        if (milliseconds < 1) throw new UsageError(`option ${name} must be at least 1 (milliseconds)`);
        result.iterTimeMs = milliseconds;
        break;
      }
    }
  }
  if (ivHash !== undefined && ivGenerator !== 'essiv') throw new UsageError(`${command}: encrypt.ivgen-hash-alg goes with encrypt.ivgen-alg=essiv only`);
  // QEMU 7.2 encrypts key material in whole sectors: 24-byte keys × 4000 stripes are not, and it aborts on them.
  if (keyBits === 192 && mode === 'cbc') throw new UsageError(`${command}: aes-192 with cbc is not offered: QEMU 7.2 cannot create or open such a LUKS image`);
  if (cipherAsked) result.cipher = { aesKeyBits: keyBits, mode, ivGenerator, ivHash: ivGenerator === 'essiv' ? 'sha256' : null };
  return result;
}
