// Flat config: recommended rules for JS, TypeScript and Vue, plus the layering rules of DESIGN.md
// (shared imports nothing above it; the renderer sees only the IPC contract and plain model types).
import { builtinModules } from 'node:module';
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import pluginVue from 'eslint-plugin-vue';
import importX from 'eslint-plugin-import-x';
import globals from 'globals';
import tseslint from 'typescript-eslint';
import vueParser from 'vue-eslint-parser';

const NODE_BUILTINS = builtinModules.filter((name) => !name.startsWith('_'));

/** The engine's import zones: each folder may import only the folders listed below it. */
function engineZones() {
  const root = './src/shared/qcow2';
  const base = ['errors.ts', 'errors-codes.ts', 'model.ts', 'job-context.ts', 'steps.ts', 'guest-names.ts'];
  const features = ['snapshots', 'check', 'convert', 'rewrite', 'files', 'chain'];
  const below = {
    format: [],
    io: ['format'],
    codec: ['format', 'io'],
    crypto: ['format', 'io'],
    image: ['format', 'io', 'codec', 'crypto'],
    ...Object.fromEntries(features.map((name) => [name, ['format', 'io', 'codec', 'crypto', 'image']])),
  };
  // Crossings between feature folders, each with its reason:
  // a rewrite checks its output with the same check the user runs, before it may replace anything.
  below.rewrite.push('check');
  // and it records the snapshot tree it read (snapshots/) so the copy shows the same tree.
  below.rewrite.push('snapshots');
  // commit grows a base smaller than the overlay first, as qemu-img does, with resize's crash-safe grow (snapshots/resize.ts).
  below.chain.push('snapshots');
  const zones = Object.entries(below).map(([folder, allowed]) => ({
    target: `${root}/${folder}`,
    from: root,
    except: [`./${folder}`, ...allowed.map((name) => `./${name}`), ...base.map((name) => `./${name}`)],
    message: `${folder}/ may import only ${[...allowed.map((name) => `${name}/`), 'the base modules'].join(', ')} (src/shared/qcow2/README.md).`,
  }));
  // The base modules import only each other.
  for (const name of base) {
    zones.push({
      target: `${root}/${name}`,
      from: root,
      except: base.map((other) => `./${other}`),
      message: 'The engine\'s base modules (errors, model, job context, steps) import only each other.',
    });
  }
  return zones;
}

const layer = (files, message, { paths = [], patterns = [] }) => ({
  files,
  rules: {
    'no-restricted-imports': [
      'error',
      {
        paths: paths.map((name) => ({ name, message })),
        patterns: patterns.map((regex) => ({ regex, message })),
      },
    ],
  },
});

export default defineConfig(
  { ignores: ['out/**', 'dist/**', 'node_modules/**', 'test-results/**', '.cache/**', 'coverage/**'] },

  js.configs.recommended,
  tseslint.configs.recommended,
  pluginVue.configs['flat/recommended'],

  {
    files: ['**/*.vue'],
    rules: {
      // Template line layout is a formatter's call, not a lint finding; the rest of flat/recommended stays.
      'vue/max-attributes-per-line': 'off',
      'vue/singleline-html-element-content-newline': 'off',
      'vue/html-self-closing': 'off',
    },
    languageOptions: {
      parser: vueParser,
      parserOptions: { parser: tseslint.parser, extraFileExtensions: ['.vue'], sourceType: 'module' },
    },
  },

  {
    languageOptions: { ecmaVersion: 'latest', sourceType: 'module', globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },

  // The launcher has no extension (it is a command), so it is named here to be linted as JavaScript.
  { files: ['bin/cowbell'] },

  {
    files: ['src/renderer/**', 'src/preload/**', 'test/renderer/**'],
    languageOptions: { globals: { ...globals.browser } },
  },

  layer(['src/shared/**'], 'src/shared is the bottom layer: it imports nothing from main, preload, renderer or cli, and not electron.', {
    paths: ['electron'],
    patterns: ['(^|/)(main|preload|renderer|cli)/'],
  }),

  layer(
    ['src/renderer/**'],
    'The renderer has no Node and no Electron: it reaches main through window.cowbell, and from src/shared takes only ipc/, qcow2/model.ts, qcow2/errors-codes.ts, qcow2/guest-names.ts, format-units.ts, hidden-characters.ts, compressed-states.ts and space-order.ts.',
    {
      paths: ['electron', ...NODE_BUILTINS],
      patterns: [
        '^node:',
        '(^|/)(main|preload|cli)/',
        '(^|/)shared/(?!ipc/|qcow2/model\\.ts$|qcow2/errors-codes\\.ts$|qcow2/guest-names\\.ts$|format-units\\.ts$|hidden-characters\\.ts$|compressed-states\\.ts$|space-order\\.ts$)',
      ],
    },
  ),

  layer(['src/preload/**'], 'The preload runs sandboxed: it may import only electron and src/shared/ipc.', {
    patterns: ['^(?!electron$|\\.\\./shared/ipc/)'],
  }),

  layer(['src/main/**'], 'Main never imports the renderer or the preload.', {
    patterns: ['(^|/)(renderer|preload)/'],
  }),

  // One layer for the CLI: a later block's no-restricted-imports replaces an earlier one's for the same file.
  layer(
    ['src/cli/**'],
    'The CLI runs the engine without Electron, never imports main, the renderer or the preload, and takes each engine module directly: the engine index loads every chunk of the bundle, tens of milliseconds of a short command.',
    {
      paths: ['electron'],
      patterns: ['(^|/)(main|renderer|preload)/', '(^|/)qcow2/index\\.ts$'],
    },
  ),

  // The engine's own layers (src/shared/qcow2/README.md), bottom to top: the base modules at its top
  // level (errors, model types, job context, steps) → format/ → io/ → codec/ and crypto/ → image/ →
  // the feature folders → index.ts. A folder imports only from below it; feature folders do not import
  // each other (what two of them share belongs in image/ or below). Cycles fail as well.
  {
    files: ['src/shared/qcow2/**/*.ts'],
    plugins: { 'import-x': importX },
    settings: {
      'import-x/resolver': { node: { extensions: ['.ts'] } },
      'import-x/extensions': ['.ts'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
    },
    rules: {
      'import-x/no-cycle': 'error',
      'import-x/no-restricted-paths': ['error', { zones: engineZones() }],
    },
  },
);
