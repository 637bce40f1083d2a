import { describe, expect, it } from 'vitest';
import { imagePathsFromArgs } from '../../src/main/launch-paths.ts';

describe('image paths from a launch', () => {
  it('takes paths, skips switches, and resolves relative paths against the launch folder', () => {
    expect(imagePathsFromArgs(['--enable-logging', 'a.qcow2', '/vm/b.qcow2', ''], '/home/me')).toEqual([
      '/home/me/a.qcow2',
      '/vm/b.qcow2',
    ]);
  });

  it('treats everything after -- as a path, even names that start with a dash', () => {
    expect(imagePathsFromArgs(['--', '-odd.qcow2'], '/home/me')).toEqual(['/home/me/-odd.qcow2']);
  });
});
