import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectPath } from './project.ts';

/** Electron's executable if its install step put one here (never downloads), else null. */
export function electronBinary(): string | null {
  const pathFile = projectPath('node_modules/electron/path.txt');
  if (!existsSync(pathFile)) return null;
  const binary = join(projectPath('node_modules/electron/dist'), readFileSync(pathFile, 'utf8').trim());
  return existsSync(binary) ? binary : null;
}
