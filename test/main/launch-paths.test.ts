import { describe, expect, it } from 'vitest';
import { imagePathsFromArgs, launchArguments } from '../../src/main/launch-paths.ts';

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

  it('turns file:// URLs (a desktop entry’s %U) into paths', () => {
    expect(imagePathsFromArgs(['file:///vm/my%20disk.qcow2'], '/home/me')).toEqual(['/vm/my disk.qcow2']);
  });
});

describe('a launch’s own arguments', () => {
  it('are everything after the executable when packaged', () => {
    expect(launchArguments(['/opt/Cowbell/cowbell', '--no-sandbox', 'a.qcow2'], true)).toEqual(['--no-sandbox', 'a.qcow2']);
  });

  it('start after the app folder when unpackaged, whatever switches come before it (as Playwright launches)', () => {
    expect(launchArguments(['/usr/bin/electron', '/repo', '--', 'a.qcow2'], false)).toEqual(['--', 'a.qcow2']);
    expect(launchArguments(['/usr/bin/electron', '--no-sandbox', '/repo', '/vm/a.qcow2'], false)).toEqual(['/vm/a.qcow2']);
    expect(launchArguments(['/usr/bin/electron', '--inspect=0'], false)).toEqual([]);
  });
});
