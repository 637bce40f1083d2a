/**
 * Bundles the command line into out/cli (npm runs this as the package's `prepare` on `npm ci` and
 * `npm install`): plain JavaScript that starts without type-stripping the sources, one chunk per
 * command so each loads only its part of the engine, and the helper threads' modules (compressing,
 * early verifying) beside the entry; built-in modules are taken without their ESM facades (lib/builtin-imports.ts). A manifest
 * of the sources it was built from lets bin/cowbell tell a stale bundle (sources edited since) and
 * run the sources instead.
 */
import { statSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join, relative } from 'node:path';
import { build } from 'rolldown';
import { builtinImportsViaGetBuiltinModule } from './lib/builtin-imports.ts';
import { projectPath } from './lib/project.ts';

export const CLI_OUT = 'out/cli';

export async function buildCli(outDir = projectPath(CLI_OUT)): Promise<void> {
  const result = await build({
    input: {
      cowbell: projectPath('src/cli/main.ts'),
      'compress-worker': projectPath('src/shared/qcow2/codec/compress-worker.ts'),
      'early-verify-worker': projectPath('src/shared/qcow2/rewrite/early-verify-worker.ts'),
    },
    platform: 'node',
    // koffi is a native module: loaded from node_modules at run time, never bundled.
    external: [/^node:/, ...builtinModules, 'koffi'],
    logLevel: 'warn',
    plugins: [{ name: 'builtin-imports', renderChunk: (code) => builtinImportsViaGetBuiltinModule(code) }],
    output: {
      dir: outDir,
      format: 'esm',
      entryFileNames: '[name].mjs',
      chunkFileNames: 'chunks/[name]-[hash].mjs',
      cleanDir: true,
    },
  });
  const outputs = Array.isArray(result) ? result : [result];
  const sources = new Set<string>();
  for (const output of outputs) {
    for (const chunk of output.output) {
      if (chunk.type !== 'chunk') continue;
      for (const id of chunk.moduleIds) if (id.startsWith(projectPath('src'))) sources.add(id);
    }
  }
  const root = projectPath();
  const manifest = [...sources].sort().map((file) => [relative(root, file), statSync(file).mtimeMs]);
  writeFileSync(join(outDir, 'sources.json'), JSON.stringify(manifest));
}

if (import.meta.main) await buildCli();
