import { changeKeySlots, type KeySlotResult } from '../../shared/qcow2/crypto/key-slot-change.ts';
import { refusePassphraseTheChainLacksAt } from '../../shared/qcow2/image/chain-passphrase.ts';
import { Qcow2Error } from '../../shared/qcow2/errors.ts';
import { flag, option } from '../args.ts';
import { EXIT_OK, UsageError, type Command } from '../command.ts';
import { luksOptionsFromArgs, optionsHelp } from '../image-options.ts';
import { currentPassphrases, NEW_PASSPHRASE_OPTIONS, newPassphrase, PASSPHRASE_OPTIONS, qcow2EncryptionOf, withFirstPassphrase } from '../passphrase-input.ts';

/**
 * `cowbell passphrase IMAGE`: change a LUKS disk's passphrase in place (the master key and the data
 * stay, as with qemu-img amend): the new key slot is written and flushed before the old one is
 * disabled and its material overwritten, so a crash at any moment leaves the old or the new
 * passphrase (or both) opening the disk. `--add` adds a passphrase beside the others; `--remove`
 * erases the slots the given passphrase opens, or `--slot N`. The last slot is never erased.
 */
export const passphrase: Command = {
  name: 'passphrase',
  summary: 'change, add or remove a passphrase of a LUKS-encrypted disk, in place',
  usage: '[--add | --remove [--slot N]] [-o encrypt.iter-time=MS] [--passphrase-file FILE] [--new-passphrase-file FILE] [--json] IMAGE',
  options: {
    add: { type: 'boolean' },
    remove: { type: 'boolean' },
    slot: { type: 'string' },
    options: { type: 'string', short: 'o', multiple: true },
    json: { type: 'boolean' },
    quiet: { type: 'boolean', short: 'q' },
    ...PASSPHRASE_OPTIONS,
    ...NEW_PASSPHRASE_OPTIONS,
    help: { type: 'boolean', short: 'h' },
  },
  positionals: { min: 1, max: 1 },
  optionsHelp: optionsHelp(['encrypt.iter-time']),
  async run(args, io) {
    const imagePath = args.positionals[0] ?? '';
    if (flag(args, 'add') && flag(args, 'remove')) throw new UsageError('passphrase: --add and --remove do not go together');
    const action = flag(args, 'add') ? 'add' : flag(args, 'remove') ? 'remove' : 'change';
    const slot = slotOption(option(args, 'slot'));
    if (slot !== undefined && action !== 'remove') throw new UsageError('passphrase: --slot goes with --remove (a new passphrase takes the first free slot)');
    const raw = args.values.options;
    const { iterTimeMs } = luksOptionsFromArgs(Array.isArray(raw) ? raw.filter((value): value is string => typeof value === 'string') : [], 'passphrase', ['encrypt.iter-time']);
    const encryption = qcow2EncryptionOf(imagePath);
    if (encryption === null) throw new Qcow2Error('INVALID_ARGUMENT', `${imagePath} is not encrypted; \`cowbell encrypt\` encrypts it`);
    if (encryption === 'aes') {
      throw new Qcow2Error('INVALID_ARGUMENT', `${imagePath} uses the old qcow2 AES encryption, which has no key slots to change; \`cowbell encrypt\` moves it to LUKS with a passphrase of your choice`);
    }
    let current: Uint8Array[] = [];
    let fresh: Uint8Array | undefined;
    try {
      current = await currentPassphrases(args, io, imagePath);
      if (action !== 'remove') fresh = await newPassphrase(args, io, imagePath);
      const added = fresh;
      if (action === 'change' && added !== undefined) refusePassphraseTheChainLacksAt(imagePath, added);
      const result = await withFirstPassphrase(current, async (passphrase) => changeKeySlots(imagePath, { passphrase, action, newPassphrase: added, slot, iterTimeMs }));
      if (flag(args, 'json')) io.out(`${JSON.stringify(result, null, 4)}\n`);
      else if (!flag(args, 'quiet')) io.out(`${describeChange(imagePath, action, result)}\n`);
      return EXIT_OK;
    } finally {
      for (const candidate of current) candidate.fill(0);
      fresh?.fill(0);
    }
  },
};

function slotOption(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[0-7]$/.test(value)) throw new UsageError(`passphrase: --slot takes a key slot number from 0 to 7, not ${value}`);
  return Number(value);
}

function describeChange(imagePath: string, action: 'change' | 'add' | 'remove', result: KeySlotResult): string {
  const slots = (list: number[]): string => (list.length === 1 ? `slot ${list[0]}` : `slots ${list.join(', ')}`);
  const active = `key ${slots(result.activeSlots)} in use`;
  if (action === 'add') return `${imagePath}: passphrase added in key slot ${result.added}; ${active}`;
  if (action === 'remove') return `${imagePath}: key ${slots(result.removed)} erased; ${active}`;
  return `${imagePath}: passphrase changed (the new one in key slot ${result.added}, key ${slots(result.removed)} erased); ${active}`;
}
