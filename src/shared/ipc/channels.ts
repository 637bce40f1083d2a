/** Electron IPC channel names, shared by main and the preload: requests in (invoke), events out (send). */
export const REQUEST_CHANNEL = 'cowbell:request';
export const EVENT_CHANNEL = 'cowbell:event';
