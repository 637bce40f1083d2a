import { describe, expect, it } from 'vitest';
import { isAppAbout, isImageInfo, isPathCompletions } from '../../src/renderer/src/lib/reply-guards.ts';
import { imageInfo } from './fixtures.ts';

describe('reply guards', () => {
  it('accepts an ImageInfo as qemu-img shapes it, with or without snapshots', () => {
    expect(isImageInfo(imageInfo())).toBe(true);
    expect(isImageInfo(imageInfo({ snapshots: undefined }))).toBe(true);
  });

  it('refuses replies the info panel could not draw', () => {
    expect(isImageInfo(null)).toBe(false);
    expect(isImageInfo({ ...imageInfo(), 'virtual-size': '1G' })).toBe(false);
    expect(isImageInfo({ ...imageInfo(), 'cluster-size': -1 })).toBe(false);
    expect(isImageInfo({ ...imageInfo(), snapshots: [{ name: 'no id' }] })).toBe(false);
    expect(isImageInfo({ ...imageInfo(), 'format-specific': { type: 'qcow2', data: { compat: '2.0' } } })).toBe(false);
  });

  it('checks completions and the about reply', () => {
    expect(isPathCompletions([{ path: '/a', kind: 'folder' }])).toBe(true);
    expect(isPathCompletions([{ path: '/a', kind: 'socket' }])).toBe(false);
    expect(isAppAbout({ name: 'Cowbell', version: '0.1.0', mode: 'browser', platform: 'linux' })).toBe(true);
    expect(isAppAbout({ name: 'Cowbell', mode: 'tty' })).toBe(false);
  });
});
