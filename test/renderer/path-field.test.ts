import { flushPromises, mount } from '@vue/test-utils';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import PathField from '../../src/renderer/src/components/PathField.vue';
import type { PathCompletion } from '../../src/shared/ipc/contract.ts';
import { fakeConnection } from './fixtures.ts';

const tree: Record<string, PathCompletion[]> = {
  '/vm': [{ path: '/vm', kind: 'folder' }],
  '/vm/': [
    { path: '/vm/old', kind: 'folder' },
    { path: '/vm/debian.qcow2', kind: 'image' },
    { path: '/vm/fedora.qcow2', kind: 'image' },
  ],
  '/vm/f': [{ path: '/vm/fedora.qcow2', kind: 'image' }],
};

async function type(wrapper: ReturnType<typeof mount>, text: string): Promise<void> {
  const input = wrapper.get('[data-testid="path-input"]');
  await input.setValue(text);
  await vi.advanceTimersByTimeAsync(200);
  await flushPromises();
}

function names(wrapper: ReturnType<typeof mount>): string[] {
  return wrapper.findAll('[data-testid="path-suggestion"]').map((item) => item.text());
}

describe('PathField', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    replaceConnection(fakeConnection({ 'path.complete': (args) => tree[(args as { prefix: string }).prefix] ?? [] }));
  });
  afterEach(() => {
    vi.useRealTimers();
    replaceConnection(null);
  });

  it('lists folders and images that complete what was typed', async () => {
    const wrapper = mount(PathField, { attachTo: document.body });
    await type(wrapper, '/vm/');
    expect(names(wrapper)).toEqual(['old/', 'debian.qcow2', 'fedora.qcow2']);
    wrapper.unmount();
  });

  it('Tab completes the only suggestion; a folder then lists its contents', async () => {
    const wrapper = mount(PathField, { attachTo: document.body });
    await type(wrapper, '/vm');
    const input = wrapper.get('[data-testid="path-input"]');
    await input.trigger('keydown', { key: 'Tab' });
    await flushPromises();
    expect((input.element as HTMLInputElement).value).toBe('/vm/');
    expect(names(wrapper)).toHaveLength(3);
    wrapper.unmount();
  });

  it('arrow keys pick an image and Enter opens it', async () => {
    const wrapper = mount(PathField, { attachTo: document.body });
    await type(wrapper, '/vm/');
    const input = wrapper.get('[data-testid="path-input"]');
    await input.trigger('keydown', { key: 'ArrowDown' });
    await input.trigger('keydown', { key: 'ArrowDown' });
    await input.trigger('keydown', { key: 'Enter' });
    expect(wrapper.emitted('open')).toEqual([['/vm/debian.qcow2']]);
    expect((input.element as HTMLInputElement).value).toBe('/vm/');
    wrapper.unmount();
  });

  it('Enter opens the typed path when no suggestion is chosen', async () => {
    const wrapper = mount(PathField, { attachTo: document.body });
    await type(wrapper, '/vm/missing.qcow2');
    await wrapper.get('[data-testid="path-input"]').trigger('keydown', { key: 'Enter' });
    expect(wrapper.emitted('open')).toEqual([['/vm/missing.qcow2']]);
    wrapper.unmount();
  });

  it('asks for a full path instead of sending a relative one', async () => {
    const wrapper = mount(PathField, { attachTo: document.body });
    await type(wrapper, 'disk.qcow2');
    await wrapper.get('[data-testid="path-input"]').trigger('keydown', { key: 'Enter' });
    expect(wrapper.emitted('open')).toBeUndefined();
    expect(wrapper.get('[data-testid="path-error"]').text()).toContain('full path');
    wrapper.unmount();
  });
});
