/** The bundle's rewrite of static imports of Node's built-in modules (scripts/lib/builtin-imports.ts). */
import { describe, expect, it } from 'vitest';
import { builtinImportsViaGetBuiltinModule } from '../../scripts/lib/builtin-imports.ts';

describe('builtinImportsViaGetBuiltinModule', () => {
  it('turns namespace, default and named imports of built-ins into reads of process.getBuiltinModule', () => {
    const code = ['import * as fs from "node:fs";', 'import path from "path";', 'import { dirname, sep as separator } from "node:path";', 'console.log(fs, path, dirname, separator);'].join('\n');
    expect(builtinImportsViaGetBuiltinModule(code).split('\n')).toEqual([
      'const fs = process.getBuiltinModule("node:fs");',
      'const path = process.getBuiltinModule("node:path");',
      'const { dirname, sep: separator } = process.getBuiltinModule("node:path");',
      'console.log(fs, path, dirname, separator);',
    ]);
  });

  it('leaves imports of the bundle’s own chunks and of packages as they are', () => {
    const code = ['import { t as Qcow2Error } from "./chunks/errors-CGxPsvCS.mjs";', 'import koffi from "koffi";', 'const text = \'import * as fs from "node:fs";\';'].join('\n');
    expect(builtinImportsViaGetBuiltinModule(code)).toBe(code);
  });

  it('gives the same module objects the imports named', async () => {
    const fs = await import('node:fs');
    const rewritten = builtinImportsViaGetBuiltinModule('import { readFileSync } from "node:fs";\nimport * as os from "node:os";');
    const read = new Function(`${rewritten}\nreturn { readFileSync, os };`) as () => { readFileSync: unknown; os: unknown };
    const result = read();
    expect(result.readFileSync).toBe(fs.readFileSync);
    expect(result.os).toBe(process.getBuiltinModule('node:os'));
  });
});
