/**
 * The bundled command line takes Node's built-in modules through process.getBuiltinModule, not
 * `import … from 'node:fs'`: an ESM import of a built-in builds its ESM facade, which reads every
 * export — node:fs's lazy `promises`, `ReadStream`, … getters load fs/promises, readline, streams
 * and net, milliseconds of a short command's start-up for modules it never uses. The module object
 * getBuiltinModule returns is the one the facade wraps (its exports never change), so a namespace
 * or default import becomes that object and named imports are read off it once.
 */
import { builtinModules } from 'node:module';

const builtins = new Set(builtinModules);

/** `import * as a from "node:x";`, `import a from "node:x";`, `import { b, c as d } from "node:x";` at the start of a line. */
const IMPORT = /^import\s+(\*\s+as\s+[\w$]+|[\w$]+|\{[^}]*\})\s+from\s+"([^"]+)";?[ \t]*$/gm;

function isBuiltin(specifier: string): boolean {
  return specifier.startsWith('node:') || builtins.has(specifier);
}

/** `{ b, c as d }` as a destructuring pattern: `{ b, c: d }`. */
function pattern(named: string): string {
  return named.replace(/([\w$]+)\s+as\s+([\w$]+)/g, '$1: $2');
}

/** A chunk's code with its static imports of built-in modules read from process.getBuiltinModule. */
export function builtinImportsViaGetBuiltinModule(code: string): string {
  return code.replace(IMPORT, (statement: string, clause: string, specifier: string) => {
    if (!isBuiltin(specifier)) return statement;
    const id = specifier.startsWith('node:') ? specifier : `node:${specifier}`;
    const binding = clause.startsWith('*') ? clause.replace(/^\*\s+as\s+/, '') : clause.startsWith('{') ? pattern(clause) : clause;
    return `const ${binding} = process.getBuiltinModule(${JSON.stringify(id)});`;
  });
}
