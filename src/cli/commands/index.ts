import type { Command } from '../command.ts';
import { check } from './check.ts';
import { convert } from './convert.ts';
import { create } from './create.ts';
import { diff } from './diff.ts';
import { info } from './info.ts';
import { map } from './map.ts';
import { snapshot } from './snapshot.ts';
import { usage } from './usage.ts';

/** Every `cowbell` subcommand, by name. A new command is one file and one line here. */
export const commands: readonly Command[] = [info, create, check, map, convert, snapshot, usage, diff];
