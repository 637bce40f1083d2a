import type { Command } from '../command.ts';
import { info } from './info.ts';

/** Every `cowbell` subcommand, by name. A new command is one file and one line here. */
export const commands: readonly Command[] = [info];
