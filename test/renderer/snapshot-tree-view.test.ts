import { mount } from '@vue/test-utils';
import { describe, expect, it } from 'vitest';
import SnapshotTreeView from '../../src/renderer/src/components/tree/SnapshotTreeView.vue';
import type { SnapshotTree } from '../../src/shared/ipc/contract.ts';

const tree: SnapshotTree = {
  snapshots: [
    { id: '1', name: 'fresh install', parentId: null, parentInferred: false, date: '2025-11-25T12:00:00Z', vmClock: 0, vmStateSize: 0, exclusiveBytes: 65536, sharedBytes: 0 },
    {
      id: '2',
      name: 'before upgrade',
      parentId: '1',
      parentInferred: true,
      parentReason: '"fresh install" is the snapshot taken just before it',
      date: '2025-11-26T12:00:00Z',
      vmClock: 0,
      vmStateSize: 0,
      exclusiveBytes: 3 * 1024 * 1024,
      sharedBytes: 0,
    },
  ],
  currentParentId: '2',
  currentParentInferred: false,
  current: { exclusiveBytes: 2 * 1024 * 1024, sharedBytes: 0 },
};

describe('the drawn snapshot tree', () => {
  it('draws each snapshot with its name and own size, and the current state as “You are here” with its unsaved bytes', () => {
    const wrapper = mount(SnapshotTreeView, { props: { tree, selectedId: 'current', hoveredId: null } });
    const nodes = wrapper.findAll('[data-testid="tree-node"]');
    expect(nodes.map((node) => node.attributes('data-node-id'))).toEqual(['1', '2', 'current']);
    expect(nodes.map((node) => node.get('[data-testid="tree-node-name"]').text())).toEqual(['fresh install', 'before upgrade', 'You are here']);
    expect(nodes[1]?.get('[data-testid="tree-node-meta"]').text()).toMatch(/3 MiB$/);
    expect(nodes[2]?.get('[data-testid="tree-node-meta"]').text()).toBe('2 MiB not in any snapshot');
    expect(nodes[2]?.classes()).toContain('selected');
    expect(nodes[2]?.attributes('data-kind')).toBe('current');
  });

  it('spells out a name that would draw as another ("\\u202Epeek" as "keep") and bytes that are not UTF-8', () => {
    const lookalikes: SnapshotTree = { ...tree, snapshots: [{ ...tree.snapshots[0]!, name: '\u202epeek' }, { ...tree.snapshots[1]!, name: 'caf\udce9' }] };
    const wrapper = mount(SnapshotTreeView, { props: { tree: lookalikes, selectedId: null, hoveredId: null } });
    const names = wrapper.findAll('[data-testid="tree-node-name"]').map((name) => name.text());
    expect(names.slice(0, 2)).toEqual(['\\u202epeek', 'caf\\xe9']);
  });

  it('draws an inferred parent as a dashed edge whose tooltip says why', () => {
    const wrapper = mount(SnapshotTreeView, { props: { tree, selectedId: null, hoveredId: null } });
    const edges = wrapper.findAll('[data-testid="tree-edge"]');
    const inferred = edges.find((edge) => edge.attributes('data-to') === '2');
    expect(inferred?.classes()).toContain('inferred');
    expect(inferred?.get('title').text()).toBe('Parent inferred: "fresh install" is the snapshot taken just before it');
    const recorded = edges.find((edge) => edge.attributes('data-to') === 'current');
    expect(recorded?.classes()).not.toContain('inferred');
    expect(recorded?.find('title').exists()).toBe(false);
  });

  it('moves the selection along the tree with the arrow keys and asks for details, rename and delete', async () => {
    const wrapper = mount(SnapshotTreeView, { props: { tree, selectedId: 'current', hoveredId: null } });
    const view = wrapper.get('[data-testid="snapshot-tree"]');
    await view.trigger('keydown', { key: 'ArrowUp' });
    expect(wrapper.emitted('select')?.[0]).toEqual(['2']);
    await wrapper.setProps({ selectedId: '2' });
    await view.trigger('keydown', { key: 'ArrowUp' });
    await view.trigger('keydown', { key: 'Enter' });
    await view.trigger('keydown', { key: 'F2' });
    await view.trigger('keydown', { key: 'Delete' });
    expect(wrapper.emitted('select')?.[1]).toEqual(['1']);
    expect(wrapper.emitted('activate')).toEqual([['2']]);
    expect(wrapper.emitted('rename')).toEqual([['2']]);
    expect(wrapper.emitted('delete')).toEqual([['2']]);
    await wrapper.setProps({ selectedId: 'current' });
    await view.trigger('keydown', { key: 'Delete' });
    expect(wrapper.emitted('delete')).toHaveLength(1);
  });

  it('leaves the keys of its zoom buttons to them: Enter or Delete there neither opens details nor deletes (audit)', async () => {
    const wrapper = mount(SnapshotTreeView, { props: { tree, selectedId: '2', hoveredId: null }, attachTo: document.body });
    // The buttons are beside the tree, not in it: a tree holds only its items, and its keys are not theirs.
    expect(wrapper.get('[role="tree"]').findAll('button, [tabindex]:not([role="tree"])')).toHaveLength(0);
    for (const testId of ['tree-zoom-in', 'tree-zoom-out']) {
      const button = wrapper.get(`[data-testid="${testId}"]`);
      for (const key of ['Enter', 'Delete', 'ArrowUp', 'F2']) await button.trigger('keydown', { key });
    }
    expect(wrapper.emitted('activate')).toBeUndefined();
    expect(wrapper.emitted('delete')).toBeUndefined();
    expect(wrapper.emitted('select')).toBeUndefined();
    expect(wrapper.emitted('rename')).toBeUndefined();
    wrapper.unmount();
  });
});
