/**
 * Reading a secret from the terminal without echoing it: stdin in raw mode, one keystroke at a
 * time, so nothing typed is shown (not even stars: their count would give the length away).
 * It takes what a terminal's own line editing (cooked mode, as getpass and cryptsetup read) would:
 * Enter ends it, Backspace takes back a character, Ctrl-U the whole line, Ctrl-C or Ctrl-D on an
 * empty line cancel, and every other key is kept as typed — a Tab as a tab, as in a passphrase
 * file. An arrow or other special key cannot edit here (its escape sequence would end up in the
 * passphrase, where no other tool would put the same bytes): it stops the prompt instead.
 * A polite kill (SIGTERM, or SIGINT sent by another program), or the terminal closing (SIGHUP) while it waits stops it too, the
 * terminal put back first: left to Node's default they ended the process with the terminal still
 * raw, so the shell that came back echoed nothing typed until `reset`.
 */
import { Qcow2Error } from '../shared/qcow2/errors.ts';
import { StoppedBySignal } from './cancellable-job.ts';
import { printableMessage } from './printable.ts';

const ENTER = new Set(['\r', '\n']);
const BACKSPACE = new Set(['\u007f', '\b']);
const CTRL_C = '\u0003';
const CTRL_D = '\u0004';
const CTRL_U = '\u0015';
const ESCAPE = '\u001b';

/** What the prompt reads from and writes to, and hears signals on: the process's stdin, stderr and itself, or a test's stand-ins. */
export interface SecretTerminal {
  input: Pick<NodeJS.ReadStream, 'setRawMode' | 'resume' | 'pause' | 'on' | 'off'>;
  output: { write(text: string): unknown };
  signals?: { on(signal: PromptStopSignal, listener: () => void): unknown; off(signal: PromptStopSignal, listener: () => void): unknown };
}

/** Signals that stop the prompt (Ctrl-C comes as a key in raw mode). */
const PROMPT_STOP_SIGNALS = ['SIGTERM', 'SIGHUP', 'SIGINT'] as const;
type PromptStopSignal = (typeof PROMPT_STOP_SIGNALS)[number];

/** Whether this process can prompt: stdin is a terminal it can put in raw mode. */
export function hasTerminal(): boolean {
  return process.stdin.isTTY && typeof process.stdin.setRawMode === 'function';
}

export function readSecretFromTerminal(prompt: string, terminal: SecretTerminal = { input: process.stdin, output: process.stderr, signals: process }): Promise<Uint8Array> {
  const { input, output, signals } = terminal;
  // One decoder for the whole entry: a character whose bytes arrive in two reads (a slow link) stays one character.
  const decoder = new TextDecoder('utf-8');
  return new Promise((resolve, reject) => {
    const characters: string[] = [];
    const finish = (outcome: () => void): void => {
      input.off('data', onData);
      for (const [signal, listener] of stops) signals?.off(signal, listener);
      input.setRawMode(false);
      input.pause();
      output.write('\n');
      outcome();
    };
    const stops = PROMPT_STOP_SIGNALS.map((signal) => [signal, (): void => {
      characters.fill('');
      finish(() => reject(new StoppedBySignal(signal, 'Stopped at the passphrase prompt; nothing was changed')));
    }] as const);
    const onData = (chunk: Buffer): void => {
      const text = decoder.decode(chunk, { stream: true });
      chunk.fill(0);
      for (const character of text) {
        if (ENTER.has(character)) {
          const secret = new TextEncoder().encode(characters.join(''));
          characters.fill('');
          finish(() => resolve(secret));
          return;
        }
        if (character === CTRL_C || (character === CTRL_D && characters.length === 0)) {
          characters.fill('');
          // The terminal is raw here: Ctrl-C arrives as a character, not as SIGINT, but means the same.
          const message = 'Cancelled; nothing was changed';
          finish(() => reject(character === CTRL_C ? new StoppedBySignal('SIGINT', message) : new Qcow2Error('CANCELLED', message)));
          return;
        }
        if (character === ESCAPE) {
          characters.fill('');
          const message = 'an arrow or other special key was pressed at the passphrase prompt, which cannot edit: nothing was taken and nothing changed; run the command again and type the passphrase with Backspace to correct it (or give it in a file)';
          finish(() => reject(new Qcow2Error('INVALID_ARGUMENT', message)));
          return;
        }
        if (BACKSPACE.has(character)) characters.pop();
        else if (character === CTRL_U) characters.fill('').length = 0;
        // Ctrl-D on a line with something on it: nothing, as a terminal does.
        else if (character !== CTRL_D) characters.push(character);
      }
    };
    // Heard before the terminal goes raw: no moment where a kill leaves it so.
    for (const [signal, listener] of stops) signals?.on(signal, listener);
    // Raw mode before the prompt: nothing typed after it appears is echoed.
    input.setRawMode(true);
    // The prompt names the disk: a file name can hold escape sequences too.
    output.write(printableMessage(prompt));
    input.resume();
    input.on('data', onData);
  });
}
