import { formatBytes } from '../../shared/format-units.ts';
import { changeSnapshotName, readSnapshotTree, removeSnapshot, revertToSnapshot, takeSnapshot } from '../../shared/qcow2/index.ts';
import type { SnapshotTree } from '../../shared/qcow2/model.ts';
import { flag } from '../args.ts';
import { EXIT_OK, UsageError, type Command } from '../command.ts';

const actions: Record<string, number> = { list: 2, create: 3, apply: 3, delete: 3, rename: 4 };

export const snapshot: Command = {
  name: 'snapshot',
  summary: 'list, create, apply (revert to), delete or rename internal snapshots',
  usage: 'list [--json] [-U] IMAGE | create IMAGE NAME | apply IMAGE NAME | delete IMAGE NAME | rename IMAGE OLD NEW',
  options: {
    json: { type: 'boolean' },
    'force-share': { type: 'boolean', short: 'U' },
    help: { type: 'boolean', short: 'h' },
  },
  positionals: { min: 2, max: 4 },
  async run(args, io) {
    const [action = '', image = '', name = '', newName = ''] = args.positionals;
    const expected = actions[action];
    if (expected === undefined) throw new UsageError(`snapshot: unknown action "${action}" (list, create, apply, delete or rename)`);
    if (args.positionals.length !== expected) throw new UsageError(`snapshot ${action}: wrong number of arguments (usage: cowbell snapshot ${this.usage})`);
    switch (action) {
      case 'list': {
        const tree = readSnapshotTree(image, undefined, { refuseInUse: !flag(args, 'force-share') });
        io.out(flag(args, 'json') ? `${JSON.stringify(tree, null, 2)}\n` : describeTree(tree));
        break;
      }
      case 'create': {
        const created = takeSnapshot(image, name);
        io.out(`Created snapshot "${created.name}" (id ${created.id})\n`);
        break;
      }
      case 'apply':
        revertToSnapshot(image, name);
        io.out(`Reverted to snapshot "${name}"\n`);
        break;
      case 'delete':
        removeSnapshot(image, name);
        io.out(`Deleted snapshot "${name}"\n`);
        break;
      case 'rename':
        changeSnapshotName(image, name, newName);
        io.out(`Renamed snapshot "${name}" to "${newName}"\n`);
        break;
    }
    return EXIT_OK;
  },
};

/** The tree as indented text: children under parents, "(you are here)" under the current state's parent. */
export function describeTree(tree: SnapshotTree): string {
  if (tree.snapshots.length === 0) return 'No snapshots.\n';
  const children = new Map<string | null, typeof tree.snapshots>();
  for (const node of tree.snapshots) {
    const list = children.get(node.parentId) ?? [];
    list.push(node);
    children.set(node.parentId, list);
  }
  const lines: string[] = [];
  const visit = (parentId: string | null, depth: number): void => {
    for (const node of children.get(parentId) ?? []) {
      const inferred = node.parentInferred ? ' (parent inferred)' : '';
      lines.push(`${'  '.repeat(depth)}${node.id.padEnd(4)} ${node.name}  ${node.date}  own ${formatBytes(node.exclusiveBytes)}, shared ${formatBytes(node.sharedBytes)}${inferred}`);
      if (tree.currentParentId === node.id) lines.push(`${'  '.repeat(depth + 1)}* you are here (unsaved: ${formatBytes(tree.current.exclusiveBytes)})`);
      visit(node.id, depth + 1);
    }
  };
  visit(null, 0);
  return `${lines.join('\n')}\n`;
}
