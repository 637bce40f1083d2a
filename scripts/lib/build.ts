import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { projectPath } from './project.ts';

const OUTPUTS = ['out/main/index.js', 'out/preload/index.cjs', 'out/renderer/index.html'];
const INPUTS = ['src', 'electron.vite.config.ts', 'package.json'];

/** Builds with electron-vite when an output is missing or older than any source file. */
export function ensureBuilt(): void {
  if (!isBuildStale()) return;
  console.error('Building Cowbell (electron-vite build)…');
  // The build's chatter goes to stderr: stdout carries only the lines other tools parse.
  const result = spawnSync(process.execPath, [projectPath('node_modules/electron-vite/bin/electron-vite.js'), 'build'], {
    cwd: projectPath(),
    stdio: ['ignore', 2, 2],
  });
  if (result.status !== 0) {
    throw new Error(`the build failed (electron-vite exited with ${result.status ?? result.signal})`);
  }
}

export function isBuildStale(): boolean {
  let oldestOutput = Number.POSITIVE_INFINITY;
  for (const output of OUTPUTS) {
    const time = modifiedAt(projectPath(output));
    if (time === null) return true;
    oldestOutput = Math.min(oldestOutput, time);
  }
  return INPUTS.some((input) => newestIn(projectPath(input)) > oldestOutput);
}

function newestIn(path: string): number {
  let stat;
  try {
    stat = statSync(path);
  } catch {
    return 0;
  }
  if (!stat.isDirectory()) return stat.mtimeMs;
  let newest = 0;
  for (const entry of readdirSync(path)) newest = Math.max(newest, newestIn(join(path, entry)));
  return newest;
}

function modifiedAt(path: string): number | null {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return null;
  }
}
