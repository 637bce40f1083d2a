import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/cli/command.ts';
import { runCli } from '../../src/cli/run.ts';
import { createOptionsFrom, createOptionsFromArgs, parseOptionString, parseSize } from '../../src/cli/image-options.ts';

describe('parseSize', () => {
  it.each([
    ['4096', 4096],
    ['64M', 64 * 2 ** 20],
    ['64m', 64 * 2 ** 20],
    ['2G', 2 * 2 ** 30],
    ['1.5T', 1.5 * 2 ** 40],
    ['512k', 512 * 1024],
    ['100b', 100],
    [' 1G ', 2 ** 30],
    // As qemu-img 7.2 reads them (checked with qemu-img create): hexadecimal, with a suffix too, and a leading +.
    ['0x100000', 0x100000],
    ['0X10m', 16 * 2 ** 20],
    ['0x1fffffffffffff', Number.MAX_SAFE_INTEGER],
    ['+10k', 10 * 1024],
  ])('%s is %d bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it.each(['', '-1', '1X', 'G', '1.5', '1e9', '99999999E', '0x', '0x1.8', '0xg', '0x10.5M', '0x20000000000000', '0x7fffffffffffffff', '++1', '+-1'])('rejects %j', (text) => {
    expect(() => parseSize(text)).toThrow(UsageError);
  });
});

describe('parseOptionString', () => {
  it('splits name=value pairs, with ,, for a comma in a value', () => {
    expect([...parseOptionString('cluster_size=64k,backing_file=a,,b.qcow2,compat=1.1')]).toEqual([
      ['cluster_size', '64k'],
      ['backing_file', 'a,b.qcow2'],
      ['compat', '1.1'],
    ]);
    expect([...parseOptionString('')]).toEqual([]);
  });

  it('rejects a pair without a name, and a name given twice', () => {
    expect(() => parseOptionString('=1')).toThrow(UsageError);
    expect(() => parseOptionString('compat=1.1,compat=0.10')).toThrow(UsageError);
    expect(() => parseOptionString('extended_l2,extended_l2=off')).toThrow(UsageError);
  });

  it('reads a bare name as name=on, as qemu-img does (-o extended_l2); an option that takes no on then refuses it', () => {
    expect([...parseOptionString('extended_l2,cluster_size=64k')]).toEqual([
      ['extended_l2', 'on'],
      ['cluster_size', '64k'],
    ]);
    expect(createOptionsFrom(parseOptionString('extended_l2')).extendedL2).toBe(true);
    expect(() => createOptionsFrom(parseOptionString('compat'))).toThrow(UsageError);
  });
});

describe('createOptionsFrom', () => {
  it('maps qemu-img option names to create options', () => {
    expect(
      createOptionsFromArgs(['cluster_size=4k,compat=v3,refcount_bits=64', 'extended_l2=on,backing_file=base.img,backing_fmt=raw,preallocation=metadata,compression_type=zstd,size=1G']),
    ).toEqual({
      clusterSize: 4096,
      compat: '1.1',
      refcountBits: 64,
      extendedL2: true,
      backingFile: 'base.img',
      backingFormat: 'raw',
      preallocation: 'metadata',
      compressionType: 'zstd',
      size: 2 ** 30,
    });
    expect(createOptionsFromArgs(['compat=0.10,extended_l2=off'])).toEqual({ compat: '0.10', extendedL2: false });
  });

  it.each(['lazy_refcounts=on', 'compat=2', 'extended_l2=maybe', 'backing_fmt=vmdk', 'preallocation=full', 'refcount_bits=x'])('rejects %s', (text) => {
    expect(() => createOptionsFrom(parseOptionString(text))).toThrow(UsageError);
  });
});

describe('-o help', () => {
  async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCli(argv, { out: (text) => out.push(text), err: (text) => err.push(text) });
    return { code, out: out.join(''), err: err.join('') };
  }
  /** The option names a listing gives, in its order. */
  const listed = (text: string): string[] => [...text.matchAll(/^ {2}([a-z0-9_.-]+)=/gm)].map((match) => match[1] ?? '');

  it('lists the options a command takes, as qemu-img does, and needs no file (nothing is made)', async () => {
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'cowbell-options-help-'));
    try {
      const created = await cli(['create', '-f', 'qcow2', '-o', 'help']);
      expect(created).toMatchObject({ code: 0, err: '' });
      expect(created.out.startsWith('Supported options:\n')).toBe(true);
      expect(listed(created.out)).toEqual(['backing_file', 'backing_fmt', 'cluster_size', 'compat', 'compression_type', 'extended_l2', 'preallocation', 'refcount_bits', 'size']);
      // Among other options, spelled every way the parser takes -o, or as '?'.
      const disk = path.join(folder, 'never.qcow2');
      for (const argv of [['-o', 'cluster_size=4k,help', disk, '1G'], ['-ohelp', disk], ['--options=?', disk], ['--options', 'help']]) {
        expect(await cli(['create', ...argv])).toMatchObject({ code: 0, out: created.out });
      }
      expect(fs.existsSync(disk)).toBe(false);
      // Each command lists what it takes: convert keeps no size or preallocation of its own.
      expect(listed((await cli(['convert', '-O', 'qcow2', '-o', 'help'])).out)).toEqual(['backing_file', 'backing_fmt', 'cluster_size', 'compat', 'compression_type', 'extended_l2', 'refcount_bits']);
      expect(listed((await cli(['compress', '-o', 'help'])).out)).toEqual(['compat', 'compression_type']);
      expect(listed((await cli(['compact', '-o', 'help'])).out)).toEqual(['compat']);
      expect(listed((await cli(['encrypt', '-o', '?'])).out)).toEqual(['encrypt.format', 'encrypt.cipher-alg', 'encrypt.cipher-mode', 'encrypt.ivgen-alg', 'encrypt.ivgen-hash-alg', 'encrypt.hash-alg', 'encrypt.iter-time']);
      expect(listed((await cli(['passphrase', '-o', 'help'])).out)).toEqual(['encrypt.iter-time']);
      // A value named help (a backing file called so) is not a request for the list.
      expect((await cli(['create', '-o', 'backing_file=help', disk, '1G'])).out).not.toContain('Supported options');
    } finally {
      fs.rmSync(folder, { recursive: true, force: true });
    }
  });
});
