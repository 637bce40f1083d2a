/**
 * A bounded cache in two generations: entries go into the young one; when it holds `perGeneration`
 * entries it becomes the old one and the old one is dropped whole (its values to `onDrop`). An entry
 * found in the old generation moves back into the young one. Evicting one entry at a time from a
 * Map's head costs more the more were evicted before it (V8 skips the deleted entries each time);
 * dropping a whole Map does not.
 */
export class GenerationalCache<K, V> {
  private young = new Map<K, V>();
  private old = new Map<K, V>();
  private readonly perGeneration: number;
  private readonly onDrop: ((dropped: Iterable<V>) => void) | null;

  constructor(perGeneration: number, onDrop: ((dropped: Iterable<V>) => void) | null = null) {
    this.perGeneration = Math.max(1, perGeneration);
    this.onDrop = onDrop;
  }

  get(key: K): V | undefined {
    const young = this.young.get(key);
    if (young !== undefined) return young;
    const old = this.old.get(key);
    if (old !== undefined) {
      this.old.delete(key);
      this.set(key, old);
    }
    return old;
  }

  set(key: K, value: V): void {
    if (this.young.size >= this.perGeneration) {
      this.onDrop?.(this.old.values());
      this.old = this.young;
      this.young = new Map();
    }
    this.young.set(key, value);
  }
}
