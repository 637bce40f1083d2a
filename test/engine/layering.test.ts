/**
 * The engine's folders are layers (src/shared/qcow2/README.md) and `npm run lint` enforces them:
 * these examples lint code placed in real engine folders and check which imports the rule refuses.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import { beforeAll, describe, expect, it } from 'vitest';

const projectRoot = fileURLToPath(new URL('../../', import.meta.url));
const engine = (name: string): string => path.join(projectRoot, 'src/shared/qcow2', name);

let eslint: ESLint;
beforeAll(() => {
  eslint = new ESLint({ cwd: projectRoot });
});

/** The rule ids that fire on `code` as if it were the file at `enginePath`. */
async function findings(enginePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: engine(enginePath) });
  return (result?.messages ?? []).map((message) => message.ruleId ?? message.message);
}

// ESLint's first run (type-aware rules) takes seconds on a busy machine.
describe('engine layering', { timeout: 60_000 }, () => {
  it('refuses an upward import: format/ importing the open image', async () => {
    const found = await findings('format/probe.ts', "import { Qcow2Image } from '../image/image.ts';\nexport const probe = Qcow2Image;\n");
    expect(found).toContain('import-x/no-restricted-paths');
  });

  it('refuses io/ importing a feature folder, and image/ importing one', async () => {
    expect(await findings('io/probe.ts', "import { checkImage } from '../check/check.ts';\nexport const probe = checkImage;\n")).toContain(
      'import-x/no-restricted-paths',
    );
    expect(
      await findings('image/probe.ts', "import { takeSnapshot } from '../snapshots/operations.ts';\nexport const probe = takeSnapshot;\n"),
    ).toContain('import-x/no-restricted-paths');
  });

  it('refuses one feature folder importing another', async () => {
    const found = await findings('check/probe.ts', "import { convertImage } from '../convert/convert.ts';\nexport const probe = convertImage;\n");
    expect(found).toContain('import-x/no-restricted-paths');
  });

  it('refuses a cycle inside a folder', async () => {
    // entries.ts imports bytes.ts, so bytes.ts importing entries.ts closes a cycle.
    const found = await findings('format/bytes.ts', "import { decodeL1 } from './entries.ts';\nexport const probe = decodeL1;\n");
    expect(found).toContain('import-x/no-cycle');
  });

  it('allows a downward import: a feature folder using the image, io and format', async () => {
    const code = [
      "import { Qcow2Image } from '../image/image.ts';",
      "import { NodeBlockFile } from '../io/block-file.ts';",
      "import { hex } from '../format/bytes.ts';",
      "import { Qcow2Error } from '../errors.ts';",
      'export const probe = [Qcow2Image, NodeBlockFile, hex, Qcow2Error];',
      '',
    ].join('\n');
    expect(await findings('convert/probe.ts', code)).toEqual([]);
  });
});
