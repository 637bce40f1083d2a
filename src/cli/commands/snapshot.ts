import { formatBytes } from '../../shared/format-units.ts';
import { changeSnapshotName, changeSnapshotNote, readSnapshotTree, removeSnapshot, revertToSnapshot, takeSnapshot } from '../../shared/qcow2/snapshots/operations.ts';
import { MAX_SNAPSHOT_NOTE_BYTES, type SnapshotTree } from '../../shared/qcow2/model.ts';
import { notePreview } from '../note-preview.ts';
import { flag, option, refuseFormatOtherThanQcow2 } from '../args.ts';
import { finishingFirst } from '../cancellable-job.ts';
import { EXIT_OK, UsageError, type Command } from '../command.ts';
import { snapshotRefOf } from '../snapshot-ref.ts';
import { printable } from '../printable.ts';
import { readImageInfo } from '../../shared/qcow2/image/info.ts';
import { snapshotListTable } from './info.ts';

const actions: Record<string, number> = { list: 2, create: 3, apply: 3, delete: 3, rename: 4, note: 4 };

export const snapshot: Command = {
  name: 'snapshot',
  summary: 'list, create, apply (revert to), delete, rename or describe (note) internal snapshots',
  usage: `list [--json] [-f qcow2] [-U] IMAGE | -l|-c NAME|-a SNAPSHOT|-d SNAPSHOT [-q] IMAGE (qemu-img's forms) | create [--note TEXT] [-q] IMAGE NAME | apply IMAGE SNAPSHOT | delete IMAGE SNAPSHOT | rename IMAGE SNAPSHOT NEW | note IMAGE SNAPSHOT TEXT (SNAPSHOT: a name or id, or snapshot.name=NAME / snapshot.id=ID) (a note: up to ${MAX_SNAPSHOT_NOTE_BYTES} bytes of UTF-8; an empty TEXT clears it)`,
  options: {
    json: { type: 'boolean' },
    note: { type: 'string' },
    format: { type: 'string', short: 'f' },
    quiet: { type: 'boolean', short: 'q' },
    'force-share': { type: 'boolean', short: 'U' },
    // qemu-img snapshot's own forms: -l IMAGE, -c NAME IMAGE, -a SNAPSHOT IMAGE, -d SNAPSHOT IMAGE.
    'qemu-list': { type: 'boolean', short: 'l' },
    'qemu-create': { type: 'string', short: 'c' },
    'qemu-apply': { type: 'string', short: 'a' },
    'qemu-delete': { type: 'string', short: 'd' },
    help: { type: 'boolean', short: 'h' },
  },
  positionals: { min: 1, max: 4 },
  // A listing's output is its result; a change's is a report of work done.
  printsItsResult: (args) => args.positionals[0] === 'list',
  async run(args, io) {
    const qemuForm = qemuImgForm(args);
    if (qemuForm?.action === 'qemu-list') {
      refuseFormatOtherThanQcow2(args, 'snapshot');
      io.out(snapshotListTable(readImageInfo(qemuForm.image, { refuseInUse: !flag(args, 'force-share') }).snapshots ?? []));
      return EXIT_OK;
    }
    const [action = '', image = '', name = '', fourth = ''] = qemuForm === null ? args.positionals : [qemuForm.action, qemuForm.image, qemuForm.name];
    const expected = actions[action];
    if (expected === undefined) throw new UsageError(`snapshot: unknown action "${action}" (list, create, apply, delete, rename or note)`);
    if (qemuForm === null && args.positionals.length !== expected) throw new UsageError(`snapshot ${action}: wrong number of arguments (usage: cowbell snapshot ${this.usage})`);
    refuseFormatOtherThanQcow2(args, 'snapshot');
    const note = option(args, 'note');
    if (note !== undefined && action !== 'create') throw new UsageError(`snapshot ${action}: --note is for create (to change a note: cowbell snapshot note IMAGE SNAPSHOT TEXT)`);
    /** What a change did: the snapshot acted on as JSON with --json, else a line for people (none with -q, as qemu-img). */
    const say = (done: Record<string, string>, line: string): void => {
      if (flag(args, 'json')) io.out(`${JSON.stringify(done, null, 2)}\n`);
      // qemu-img's form says nothing, as qemu-img.
      else if (!flag(args, 'quiet') && qemuForm === null) io.out(`${line}\n`);
    };
    switch (action) {
      case 'list': {
        const tree = readSnapshotTree(image, undefined, { refuseInUse: !flag(args, 'force-share') });
        io.out(flag(args, 'json') ? `${JSON.stringify(tree, null, 2)}\n` : describeTree(tree));
        break;
      }
      case 'create': {
        const created = await finishingFirst(io, () => takeSnapshot(image, name, undefined, note));
        say({ action, id: created.id, name: created.name }, `Created snapshot "${printable(created.name)}" (id ${created.id})${note ? ' with a note' : ''}`);
        break;
      }
      case 'apply': {
        const target = await finishingFirst(io, () => revertToSnapshot(image, snapshotRefOf(name)));
        say({ action, ...target }, `Reverted to snapshot ${described(target)}`);
        break;
      }
      case 'delete': {
        const target = await finishingFirst(io, () => removeSnapshot(image, snapshotRefOf(name)));
        say({ action, ...target }, `Deleted snapshot ${described(target)}`);
        break;
      }
      case 'rename': {
        const target = await finishingFirst(io, () => changeSnapshotName(image, snapshotRefOf(name), fourth));
        say({ action, ...target, newName: fourth }, `Renamed snapshot ${described(target)} to "${printable(fourth)}"`);
        break;
      }
      case 'note': {
        const target = await finishingFirst(io, () => changeSnapshotNote(image, snapshotRefOf(name), fourth));
        say({ action, ...target, note: fourth }, fourth === '' ? `Cleared the note of snapshot ${described(target)}` : `Set the note of snapshot ${described(target)}`);
        break;
      }
    }
    return EXIT_OK;
  },
};

