/**
 * Inside a fuzz worker: refuses any single typed-array or ArrayBuffer allocation above a limit.
 * Buffers live outside the V8 heap, so the worker's resourceLimits do not bound them; a file
 * field that sizes a buffer unchecked shows up here instead. The violation is remembered even if
 * the engine catches the error, so a `catch` that turns it into a typed error cannot hide it.
 */
const GUARDED = [
  'ArrayBuffer',
  'SharedArrayBuffer',
  'Int8Array',
  'Uint8Array',
  'Uint8ClampedArray',
  'Int16Array',
  'Uint16Array',
  'Int32Array',
  'Uint32Array',
  'Float32Array',
  'Float64Array',
  'BigInt64Array',
  'BigUint64Array',
] as const;

export interface AllocationGuard {
  /** The first violation since the last call, if any, and forgets it. */
  take(): string | null;
}

export function installAllocationGuard(limitBytes: number): AllocationGuard {
  let violation: string | null = null;
  const globals = globalThis as unknown as Record<string, unknown>;
  for (const name of GUARDED) {
    const original = globals[name] as (new (...args: unknown[]) => object) & { BYTES_PER_ELEMENT?: number };
    const elementBytes = original.BYTES_PER_ELEMENT ?? 1;
    globals[name] = new Proxy(original, {
      construct(target, args: unknown[], newTarget) {
        const first = args[0];
        if (typeof first === 'number' && first * elementBytes > limitBytes) {
          const where = new Error().stack?.split('\n').slice(2, 7).join('\n') ?? '';
          violation ??= `new ${name}(${first}) asks for ${first * elementBytes} bytes (limit ${limitBytes})\n${where}`;
          throw new RangeError(`Fuzz allocation guard: new ${name}(${first}) is over the limit`);
        }
        return Reflect.construct(target, args, newTarget) as object;
      },
    });
  }
  return {
    take() {
      const found = violation;
      violation = null;
      return found;
    },
  };
}
