/**
 * The page's way into main stays one door: a structural check over the sources, so a handler
 * added later (a menu, a drop, a dialog) cannot skip the sender check in src/main/ipc.ts.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { describe, expect, it } from 'vitest';

const repoRoot = resolve(import.meta.dirname, '../..');

function sourcesUnder(folder: string): { file: string; text: string }[] {
  return readdirSync(join(repoRoot, folder), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && /\.(ts|vue)$/.test(entry.name))
    .map((entry) => {
      const path = join(entry.parentPath, entry.name);
      return { file: relative(repoRoot, path).split(sep).join('/'), text: readFileSync(path, 'utf8') };
    });
}

describe('the IPC surface', () => {
  it('has one handler in main, registered in ipc.ts, which checks the sender before anything else', () => {
    const users = sourcesUnder('src')
      .filter(({ text }) => /\bipcMain\b/.test(text))
      .map(({ file }) => file);
    expect(users).toEqual(['src/main/ipc.ts']);
    const ipc = readFileSync(join(repoRoot, 'src/main/ipc.ts'), 'utf8');
    const registrations = [...ipc.matchAll(/ipcMain\.(\w+)\(/g)].map((match) => match[1]);
    expect(registrations).toEqual(['handle', 'removeHandler']);
    const body = ipc.slice(ipc.indexOf('ipcMain.handle('));
    const firstStatement = body.split('\n')[1]?.trim();
    expect(firstStatement).toMatch(/^if \(!isTrustedSender\(event, /);
  });

  it('exposes one object to the page, and the preload uses only the request and event channels', () => {
    const bridgeUsers = sourcesUnder('src')
      .filter(({ text }) => /\b(contextBridge|ipcRenderer)\b/.test(text))
      .map(({ file }) => file);
    expect(bridgeUsers).toEqual(['src/preload/index.ts']);
    const preload = readFileSync(join(repoRoot, 'src/preload/index.ts'), 'utf8');
    expect([...preload.matchAll(/contextBridge\.(\w+)\('(\w+)'/g)].map((match) => `${match[1]} ${match[2]}`)).toEqual([
      'exposeInMainWorld cowbell',
    ]);
    expect([...preload.matchAll(/ipcRenderer\.(\w+)\((\w+)/g)].map((match) => `${match[1]} ${match[2]}`).sort()).toEqual([
      'invoke REQUEST_CHANNEL',
      'on EVENT_CHANNEL',
    ]);
  });

  it('leaves no window, webview or remote content to the page', () => {
    const main = sourcesUnder('src/main');
    // Only window.ts makes windows, and nothing loads a URL it did not get from index.ts.
    expect(main.filter(({ text }) => /new BrowserWindow\(/.test(text)).map(({ file }) => file)).toEqual(['src/main/window.ts']);
    expect(main.filter(({ text }) => /\b(shell\.openExternal|webviewTag:\s*true|nodeIntegration:\s*true|contextIsolation:\s*false|sandbox:\s*false)\b/.test(text))).toEqual([]);
    const renderer = sourcesUnder('src/renderer');
    expect(renderer.filter(({ text }) => /https?:\/\/(?!www\.w3\.org\/)/.test(text)).map(({ file }) => file)).toEqual([]);
  });
});
