/**
 * Reading a secret from the terminal without echoing it: stdin in raw mode, one keystroke at a
 * time, so nothing typed is shown (not even stars: their count would give the length away).
 * Enter ends it, Backspace takes back a character, Ctrl-C or Ctrl-D on an empty line cancel.
 */
import { Qcow2Error } from '../shared/qcow2/errors.ts';
import { StoppedBySignal } from './cancellable-job.ts';
import { printableMessage } from './printable.ts';

const ENTER = new Set(['\r', '\n']);
const BACKSPACE = new Set(['\u007f', '\b']);
const CTRL_C = '\u0003';
const CTRL_D = '\u0004';

/** Whether this process can prompt: stdin is a terminal it can put in raw mode. */
export function hasTerminal(): boolean {
  return process.stdin.isTTY && typeof process.stdin.setRawMode === 'function';
}

export function readSecretFromTerminal(prompt: string): Promise<Uint8Array> {
  const input = process.stdin;
  return new Promise((resolve, reject) => {
    const characters: string[] = [];
    const finish = (outcome: () => void): void => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      process.stderr.write('\n');
      outcome();
    };
    const onData = (chunk: Buffer): void => {
      for (const character of chunk.toString('utf8')) {
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
        if (BACKSPACE.has(character)) characters.pop();
        else if (character >= ' ') characters.push(character);
      }
      chunk.fill(0);
    };
    // Raw mode before the prompt: nothing typed after it appears is echoed.
    input.setRawMode(true);
    // The prompt names the disk: a file name can hold escape sequences too.
    process.stderr.write(printableMessage(prompt));
    input.resume();
    input.on('data', onData);
  });
}
