/**
 * A long list drawn as a window: past `windowedFrom` items only the rows in view of the scrolling
 * list element, and a few around them, are drawn (TanStack Virtual keeps the scroll offset and the
 * range); the rows are then of a fixed height, `rowPx`, so none needs measuring as it scrolls in.
 * Tens of thousands of rows drawn at once kept the window busy for most of a minute.
 */
import { useVirtualizer } from '@tanstack/vue-virtual';
import { computed, type ComputedRef, type Ref } from 'vue';

export interface WindowedRows<T> {
  /** Whether the list is long enough to be drawn as a window. */
  windowed: ComputedRef<boolean>;
  /** The rows to draw, each with its place in the whole list: every item, or those in the window. */
  rows: ComputedRef<{ item: T; index: number }[]>;
  /**
   * The height of the rows not drawn, above and below the window: drawn as empty rows so that the
   * scrollbar stands for the whole list (as padding it would set the list's least height, and the
   * list would grow to hold every row).
   */
  room: ComputedRef<{ above: number; below: number }>;
}

export function useWindowedRows<T>(items: Ref<readonly T[]>, list: Ref<HTMLElement | null>, keyOf: (item: T) => string, options: { windowedFrom: number; rowPx: number }): WindowedRows<T> {
  const windowed = computed(() => items.value.length > options.windowedFrom);
  const virtualizer = useVirtualizer(
    computed(() => ({
      enabled: windowed.value,
      count: windowed.value ? items.value.length : 0,
      getScrollElement: () => list.value,
      estimateSize: () => options.rowPx,
      getItemKey: (index: number) => {
        const item = items.value[index];
        return item === undefined ? index : keyOf(item);
      },
      overscan: 12,
    })),
  );
  const rows = computed(() => {
    if (!windowed.value) return items.value.map((item, index) => ({ item, index }));
    return virtualizer.value.getVirtualItems().flatMap((virtual) => {
      const item = items.value[virtual.index];
      return item === undefined ? [] : [{ item, index: virtual.index }];
    });
  });
  const room = computed(() => {
    if (!windowed.value) return { above: 0, below: 0 };
    const drawn = virtualizer.value.getVirtualItems();
    const above = drawn[0]?.start ?? 0;
    return { above, below: Math.max(0, virtualizer.value.getTotalSize() - (drawn.at(-1)?.end ?? above)) };
  });
  return { windowed, rows, room };
}
