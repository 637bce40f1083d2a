/**
 * The page's Content-Security-Policy, sent as a response header in both modes: only our own
 * scripts and styles, no eval, no inline script, nothing framed, nothing posted anywhere.
 */
export function contentSecurityPolicy(extraConnectSources: readonly string[] = []): string {
  const directives: Record<string, string[]> = {
    'default-src': ["'none'"],
    'script-src': ["'self'"],
    'style-src': ["'self'"],
    'img-src': ["'self'", 'data:'],
    'font-src': ["'self'"],
    'connect-src': ["'self'", ...extraConnectSources],
    'base-uri': ["'none'"],
    'form-action': ["'none'"],
    'frame-ancestors': ["'none'"],
    'object-src': ["'none'"],
  };
  return Object.entries(directives)
    .map(([name, sources]) => `${name} ${sources.join(' ')}`)
    .join('; ');
}

/** True when `url` belongs to `origin` (scheme, host and port), whatever its path. */
export function isSameOrigin(url: string, origin: string): boolean {
  try {
    const candidate = new URL(url);
    const expected = new URL(origin);
    // URL.origin is "null" for custom schemes such as app://, so compare the parts.
    return candidate.protocol === expected.protocol && candidate.host === expected.host && candidate.username === '';
  } catch {
    return false;
  }
}
