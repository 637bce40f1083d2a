import { flushPromises, mount } from '@vue/test-utils';
import { createPinia, setActivePinia } from 'pinia';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import App from '../../src/renderer/src/App.vue';
import { RECENT_KEY, useRecentStore } from '../../src/renderer/src/stores/recent.ts';
import { fakeElectronApp } from './fixtures.ts';

function electronApp(extra: Record<string, (args: unknown) => unknown> = {}) {
  return fakeElectronApp({
    'path.stat': (args) => (args as { paths: string[] }).paths.map((path) => ({ path, kind: path.includes('gone') ? 'missing' : 'file' })),
    ...extra,
  });
}

describe('the desktop shell', () => {
  beforeEach(() => localStorage.clear());
  afterEach(() => replaceConnection(null));

  it('acts on the application menu: Open Recent opens the path, Snapshot > Take opens the dialog, Help > About shows Cowbell', async () => {
    const fake = electronApp();
    replaceConnection(fake);
    const wrapper = mount(App, { global: { plugins: [createPinia()] }, attachTo: document.body });
    await flushPromises();
    fake.emit('menu.command', { command: 'open-path', path: '/disks/recent.qcow2' });
    await flushPromises();
    expect(wrapper.get('[data-testid="disk-name"]').text()).toBe('recent.qcow2');
    expect(fake.calls).toContainEqual({ name: 'image.watch', args: { path: '/disks/recent.qcow2' } });

    fake.emit('menu.command', { command: 'snapshot.take' });
    await flushPromises();
    expect(wrapper.get('[data-testid="dialog-title"]').text()).toBe('Take a snapshot of recent.qcow2');
    expect((wrapper.get('[data-testid="snapshot-name-input"]').element as HTMLInputElement).value).toMatch(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$/);
    await wrapper.get('[data-testid="dialog-cancel"]').trigger('click');
    await flushPromises();

    fake.emit('menu.command', { command: 'snapshot.delete' });
    await flushPromises();
    expect(wrapper.find('[data-testid="dialog"]').exists()).toBe(false);
    expect(wrapper.get('[data-testid="app-message"] span').text()).toBe('Select a snapshot in the tree first.');

    fake.emit('menu.command', { command: 'about' });
    await flushPromises();
    expect(wrapper.get('[data-testid="dialog-title"]').text()).toBe('About Cowbell');

    fake.emit('menu.command', { command: 'close' });
    await flushPromises();
    expect(wrapper.find('[data-testid="disk-name"]').exists()).toBe(false);
    expect(fake.calls).toContainEqual({ name: 'image.unwatch', args: { path: '/disks/recent.qcow2' } });
    wrapper.unmount();
  });

  it('in Electron, opens files dropped on the window by the paths the preload gives', async () => {
    const fake = electronApp();
    const paths = new Map<unknown, string>();
    fake.api.pathForFile = (file: File) => paths.get(file) ?? '';
    replaceConnection(fake);
    const wrapper = mount(App, { global: { plugins: [createPinia()] }, attachTo: document.body });
    await flushPromises();
    const file = new File(['x'], 'dropped.qcow2');
    paths.set(file, '/vm/dropped.qcow2');
    const drop = new Event('drop', { bubbles: true, cancelable: true });
    Object.defineProperty(drop, 'dataTransfer', { value: { types: ['Files'], files: [file] } });
    wrapper.get('.shell').element.dispatchEvent(drop);
    await flushPromises();
    expect(drop.defaultPrevented).toBe(true);
    expect(wrapper.get('[data-testid="disk-name"]').text()).toBe('dropped.qcow2');
    wrapper.unmount();
  });

  it('keeps recent disks in localStorage, newest first, tells the menu, and marks missing ones', async () => {
    const fake = electronApp();
    replaceConnection(fake);
    setActivePinia(createPinia());
    const recent = useRecentStore();
    recent.remember('/vm/a.qcow2');
    recent.remember('/vm/gone.qcow2');
    recent.remember('/vm/a.qcow2');
    expect(JSON.parse(localStorage.getItem(RECENT_KEY) ?? '[]')).toEqual(['/vm/a.qcow2', '/vm/gone.qcow2']);
    await flushPromises();
    expect(fake.calls.filter((call) => call.name === 'menu.recent').at(-1)).toEqual({ name: 'menu.recent', args: { paths: ['/vm/a.qcow2', '/vm/gone.qcow2'] } });

    setActivePinia(createPinia());
    const reloaded = useRecentStore();
    expect(reloaded.paths).toEqual(['/vm/a.qcow2', '/vm/gone.qcow2']);
    await reloaded.check();
    expect([...reloaded.missing]).toEqual(['/vm/gone.qcow2']);
  });
});
