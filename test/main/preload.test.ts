import { describe, expect, it, vi } from 'vitest';
import { requestSchemas, type CowbellApi } from '../../src/shared/ipc/contract.ts';
import { EVENT_CHANNEL, REQUEST_CHANNEL } from '../../src/shared/ipc/channels.ts';

vi.mock('electron', async () => (await import('./fakes/electron.ts')).electronModule);

const { droppedFilePaths, exposed, invoked, invokeReplies, rendererListeners } = await import('./fakes/electron.ts');
await import('../../src/preload/index.ts');

const api = exposed.get('cowbell') as CowbellApi;

function emitFromMain(name: unknown, payload: unknown): void {
  for (const listener of rendererListeners.get(EVENT_CHANNEL) ?? []) listener({}, name, payload);
}

describe('the preload', () => {
  it('exposes only window.cowbell, with request, on and pathForFile and nothing else', () => {
    expect([...exposed.keys()]).toEqual(['cowbell']);
    expect(Object.keys(api).sort()).toEqual(['on', 'pathForFile', 'request']);
  });

  it('gives a dropped file’s path through webUtils', () => {
    const file = { name: 'disk.qcow2' } as unknown as File;
    droppedFilePaths.set(file, '/home/me/disk.qcow2');
    expect(api.pathForFile?.(file)).toBe('/home/me/disk.qcow2');
  });

  it('passes every request name of the contract through the request channel and unwraps the reply', async () => {
    for (const name of Object.keys(requestSchemas)) {
      invokeReplies.push({ ok: true, value: name });
      await expect(api.request(name as 'app.about', {})).resolves.toBe(name);
      expect(invoked.at(-1)).toEqual([REQUEST_CHANNEL, name, {}]);
    }
  });

  it('refuses a name outside the contract without reaching main', async () => {
    const before = invoked.length;
    await expect(api.request('fs.readFile' as 'app.about', {})).rejects.toEqual({
      code: 'INVALID_REQUEST',
      message: expect.stringContaining('fs.readFile'),
    });
    expect(invoked.length).toBe(before);
  });

  it('rejects with the plain {code, message} of a failed reply', async () => {
    invokeReplies.push({ ok: false, error: { code: 'NOT_FOUND', message: '/x.qcow2: no such file' } });
    await expect(api.request('image.open', { path: '/x.qcow2' })).rejects.toEqual({
      code: 'NOT_FOUND',
      message: '/x.qcow2: no such file',
    });
  });

  it('delivers the contract’s events to their listeners until unsubscribed, and drops others', () => {
    const seen: unknown[] = [];
    const stop = api.on('job.end', (payload) => seen.push(payload));
    emitFromMain('job.end', { jobId: 'a', ok: true, result: 1 });
    emitFromMain('job.progress', { jobId: 'a' });
    emitFromMain('shell.openExternal', { url: 'https://evil.example' });
    stop();
    emitFromMain('job.end', { jobId: 'b', ok: true, result: 2 });
    expect(seen).toEqual([{ jobId: 'a', ok: true, result: 1 }]);
    expect(() => api.on('fs.watch' as 'job.end', () => undefined)).toThrow(/no event named/);
  });
});