/**
 * qemu-img snapshot's form (`-l IMAGE`, `-c NAME IMAGE`, `-a SNAPSHOT IMAGE`, `-d SNAPSHOT IMAGE`)
 * as Cowbell's action, or null when the command is in Cowbell's own form. One flag, one IMAGE.
 */
function qemuImgForm(args: Parameters<Command['run']>[0]): { action: string; image: string; name: string } | null {
  const given = (['qemu-list', 'qemu-create', 'qemu-apply', 'qemu-delete'] as const).filter((key) => args.values[key] !== undefined && args.values[key] !== false);
  if (given.length === 0) {
    if (args.positionals.length < 2) throw new UsageError('snapshot: give an action and an IMAGE (cowbell snapshot list IMAGE), or qemu-img\'s form (cowbell snapshot -l IMAGE)');
    return null;
  }
  if (given.length > 1) throw new UsageError('snapshot: give one of -l, -c, -a and -d');
  if (args.positionals.length !== 1) throw new UsageError(`snapshot -${{ 'qemu-list': 'l', 'qemu-create': 'c', 'qemu-apply': 'a', 'qemu-delete': 'd' }[given[0]!]}: give exactly one IMAGE after it (qemu-img's form), as in cowbell snapshot -c NAME IMAGE`);
  const key = given[0]!;
  const value = args.values[key];
  const action = key === 'qemu-list' ? 'qemu-list' : key.slice('qemu-'.length);
  return { action, image: args.positionals[0] ?? '', name: typeof value === 'string' ? value : '' };
}

/** The snapshot acted on, as the user knows it: its name and its id (a selector or an id was maybe given). */
function described(target: { id: string; name: string }): string {
  return `"${printable(target.name)}" (id ${target.id})`;
}

/** The tree as indented text: children under parents, a snapshot's note on the line below it, "(you are here)" under the current state's parent. */
/** Past this depth a long line of snapshots is not indented further (a 1000-snapshot line would make megabyte lines). */
const MAX_INDENT_LEVELS = 24;

export function describeTree(tree: SnapshotTree): string {
  if (tree.snapshots.length === 0) return 'No snapshots.\n';
  const children = new Map<string | null, typeof tree.snapshots>();
  for (const node of tree.snapshots) {
    const list = children.get(node.parentId) ?? [];
    list.push(node);
    children.set(node.parentId, list);
  }
  const lines: string[] = [];
  // Each snapshot once, however its parents are recorded: ids another program made alike, or
  // recorded parents that loop, must neither recurse without end nor hide a snapshot.
  const listed = new Set<(typeof tree.snapshots)[number]>();
  const indent = (depth: number): string => '  '.repeat(Math.min(depth, MAX_INDENT_LEVELS));
  // Depth first with a stack of its own: a line of thousands of snapshots, each the child of the one before, is a common shape.
  const visit = (rootParentId: string | null, rootDepth: number): void => {
    const pending: { node: (typeof tree.snapshots)[number]; depth: number }[] = [];
    const pushChildren = (parentId: string | null, depth: number): void => {
      const nodes = children.get(parentId) ?? [];
      for (let index = nodes.length - 1; index >= 0; index--) {
        const node = nodes[index];
        if (node !== undefined) pending.push({ node, depth });
      }
    };
    pushChildren(rootParentId, rootDepth);
    for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
      const { node, depth } = next;
      if (listed.has(node)) continue;
      listed.add(node);
      const inferred = node.parentInferred ? ' (parent inferred)' : '';
      lines.push(`${indent(depth)}${node.id.padEnd(4)} ${printable(node.name)}  ${node.date}  own ${formatBytes(node.exclusiveBytes ?? Number.NaN)}, shared ${formatBytes(node.sharedBytes ?? Number.NaN)}${inferred}`);
      if (node.note !== undefined) lines.push(`${indent(depth)}${''.padEnd(4)}   “${notePreview(node.note)}”`);
      if (tree.currentParentId === node.id) lines.push(`${indent(depth + 1)}* you are here (unsaved: ${formatBytes(tree.current.exclusiveBytes ?? Number.NaN)})`);
      pushChildren(node.id, depth + 1);
    }
  };
  visit(null, 0);
  // Snapshots whose recorded parents form a loop are reached from no root: listed after the rest.
  for (const node of tree.snapshots) if (!listed.has(node)) visit(node.parentId, 0);
  return `${lines.join('\n')}\n`;
}
