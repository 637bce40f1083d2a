import type { Command } from '../command.ts';

/**
 * Every `cowbell` subcommand, by name. Each is loaded only when it runs (or for --help), so a
 * command's start-up pays for its own part of the engine only. A new command is one file and one
 * line here.
 */
export interface CommandEntry {
  name: string;
  load(): Promise<Command>;
}

export const commands: readonly CommandEntry[] = [
  { name: 'info', load: async () => (await import('./info.ts')).info },
  { name: 'create', load: async () => (await import('./create.ts')).create },
  { name: 'check', load: async () => (await import('./check.ts')).check },
  { name: 'map', load: async () => (await import('./map.ts')).map },
  { name: 'convert', load: async () => (await import('./convert.ts')).convert },
  { name: 'compress', load: async () => (await import('./compress.ts')).compress },
  { name: 'compact', load: async () => (await import('./compact.ts')).compact },
  { name: 'encrypt', load: async () => (await import('./encrypt.ts')).encrypt },
  { name: 'decrypt', load: async () => (await import('./decrypt.ts')).decrypt },
  { name: 'passphrase', load: async () => (await import('./passphrase.ts')).passphrase },
  { name: 'snapshot', load: async () => (await import('./snapshot.ts')).snapshot },
  { name: 'resize', load: async () => (await import('./resize.ts')).resize },
  { name: 'usage', load: async () => (await import('./usage.ts')).usage },
  { name: 'diff', load: async () => (await import('./diff.ts')).diff },
  { name: 'files-diff', load: async () => (await import('./files-diff.ts')).filesDiff },
  { name: 'commit', load: async () => (await import('./commit.ts')).commit },
  { name: 'rebase', load: async () => (await import('./rebase.ts')).rebase },
  { name: 'ls', load: async () => (await import('./ls.ts')).ls },
  { name: 'copy-out', load: async () => (await import('./copy-out.ts')).copyOut },
];
