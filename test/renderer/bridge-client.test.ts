import { describe, expect, it, vi } from 'vitest';
import { bridgeUrl, createBridgeClient, type WebSocketLike } from '../../src/renderer/src/bridge-client.ts';
import { ApiError } from '../../src/renderer/src/lib/api-error.ts';
import type { BridgeClientMessage, BridgeServerMessage } from '../../src/shared/ipc/contract.ts';

/** A WebSocket the test drives by hand: it records what the client sends and delivers what the test "receives". */
class FakeSocket implements WebSocketLike {
  readyState = 0;
  sent: BridgeClientMessage[] = [];
  private handlers = new Map<string, ((event: { data: unknown }) => void)[]>();

  addEventListener(type: string, listener: (event: { data: unknown }) => void): void {
    this.handlers.set(type, [...(this.handlers.get(type) ?? []), listener]);
  }

  send(data: string): void {
    this.sent.push(JSON.parse(data) as BridgeClientMessage);
  }

  close(): void {
    this.fire('close');
  }

  open(): void {
    this.readyState = 1;
    this.fire('open');
  }

  receive(message: BridgeServerMessage | string): void {
    this.fire('message', typeof message === 'string' ? message : JSON.stringify(message));
  }

  fire(type: string, data?: unknown): void {
    for (const listener of this.handlers.get(type) ?? []) listener({ data });
  }
}

function connect(): { socket: FakeSocket; client: ReturnType<typeof createBridgeClient>; url: string[] } {
  const socket = new FakeSocket();
  const url: string[] = [];
  const client = createBridgeClient('ws://127.0.0.1:1234/ws?session=abc', (address) => {
    url.push(address);
    return socket;
  });
  return { socket, client, url };
}

describe('bridge client', () => {
  it('builds the socket address from the page host and the session key in its fragment', () => {
    expect(bridgeUrl({ protocol: 'http:', host: '127.0.0.1:5123', hash: '#session=s3cr%2Bt' })).toBe('ws://127.0.0.1:5123/ws?session=s3cr%2Bt');
    expect(bridgeUrl({ protocol: 'https:', host: 'localhost', hash: '' })).toBe('wss://localhost/ws?session=');
  });

  it('queues requests until the socket opens, then sends them with increasing ids', () => {
    const { socket, client, url } = connect();
    expect(url).toEqual(['ws://127.0.0.1:1234/ws?session=abc']);
    void client.request('app.about', {});
    void client.request('image.open', { path: '/a.qcow2' });
    expect(socket.sent).toEqual([]);
    expect(client.state).toBe('connecting');
    socket.open();
    expect(client.state).toBe('open');
    expect(socket.sent).toEqual([
      { type: 'request', id: 1, name: 'app.about', args: {} },
      { type: 'request', id: 2, name: 'image.open', args: { path: '/a.qcow2' } },
    ]);
  });

  it('matches each reply to its request by id, whatever the order of the replies', async () => {
    const { socket, client } = connect();
    socket.open();
    const first = client.request('app.initialPaths', {});
    const second = client.request('path.complete', { prefix: '/tmp/' });
    socket.receive({ type: 'reply', id: 2, reply: { ok: true, value: [{ path: '/tmp/a', kind: 'folder' }] } });
    socket.receive({ type: 'reply', id: 1, reply: { ok: true, value: ['/x.qcow2'] } });
    await expect(first).resolves.toEqual(['/x.qcow2']);
    await expect(second).resolves.toEqual([{ path: '/tmp/a', kind: 'folder' }]);
  });

  it('rejects with the code and message of an error reply', async () => {
    const { socket, client } = connect();
    socket.open();
    const opening = client.request('image.open', { path: '/etc/hostname' });
    socket.receive({ type: 'reply', id: 1, reply: { ok: false, error: { code: 'BAD_MAGIC', message: 'not qcow2' } } });
    await expect(opening).rejects.toMatchObject({ code: 'BAD_MAGIC', message: 'not qcow2' });
    await expect(opening).rejects.toBeInstanceOf(ApiError);
  });

  it('rejects a reply it cannot read as BAD_REPLY and ignores frames that are not JSON', async () => {
    const { socket, client } = connect();
    socket.open();
    const opening = client.request('app.about', {});
    socket.receive('not json {');
    socket.receive({ type: 'reply', id: 99, reply: { ok: true, value: 'for nobody' } });
    socket.receive({ type: 'reply', id: 1, reply: { value: 'no ok field' } as never });
    await expect(opening).rejects.toMatchObject({ code: 'BAD_REPLY' });
  });

  it('delivers events to the listeners of that event only, until they unsubscribe', () => {
    const { socket, client } = connect();
    socket.open();
    const changed = vi.fn();
    const progress = vi.fn();
    const stop = client.on('image.changed', changed);
    client.on('job.progress', progress);
    socket.receive({ type: 'event', event: 'image.changed', payload: { path: '/a.qcow2' } });
    socket.receive({ type: 'event', event: 'no.such.event' as never, payload: {} });
    expect(changed).toHaveBeenCalledWith({ path: '/a.qcow2' });
    expect(progress).not.toHaveBeenCalled();
    stop();
    socket.receive({ type: 'event', event: 'image.changed', payload: { path: '/b.qcow2' } });
    expect(changed).toHaveBeenCalledTimes(1);
  });

  it('keeps delivering an event to other listeners when one throws', () => {
    const { socket, client } = connect();
    socket.open();
    const quiet = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const second = vi.fn();
    client.on('image.changed', () => {
      throw new Error('listener bug');
    });
    client.on('image.changed', second);
    socket.receive({ type: 'event', event: 'image.changed', payload: { path: '/a.qcow2' } });
    expect(second).toHaveBeenCalled();
    quiet.mockRestore();
  });

  it('fails pending and later requests with DISCONNECTED once the socket closes, and says so', async () => {
    const { socket, client } = connect();
    const states: string[] = [];
    client.onStateChange((state) => states.push(state));
    socket.open();
    const pending = client.request('app.about', {});
    socket.fire('close');
    await expect(pending).rejects.toMatchObject({ code: 'DISCONNECTED' });
    await expect(client.request('app.about', {})).rejects.toMatchObject({ code: 'DISCONNECTED' });
    expect(client.state).toBe('lost');
    expect(states).toEqual(['open', 'lost']);
  });
});
