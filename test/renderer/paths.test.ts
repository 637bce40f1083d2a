import { describe, expect, it } from 'vitest';
import { baseName, distinguishingFolders, folderOf, tidyPath } from '../../src/renderer/src/lib/paths.ts';

describe('host path pieces for display', () => {
  it('splits a POSIX path at / only: a backslash is part of a Linux file name', () => {
    expect(baseName('/vms/we\\ird.qcow2')).toBe('we\\ird.qcow2');
    expect(folderOf('/vms/we\\ird.qcow2')).toBe('/vms/');
    expect(baseName('/vms/fedora.qcow2')).toBe('fedora.qcow2');
    expect(baseName('/vms/folder/')).toBe('folder');
    expect(baseName('/')).toBe('/');
  });

  it('splits a Windows path at either separator', () => {
    expect(baseName('C:\\VMs\\win11.qcow2')).toBe('win11.qcow2');
    expect(folderOf('C:\\VMs\\win11.qcow2')).toBe('C:\\VMs\\');
    expect(baseName('C:/VMs/sub\\disk.qcow2')).toBe('disk.qcow2');
    expect(baseName('\\\\server\\share\\disk.qcow2')).toBe('disk.qcow2');
    expect(baseName('C:\\VMs\\')).toBe('VMs');
  });
});

describe('a path typed several ways', () => {
  it('is tidied to one spelling (UI audit: the same disk opened as ./ and // spellings made three sidebar entries), .. and other paths kept', () => {
    expect(tidyPath('/tmp/adisks/./rand.qcow2')).toBe('/tmp/adisks/rand.qcow2');
    expect(tidyPath('/tmp/adisks//rand.qcow2')).toBe('/tmp/adisks/rand.qcow2');
    expect(tidyPath('//tmp///a/./././b.qcow2')).toBe('/tmp/a/b.qcow2');
    expect(tidyPath('/vms/../other/disk.qcow2')).toBe('/vms/../other/disk.qcow2');
    expect(tidyPath('C:\\vms\\disk.qcow2')).toBe('C:\\vms\\disk.qcow2');
  });
});

describe('telling apart disks of the same name', () => {
  it('gives no hint to a name no other path shares', () => {
    expect(distinguishingFolders(['/vms/a.qcow2', '/vms/b.qcow2'])).toEqual(new Map());
  });

  it('shows the fewest last folders that differ, marking what it leaves out', () => {
    const hints = distinguishingFolders(['/home/me/vms/win/disk.qcow2', '/home/me/vms/linux/disk.qcow2', '/home/me/other.qcow2']);
    expect(hints).toEqual(new Map([
      ['/home/me/vms/win/disk.qcow2', '…/win'],
      ['/home/me/vms/linux/disk.qcow2', '…/linux'],
    ]));
    const deeper = distinguishingFolders(['/a/vms/disk.qcow2', '/b/vms/disk.qcow2', '/disk.qcow2']);
    expect(deeper.get('/a/vms/disk.qcow2')).toBe('a/vms');
    expect(deeper.get('/b/vms/disk.qcow2')).toBe('b/vms');
    expect(deeper.get('/disk.qcow2')).toBe('/');
  });

  it('uses the whole folder where the folders end alike, and Windows separators for Windows paths', () => {
    const hints = distinguishingFolders(['C:\\vms\\disk.qcow2', 'D:\\vms\\disk.qcow2', 'E:\\old\\vms\\disk.qcow2']);
    expect(hints.get('C:\\vms\\disk.qcow2')).toBe('C:\\vms\\');
    expect(hints.get('D:\\vms\\disk.qcow2')).toBe('D:\\vms\\');
    expect(hints.get('E:\\old\\vms\\disk.qcow2')).toBe('E:\\old\\vms\\');
    expect(distinguishingFolders(['C:\\a\\x\\disk.qcow2', 'C:\\b\\x\\disk.qcow2']).get('C:\\a\\x\\disk.qcow2')).toBe('a\\x');
  });
});
