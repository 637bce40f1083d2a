// Flat config: recommended rules for JS, TypeScript and Vue, plus the layering rules of DESIGN.md
// (shared imports nothing above it; the renderer sees only the IPC contract and plain model types).
import { builtinModules } from 'node:module';
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import pluginVue from 'eslint-plugin-vue';
import globals from 'globals';
import tseslint from 'typescript-eslint';
import vueParser from 'vue-eslint-parser';

const NODE_BUILTINS = builtinModules.filter((name) => !name.startsWith('_'));

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
    'The renderer has no Node and no Electron: it reaches main through window.cowbell, and from src/shared takes only ipc/, qcow2/model.ts, qcow2/errors-codes.ts and format-units.ts.',
    {
      paths: ['electron', ...NODE_BUILTINS],
      patterns: [
        '^node:',
        '(^|/)(main|preload|cli)/',
        '(^|/)shared/(?!ipc/|qcow2/model\\.ts$|qcow2/errors-codes\\.ts$|format-units\\.ts$)',
      ],
    },
  ),

  layer(['src/preload/**'], 'The preload runs sandboxed: it may import only electron and src/shared/ipc.', {
    patterns: ['^(?!electron$|\\.\\./shared/ipc/)'],
  }),

  layer(['src/main/**', 'src/cli/**'], 'Main and the CLI never import the renderer or the preload.', {
    patterns: ['(^|/)(renderer|preload)/'],
  }),

  layer(['src/cli/**'], 'The CLI runs the engine without Electron.', {
    paths: ['electron'],
    patterns: ['(^|/)main/'],
  }),
);
