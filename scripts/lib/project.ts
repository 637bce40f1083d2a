import { readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';

export const projectRoot = resolve(import.meta.dirname, '..', '..');

export function projectPath(...parts: string[]): string {
  return join(projectRoot, ...parts);
}

export function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(projectPath('package.json'), 'utf8')) as { version?: unknown };
  return typeof manifest.version === 'string' ? manifest.version : '0.0.0';
}

/** npm runs scripts in the package folder; paths the user typed are relative to where they typed them. */
export function userPath(path: string): string {
  return isAbsolute(path) ? path : resolve(process.env.INIT_CWD ?? process.cwd(), path);
}
