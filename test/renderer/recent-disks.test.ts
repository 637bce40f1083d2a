/** The sidebar's recent disks from the keyboard: Delete on an entry forgets it, as the mouse's × does (found by the keyboard audit). */
import { flushPromises, mount } from '@vue/test-utils';
import { createPinia, setActivePinia } from 'pinia';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import LibrarySidebar from '../../src/renderer/src/components/LibrarySidebar.vue';
import { useRecentStore } from '../../src/renderer/src/stores/recent.ts';
import { fakeConnection } from './fixtures.ts';

beforeEach(() => {
  localStorage.clear();
  setActivePinia(createPinia());
  replaceConnection(fakeConnection({ 'path.stat': () => [], 'menu.recent': () => null }));
});
afterEach(() => replaceConnection(null));

describe('recent disks', () => {
  it('Delete on an entry forgets it, leaving the others', async () => {
    const recent = useRecentStore();
    recent.remember('/disks/one.qcow2');
    recent.remember('/disks/two.qcow2');
    const wrapper = mount(LibrarySidebar, { attachTo: document.body });
    await flushPromises();
    const entries = wrapper.findAll('[data-testid="recent-item"]');
    expect(entries.map((entry) => entry.attributes('data-path'))).toEqual(['/disks/two.qcow2', '/disks/one.qcow2']);
    await entries[0]?.get('.recent-open').trigger('keydown', { key: 'Delete' });
    expect(recent.paths).toEqual(['/disks/one.qcow2']);
    expect(wrapper.findAll('[data-testid="recent-item"]').map((entry) => entry.attributes('data-path'))).toEqual(['/disks/one.qcow2']);
    wrapper.unmount();
  });

  it('keeps the end of a long name in view, where disks named alike differ (UI audit)', async () => {
    const recent = useRecentStore();
    recent.remember('/disks/windows-11-enterprise-ltsc-2024-development-template-v3.qcow2');
    const wrapper = mount(LibrarySidebar, { attachTo: document.body });
    await flushPromises();
    const entry = wrapper.get('[data-testid="recent-item"]');
    expect(entry.get('[data-testid="recent-name-tail"]').text()).toBe('e-v3.qcow2');
    expect(entry.get('.recent-name').text()).toBe('windows-11-enterprise-ltsc-2024-development-template-v3.qcow2');
    wrapper.unmount();
  });
});
