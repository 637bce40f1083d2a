import { readFile } from 'node:fs/promises';
import { protocol, type Protocol } from 'electron';
import { contentTypeOf, resolveStaticFile } from './static-files.ts';

/** The renderer is served from app://cowbell/ rather than file://, so it has a real origin and our headers. */
export const APP_SCHEME = 'app';
export const APP_ORIGIN = `${APP_SCHEME}://cowbell`;

/** Must run before the app is ready. */
export function registerAppScheme(): void {
  protocol.registerSchemesAsPrivileged([
    { scheme: APP_SCHEME, privileges: { standard: true, secure: true, supportFetchAPI: true } },
  ]);
}

/** Serves the built renderer from `rendererDir` with the CSP header on every response. */
export function serveRenderer(target: Protocol, rendererDir: string, csp: string): void {
  target.handle(APP_SCHEME, async (request) => {
    const url = new URL(request.url);
    const file = url.host === 'cowbell' ? resolveStaticFile(rendererDir, url.pathname) : null;
    if (file === null) return new Response('Not found', { status: 404 });
    try {
      const body = await readFile(file);
      return new Response(body, {
        headers: {
          'content-type': contentTypeOf(file),
          'content-security-policy': csp,
          'x-content-type-options': 'nosniff',
        },
      });
    } catch {
      return new Response('Not found', { status: 404 });
    }
  });
}
