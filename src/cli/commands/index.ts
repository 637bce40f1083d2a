import type { Command } from '../command.ts';
import { diff } from './diff.ts';
import { info } from './info.ts';
import { snapshot } from './snapshot.ts';
import { usage } from './usage.ts';

/** Every `cowbell` subcommand, by name. A new command is one file and one line here. */
export const commands: readonly Command[] = [info, snapshot, usage, diff];
