import { flushPromises, mount } from '@vue/test-utils';
import { createPinia } from 'pinia';
import { afterEach, describe, expect, it } from 'vitest';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import App from '../../src/renderer/src/App.vue';
import { fakeConnection, imageInfo } from './fixtures.ts';

function about(mode: 'electron' | 'browser') {
  return () => ({ name: 'Cowbell', version: '0.1.0', mode, platform: 'linux' });
}

describe('App shell', () => {
  afterEach(() => replaceConnection(null));

  it('opens the initial paths and shows the first disk, titled by its name', async () => {
    replaceConnection(
      fakeConnection({
        'app.about': about('browser'),
        'app.initialPaths': () => ['/disks/fedora.qcow2', '/disks/missing.qcow2'],
        'image.open': (args) => {
          if ((args as { path: string }).path.includes('missing')) throw { code: 'NOT_FOUND', message: 'no such file' };
          return imageInfo();
        },
      }),
    );
    const wrapper = mount(App, { global: { plugins: [createPinia()] }, attachTo: document.body });
    await flushPromises();
    expect(wrapper.findAll('[data-testid="disk-item"]')).toHaveLength(2);
    expect(wrapper.get('[data-testid="disk-name"]').text()).toBe('fedora.qcow2');
    await wrapper.get('[data-testid="tab-properties"]').trigger('click');
    expect(wrapper.get('[data-testid="info-virtual-size"]').text()).toBe('1 GiB');
    expect(document.title).toBe('fedora.qcow2 — Cowbell');

    await wrapper.findAll('[data-testid="disk-item"]')[1]?.trigger('click');
    expect(wrapper.get('[data-testid="open-error-title"]').text()).toBe('There is no file or folder at this path.');
    expect(wrapper.findAll('[data-testid="disk-item-subtitle"]')[1]?.text()).toBe('File not found');
    wrapper.unmount();
  });

  it('tells apart two open disks of the same name by their folders, and leaves a unique name alone', async () => {
    replaceConnection(
      fakeConnection({
        'app.about': about('browser'),
        'app.initialPaths': () => ['/vms/win/disk.qcow2', '/vms/linux/disk.qcow2', '/vms/arch.qcow2'],
        'image.open': () => imageInfo(),
      }),
    );
    const wrapper = mount(App, { global: { plugins: [createPinia()] }, attachTo: document.body });
    await flushPromises();
    const items = wrapper.findAll('[data-testid="disk-item"]');
    expect(items.map((item) => item.find('[data-testid="disk-item-folder-hint"]').exists() ? item.get('[data-testid="disk-item-folder-hint"]').text() : null)).toEqual(['…/win', '…/linux', null]);
    expect(items[0]?.text()).toContain('disk.qcow2');
    wrapper.unmount();
  });

  it('keeps the end of a long disk name in view, where disks named alike differ (UI audit: "…-template-v3" and "-v4" were both "windows-11-enterprise-lts…")', async () => {
    const long = (version: number) => `/vms/windows-11-enterprise-ltsc-2024-development-template-v${version}.qcow2`;
    replaceConnection(
      fakeConnection({
        'app.about': about('browser'),
        'app.initialPaths': () => [long(3), long(4), '/vms/arch.qcow2'],
        'image.open': () => imageInfo(),
      }),
    );
    const wrapper = mount(App, { global: { plugins: [createPinia()] }, attachTo: document.body });
    await flushPromises();
    const items = wrapper.findAll('[data-testid="disk-item"]');
    expect(items.map((item) => item.get('[data-testid="disk-item-name-tail"]').text())).toEqual(['e-v3.qcow2', 'e-v4.qcow2', '']);
    expect(items[0]?.get('.name').text()).toBe('windows-11-enterprise-ltsc-2024-development-template-v3.qcow2');
    expect(items[2]?.get('.name').text()).toBe('arch.qcow2');
    // The header too: the first disk is shown.
    expect(wrapper.get('[data-testid="disk-name-tail"]').text()).toBe('e-v3.qcow2');
    expect(wrapper.get('[data-testid="disk-name"]').element.textContent).toBe('windows-11-enterprise-ltsc-2024-development-template-v3.qcow2');
    wrapper.unmount();
  });

  it('in Electron, Ctrl+O asks main for the native Open dialog and opens what was chosen', async () => {
    const fake = fakeConnection({
      'app.about': about('electron'),
      'app.initialPaths': () => [],
      'dialog.openImages': () => ['/disks/chosen.qcow2'],
      'image.open': () => imageInfo(),
    });
    replaceConnection(fake);
    const wrapper = mount(App, { global: { plugins: [createPinia()] }, attachTo: document.body });
    await flushPromises();
    expect(wrapper.find('[data-testid="path-input"]').exists()).toBe(false);
    expect(wrapper.find('[data-testid="empty-state"]').exists()).toBe(true);
    window.dispatchEvent(new KeyboardEvent('keydown', { key: 'o', ctrlKey: true }));
    await flushPromises();
    expect(fake.calls.map((call) => call.name)).toContain('dialog.openImages');
    expect(wrapper.get('[data-testid="disk-name"]').text()).toBe('chosen.qcow2');
    wrapper.unmount();
  });

  it('Ctrl+W closes the disk shown, as the menu’s Close Disk says (audit: the menu showed it, nothing handled it)', async () => {
    const fake = fakeConnection({
      'app.about': about('electron'),
      'app.initialPaths': () => ['/disks/shown.qcow2'],
      'image.open': () => imageInfo(),
    });
    replaceConnection(fake);
    const wrapper = mount(App, { global: { plugins: [createPinia()] }, attachTo: document.body });
    await flushPromises();
    expect(wrapper.get('[data-testid="disk-name"]').text()).toBe('shown.qcow2');
    window.dispatchEvent(new KeyboardEvent('keydown', { key: 'w', ctrlKey: true }));
    await flushPromises();
    expect(wrapper.find('[data-testid="disk-name"]').exists()).toBe(false);
    wrapper.unmount();
  });

  it('in browser mode, the Open button puts the cursor in the path field', async () => {
    replaceConnection(fakeConnection({ 'app.about': about('browser'), 'app.initialPaths': () => [] }));
    const wrapper = mount(App, { global: { plugins: [createPinia()] }, attachTo: document.body });
    await flushPromises();
    await wrapper.get('[data-testid="open-button"]').trigger('click');
    expect(document.activeElement).toBe(wrapper.get('[data-testid="path-input"]').element);
    wrapper.unmount();
  });
});
