import { ipcMain, type IpcMainInvokeEvent, type WebContents } from 'electron';
import { REQUEST_CHANNEL } from '../shared/ipc/channels.ts';
import type { Reply } from '../shared/ipc/contract.ts';
import type { RequestHandle } from './handlers.ts';
import { isSameOrigin } from './security.ts';

const REFUSED: Reply<never> = {
  ok: false,
  error: { code: 'INVALID_REQUEST', message: 'Refused: the request did not come from Cowbell’s own window' },
};

/** A request counts only from our window's top frame, showing our own page. */
export function isTrustedSender(event: IpcMainInvokeEvent, contents: WebContents | null, trustedOrigin: string): boolean {
  if (contents === null || contents.isDestroyed() || event.sender !== contents) return false;
  const frame = event.senderFrame;
  const main = contents.mainFrame;
  if (frame === null || frame.parent !== null) return false;
  if (frame.processId !== main.processId || frame.frameToken !== main.frameToken) return false;
  return isSameOrigin(frame.url, trustedOrigin);
}

/** Registers the request channel; every request is checked for its sender before anything else. */
export function registerRequestChannel(
  windowContents: () => WebContents | null,
  trustedOrigin: string,
  handle: RequestHandle,
): () => void {
  ipcMain.handle(REQUEST_CHANNEL, async (event, name: unknown, args: unknown) => {
    if (!isTrustedSender(event, windowContents(), trustedOrigin)) return REFUSED;
    return handle(name, args);
  });
  return () => ipcMain.removeHandler(REQUEST_CHANNEL);
}
