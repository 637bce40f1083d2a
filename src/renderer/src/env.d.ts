import type { CowbellApi } from '../../shared/ipc/contract.ts';

declare global {
  interface Window {
    /** Set by the Electron preload; absent in browser mode, where api.ts uses the WebSocket bridge. */
    cowbell?: CowbellApi;
  }
}

export {};
