import { mount } from '@vue/test-utils';
import { describe, expect, it } from 'vitest';
import ImageInfoPanel from '../../src/renderer/src/components/ImageInfoPanel.vue';
import SnapshotList from '../../src/renderer/src/components/SnapshotList.vue';
import { imageInfo } from './fixtures.ts';

function text(wrapper: ReturnType<typeof mount>, testId: string): string {
  return wrapper.get(`[data-testid="${testId}"]`).text();
}

describe('ImageInfoPanel', () => {
  it('shows sizes in binary units with the exact byte count as a tooltip', () => {
    const wrapper = mount(ImageInfoPanel, { props: { info: imageInfo() } });
    expect(text(wrapper, 'info-virtual-size')).toBe('1 GiB');
    expect(text(wrapper, 'info-file-size')).toBe('196 KiB');
    expect(text(wrapper, 'info-cluster-size')).toBe('64 KiB');
    expect(wrapper.get('[data-testid="info-virtual-size"]').attributes('title')).toBe('1,073,741,824 bytes');
  });

  it('names compat 1.1 qcow2 v3 and compat 0.10 qcow2 v2', () => {
    const v3 = mount(ImageInfoPanel, { props: { info: imageInfo() } });
    expect(text(v3, 'info-version')).toBe('qcow2 v3');
    const info = imageInfo();
    info['format-specific'].data.compat = '0.10';
    const v2 = mount(ImageInfoPanel, { props: { info } });
    expect(text(v2, 'info-version')).toBe('qcow2 v2');
    // Only a v2 disk is told of the upgrade (the rewrite dialogs offer it).
    expect(text(v2, 'info-version-note')).toContain('Compact… or Compress… can upgrade it to v3, keeping every snapshot');
    expect(v3.find('[data-testid="info-version-note"]').exists()).toBe(false);
  });

  it('shows no encryption, LUKS, and legacy AES', () => {
    expect(text(mount(ImageInfoPanel, { props: { info: imageInfo() } }), 'info-encryption')).toBe('None');
    const luks = imageInfo({ encrypted: true });
    luks['format-specific'].data.encrypt = { format: 'luks' };
    expect(text(mount(ImageInfoPanel, { props: { info: luks } }), 'info-encryption')).toBe('LUKS');
    const aes = imageInfo({ encrypted: true });
    aes['format-specific'].data.encrypt = { format: 'aes' };
    expect(text(mount(ImageInfoPanel, { props: { info: aes } }), 'info-encryption')).toContain('AES');
    expect(mount(ImageInfoPanel, { props: { info: luks } }).find('[data-testid="info-unencrypted"]').exists()).toBe(false);
  });

  it('warns where an encrypted disk stores guest data in the clear (compressed clusters QEMU wrote), and says what encrypts it', () => {
    const luks = imageInfo({ encrypted: true, 'unencrypted-bytes': 1536 * 1024 });
    luks['format-specific'].data.encrypt = { format: 'luks' };
    const warning = text(mount(ImageInfoPanel, { props: { info: luks } }), 'info-unencrypted');
    expect(warning).toBe('1.5 MiB of this encrypted disk is stored unencrypted: compressed clusters, which QEMU writes in the clear. Compact… encrypts them.');
    // Compact does not take the old AES encryption; Encrypt moves such a disk to LUKS (crypt soak audit F3).
    const aes = imageInfo({ encrypted: true, 'unencrypted-bytes': 64 * 1024 });
    aes['format-specific'].data.encrypt = { format: 'aes' };
    expect(text(mount(ImageInfoPanel, { props: { info: aes } }), 'info-unencrypted')).toBe(
      '64 KiB of this encrypted disk is stored unencrypted: compressed clusters, which QEMU writes in the clear. Encrypt… encrypts them, moving the disk to LUKS.',
    );
  });

  it('shows the backing file with its format, or that there is none', () => {
    const alone = mount(ImageInfoPanel, { props: { info: imageInfo() } });
    expect(text(alone, 'info-backing-file')).toContain('None');
    const overlay = mount(ImageInfoPanel, {
      props: { info: imageInfo({ 'backing-filename': 'base.qcow2', 'backing-filename-format': 'qcow2' }) },
    });
    expect(text(overlay, 'info-backing-file')).toContain('base.qcow2');
    expect(text(overlay, 'info-backing-format')).toBe('(qcow2)');
  });

  it('shows dirty, corrupt and read-only flags, and "Clean" when none is set', () => {
    const clean = mount(ImageInfoPanel, { props: { info: imageInfo() } });
    expect(text(clean, 'info-flags')).toBe('Clean');
    const info = imageInfo({ 'dirty-flag': true, 'read-only-reason': 'A running VM holds this disk.' });
    info['format-specific'].data.corrupt = true;
    const flagged = mount(ImageInfoPanel, { props: { info } });
    expect(text(flagged, 'flag-dirty')).toBe('Dirty');
    expect(text(flagged, 'flag-corrupt')).toBe('Corrupt');
    expect(text(flagged, 'flag-read-only')).toBe('Read-only');
    expect(flagged.get('[data-testid="flag-read-only"]').attributes('title')).toBe('A running VM holds this disk.');
    expect(flagged.find('[data-testid="flag-clean"]').exists()).toBe(false);
  });

  it('shows compression type and refcount width', () => {
    const wrapper = mount(ImageInfoPanel, { props: { info: imageInfo() } });
    expect(text(wrapper, 'info-compression')).toBe('zlib');
    expect(text(wrapper, 'info-refcounts')).toBe('16-bit');
  });
});

describe('SnapshotList', () => {
  it('lists every snapshot by name, in the order of the image', () => {
    const wrapper = mount(SnapshotList, { props: { snapshots: imageInfo().snapshots ?? [] } });
    expect(wrapper.findAll('[data-testid="snapshot-name"]').map((cell) => cell.text())).toEqual([
      'fresh install',
      'before upgrade',
    ]);
    expect(text(wrapper, 'snapshot-count')).toBe('2');
  });

  it('shows VM state size and the VM clock as qemu-img prints it', () => {
    const wrapper = mount(SnapshotList, { props: { snapshots: imageInfo().snapshots ?? [] } });
    const rows = wrapper.findAll('[data-testid="snapshot-row"]');
    expect(rows[0]?.text()).toContain('none');
    expect(rows[1]?.text()).toContain('512 MiB');
    expect(rows[1]?.text()).toContain('01:02:05.250');
  });

  it('says so when there are no snapshots', () => {
    const wrapper = mount(SnapshotList, { props: { snapshots: [] } });
    expect(wrapper.find('[data-testid="snapshot-list"]').exists()).toBe(false);
    expect(text(wrapper, 'snapshot-empty')).toContain('No snapshots');
  });
});
