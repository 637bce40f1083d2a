import { formatBytes } from '../../shared/format-units.ts';
// Straight from files/: the engine's index would load every feature's chunk (convert, rebase, commit…) at start-up.
import { copyOut as copyOutOfState } from '../../shared/qcow2/files/copy-out.ts';
import { typedGuestPath } from '../../shared/qcow2/files/state-files.ts';
import { flag, option } from '../args.ts';
import { runCancellably, withProgressLine } from '../cancellable-job.ts';
import { EXIT_OK, EXIT_PARTIAL, type Command } from '../command.ts';
import { parseImageState, withStateFiles } from '../image-state.ts';
import { isTerminal } from '../output.ts';
import { PASSPHRASE_OPTIONS, VOLUME_PASSPHRASE_HELP, VOLUME_PASSPHRASE_OPTIONS } from '../passphrase-input.ts';
import { printable, printableListed, printableMessage } from '../printable.ts';

export const copyOut: Command = {
  name: 'copy-out',
  summary: 'copy a file or folder out of a state (the current disk or a snapshot) onto this computer',
  usage: '[--json] [--force] [-U] [-l SNAPSHOT] [--passphrase-file FILE] [--volume-passphrase-file FILE]... IMAGE[@SNAPSHOT] PATH DEST',
  help: [
    '  PATH        the file or folder inside the state ("/1/etc/hosts" on a disk with partitions)',
    '  DEST        an existing folder (the copy goes inside it, under its own name) or a new name',
    '  --force     replace files that already exist (never done without it)',
    '  --json      what was copied, as JSON',
    'Folders are copied with everything in them; symlinks stay symlinks. Each file is written under a',
    'temporary name and renamed when complete: Ctrl-C leaves no partial file. The image is only read.',
    'A folder copy goes past an entry it cannot read (one the guest encrypted, a damaged one) and names',
    'it on stderr. Exit codes: 0 everything was copied, 3 the copy was made without the entries it',
    'skipped, 1 no copy (or a copy stopped half-way, said), 2 a usage error.',
  ].join('\n') + `\n${VOLUME_PASSPHRASE_HELP}`,
  options: {
    json: { type: 'boolean' },
    force: { type: 'boolean' },
    snapshot: { type: 'string', short: 'l' },
    'force-share': { type: 'boolean', short: 'U' },
    ...PASSPHRASE_OPTIONS,
    ...VOLUME_PASSPHRASE_OPTIONS,
    help: { type: 'boolean', short: 'h' },
  },
  positionals: { min: 3, max: 3 },
  async run(args, io) {
    const [argument = '', guestPath = '', destination = ''] = args.positionals;
    const { image, state } = parseImageState(argument, option(args, 'snapshot'));
    const showProgress = !flag(args, 'json') && isTerminal(2);
    // --force here replaces copied files; the legacy AES passphrase judgement is not overridden by it.
    const unlockArgs = { ...args, values: { ...args.values, force: false } };
    const result = await withStateFiles(unlockArgs, io, image, state, (files) =>
      withProgressLine(io, showProgress, (onProgress) =>
        runCancellably(async (job) => copyOutOfState(files, await typedGuestPath(files, guestPath), destination, { overwrite: flag(args, 'force'), job }), onProgress, 'Cancelled; the file being copied was removed'),
      ),
      { guardCurrent: true },
    );
    if (flag(args, 'json')) io.out(`${JSON.stringify(result, null, 2)}\n`);
    else {
      const parts = [`${result.files} file${result.files === 1 ? '' : 's'} (${formatBytes(result.bytes)})`];
      if (result.folders > 0) parts.push(`${result.folders} folder${result.folders === 1 ? '' : 's'}`);
      if (result.symlinks > 0) parts.push(`${result.symlinks} symlink${result.symlinks === 1 ? '' : 's'}`);
      io.out(`Copied ${parts.join(', ')} to ${printable(result.target)}\n`);
      for (const skipped of result.skipped) io.err(`cowbell: skipped ${printableListed(skipped.path)}: ${printableMessage(skipped.reason)}\n`);
    }
    // As cp -r does, a script must not take a copy that left entries behind for a whole one.
    return result.skipped.length > 0 ? EXIT_PARTIAL : EXIT_OK;
  },
};
