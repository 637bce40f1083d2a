/**
 * LVM2's text metadata ("Text Format Volume Group"): `name = value` pairs and `name { … }`
 * sections, values being quoted strings, integers or `[ … ]` lists of them; `#` starts a comment.
 * Parsed into plain objects; anything else is FILESYSTEM_CORRUPT (a hostile disk's bytes).
 */
import { Qcow2Error } from '../errors.ts';

export type LvmValue = string | number | LvmValue[];
export interface LvmSection {
  values: Map<string, LvmValue>;
  sections: Map<string, LvmSection>;
}

const MAX_DEPTH = 16;

function corrupt(message: string): Qcow2Error {
  return new Qcow2Error('FILESYSTEM_CORRUPT', `LVM metadata: ${message}`);
}

type Token = { kind: 'name' | 'string' | 'number'; text: string } | { kind: 'symbol'; text: '=' | '{' | '}' | '[' | ']' | ',' };

function* tokens(text: string): Generator<Token> {
  let at = 0;
  while (at < text.length) {
    const character = text[at] as string;
    if (character === '#') {
      const end = text.indexOf('\n', at);
      at = end < 0 ? text.length : end + 1;
    } else if (/\s/.test(character) || character === '\0') at++;
    else if ('={}[],'.includes(character)) {
      yield { kind: 'symbol', text: character as '=' };
      at++;
    } else if (character === '"') {
      let value = '';
      at++;
      for (;;) {
        if (at >= text.length) throw corrupt('a string without its closing quote');
        const next = text[at] as string;
        if (next === '"') break;
        if (next === '\\' && at + 1 < text.length) {
          value += text[at + 1];
          at += 2;
        } else {
          value += next;
          at++;
        }
      }
      at++;
      yield { kind: 'string', text: value };
    } else {
      const match = /^[-+]?[0-9]+(?![A-Za-z0-9_.+-])|^[A-Za-z0-9_.+-]+/.exec(text.slice(at, at + 256));
      if (match === null) throw corrupt(`an unexpected character ${JSON.stringify(character)}`);
      yield { kind: /^[-+]?[0-9]+$/.test(match[0]) ? 'number' : 'name', text: match[0] };
      at += match[0].length;
    }
  }
}

/** The top level of `text`: its values and sections (an LVM text holds one section, the volume group). */
export function parseLvmMetadata(text: string): LvmSection {
  const stream = tokens(text);
  let lookahead: Token | undefined = stream.next().value ?? undefined;
  const next = (): Token | undefined => {
    const token = lookahead;
    lookahead = stream.next().value ?? undefined;
    return token;
  };
  const value = (depth: number): LvmValue => {
    const token = next();
    if (token === undefined) throw corrupt('a value is missing at the end');
    if (token.kind === 'string') return token.text;
    if (token.kind === 'number') {
      const number = Number(token.text);
      if (!Number.isSafeInteger(number)) throw corrupt(`the number ${token.text} is out of range`);
      return number;
    }
    if (token.kind === 'symbol' && token.text === '[') {
      if (depth > MAX_DEPTH) throw corrupt('lists nested too deep');
      const list: LvmValue[] = [];
      if (lookahead?.kind === 'symbol' && lookahead.text === ']') {
        next();
        return list;
      }
      for (;;) {
        list.push(value(depth + 1));
        const separator = next();
        if (separator?.kind === 'symbol' && separator.text === ']') return list;
        if (!(separator?.kind === 'symbol' && separator.text === ',')) throw corrupt('a list without its closing bracket');
      }
    }
    throw corrupt(`an unexpected ${JSON.stringify(token.text)} where a value belongs`);
  };
  const section = (depth: number, top: boolean): LvmSection => {
    if (depth > MAX_DEPTH) throw corrupt('sections nested too deep');
    const result: LvmSection = { values: new Map(), sections: new Map() };
    for (;;) {
      const token = next();
      if (token === undefined) {
        if (top) return result;
        throw corrupt('a section without its closing brace');
      }
      if (token.kind === 'symbol' && token.text === '}' && !top) return result;
      if (token.kind !== 'name') throw corrupt(`an unexpected ${JSON.stringify(token.text)} where a name belongs`);
      const after = next();
      if (after?.kind === 'symbol' && after.text === '=') result.values.set(token.text, value(depth));
      else if (after?.kind === 'symbol' && after.text === '{') result.sections.set(token.text, section(depth + 1, false));
      else throw corrupt(`${token.text} is followed by neither "=" nor "{"`);
    }
  };
  return section(0, true);
}
