import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/cli/command.ts';
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
  ])('%s is %d bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it.each(['', '-1', '1X', 'G', '1.5', '1e9', '99999999E'])('rejects %j', (text) => {
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

  it('rejects a pair without a name or value, and a name given twice', () => {
    expect(() => parseOptionString('compat')).toThrow(UsageError);
    expect(() => parseOptionString('=1')).toThrow(UsageError);
    expect(() => parseOptionString('compat=1.1,compat=0.10')).toThrow(UsageError);
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
