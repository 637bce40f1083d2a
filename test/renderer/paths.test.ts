import { describe, expect, it } from 'vitest';
import { baseName, folderOf } from '../../src/renderer/src/lib/paths.ts';

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
