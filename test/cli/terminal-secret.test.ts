/**
 * The passphrase prompt (src/cli/terminal-secret.ts) takes what a terminal's line editing would,
 * byte for byte as a passphrase file gives it. Found by an audit: a Tab typed at the prompt was
 * dropped (a file with the same passphrase then opened nothing), an arrow key left "[D" in the
 * passphrase, and a character whose bytes came in two reads (a slow ssh link) became U+FFFD.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { readSecretFromTerminal, type SecretTerminal } from '../../src/cli/terminal-secret.ts';

/** A terminal whose keys are `reads` (each one read), and what the prompt did with it. */
function typing(reads: (string | number[])[]): { terminal: SecretTerminal; written: string[]; raw: boolean[]; start: () => void } {
  const input = new EventEmitter() as EventEmitter & SecretTerminal['input'];
  const raw: boolean[] = [];
  const written: string[] = [];
  Object.assign(input, {
    setRawMode: (on: boolean) => {
      raw.push(on);
      return input;
    },
    resume: () => input,
    pause: () => input,
  });
  const start = (): void => {
    for (const read of reads) input.emit('data', Buffer.from(typeof read === 'string' ? Buffer.from(read, 'utf8') : Uint8Array.from(read)));
  };
  return { terminal: { input, output: { write: (text: string) => written.push(text) } }, written, raw, start };
}

async function typed(reads: (string | number[])[]): Promise<string> {
  const { terminal, start, raw } = typing(reads);
  const secret = readSecretFromTerminal('Passphrase: ', terminal);
  start();
  const bytes = await secret;
  expect(raw).toEqual([true, false]);
  return new TextDecoder().decode(bytes);
}

describe('the passphrase prompt', () => {
  it('keeps a Tab and other keys as typed, as a passphrase file holds them', async () => {
    expect(await typed(['ab\tcd\r'])).toBe('ab\tcd');
    expect(await typed(['a\u0001b\n'])).toBe('a\u0001b');
  });

  it('edits as a terminal does: Backspace takes back one character (a whole one, é or 🐄), Ctrl-U the line, Ctrl-D on a non-empty line nothing', async () => {
    expect(await typed(['abd\u007fc\r'])).toBe('abc');
    expect(await typed(['caf\u00e9\u007fe\r'])).toBe('cafe');
    expect(await typed(['moo\u{1f404}\b!\r'])).toBe('moo!');
    expect(await typed(['wrong\u0015right\r'])).toBe('right');
    expect(await typed(['ab\u0004c\r'])).toBe('abc');
  });

  it('keeps a character whose bytes come in two reads whole', async () => {
    // é is C3 A9; the cow is F0 9F 90 84, split after its second byte.
    expect(await typed([[0x63, 0x61, 0x66, 0xc3], [0xa9, 0xf0, 0x9f], [0x90, 0x84, 0x0d]])).toBe('caf\u00e9\u{1f404}');
  });

  it('stops at an arrow key (its escape sequence cannot edit here) with a message, taking nothing', async () => {
    const { terminal, start, raw } = typing(['abd\u001b[Dc\r']);
    const secret = readSecretFromTerminal('Passphrase: ', terminal);
    start();
    await expect(secret).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('arrow or other special key') });
    expect(raw).toEqual([true, false]);
  });

  it('cancels at Ctrl-C (exit 130) and at Ctrl-D on an empty line', async () => {
    for (const [key, code] of [['\u0003', 'CANCELLED'], ['\u0004', 'CANCELLED']] as const) {
      const { terminal, start } = typing([`${key}`]);
      const secret = readSecretFromTerminal('Passphrase: ', terminal);
      start();
      await expect(secret).rejects.toMatchObject({ code });
    }
    const { terminal, start } = typing(['\u0003']);
    const secret = readSecretFromTerminal('Passphrase: ', terminal);
    start();
    await expect(secret).rejects.toMatchObject({ exitCode: 130 });
  });

  it('stops at SIGTERM, SIGHUP and a SIGINT sent by another program with the terminal put back (exit 143, 129, 130), and leaves no listener behind', async () => {
    for (const [signal, exitCode] of [['SIGTERM', 143], ['SIGHUP', 129], ['SIGINT', 130]] as const) {
      const { terminal, raw, start } = typing(['half-typ']);
      const signals = new EventEmitter();
      const secret = readSecretFromTerminal('Passphrase: ', { ...terminal, signals });
      expect(signals.listenerCount(signal)).toBe(1);
      start();
      signals.emit(signal);
      await expect(secret).rejects.toMatchObject({ code: 'CANCELLED', exitCode, message: expect.stringContaining('nothing was changed') });
      expect(raw).toEqual([true, false]);
      expect(signals.listenerCount('SIGTERM') + signals.listenerCount('SIGHUP') + signals.listenerCount('SIGINT')).toBe(0);
    }
    // An answered prompt leaves none either.
    const { terminal, start } = typing(['moo\r']);
    const signals = new EventEmitter();
    const secret = readSecretFromTerminal('Passphrase: ', { ...terminal, signals });
    start();
    await secret;
    expect(signals.listenerCount('SIGTERM') + signals.listenerCount('SIGHUP')).toBe(0);
  });
});
