import type { EventName, EventPayloads } from '../shared/ipc/contract.ts';

export type EventSink = <E extends EventName>(event: E, payload: EventPayloads[E]) => void;
export type EventListener = (event: EventName, payload: EventPayloads[EventName]) => void;

/** Fans main's events out to whoever shows them: Electron's window, or every browser-mode socket. */
export interface EventHub {
  emit: EventSink;
  subscribe(listener: EventListener): () => void;
}

export function createEventHub(): EventHub {
  const listeners = new Set<EventListener>();
  return {
    emit(event, payload) {
      for (const listener of [...listeners]) {
        try {
          listener(event, payload);
        } catch (error) {
          // One broken window must not stop the others from hearing about the job.
          console.error(`cowbell: delivering ${event} failed:`, error);
        }
      }
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
  };
}
