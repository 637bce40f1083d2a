import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Finding } from '../../scripts/lib/electronegativity.ts';
import { acceptancesIn, reviewFindings } from '../../scripts/lib/security-review.ts';

const repoRoot = resolve(import.meta.dirname, '../..');
const run = promisify(execFile);

function finding(overrides: Partial<Finding>): Finding {
  return {
    check: 'PRELOAD_JS_CHECK',
    severity: 'MEDIUM',
    confidence: 'FIRM',
    file: 'main/window.ts',
    line: 10,
    column: 6,
    sample: 'preload: path,',
    description: 'Review the use of preload scripts',
    ...overrides,
  };
}

describe('judging the findings', () => {
  const accepting = (line: number, text = 'security-scan: accept PRELOAD_JS_CHECK — the preload exposes only the contract') =>
    new Map([['main/window.ts', [...Array.from({ length: line - 1 }, () => ''), `    // ${text}`].join('\n')]]);

  it('fails on MEDIUM and HIGH, and only notes LOW and INFORMATIONAL', () => {
    const review = reviewFindings(
      [finding({ severity: 'HIGH', check: 'CONTEXT_ISOLATION_JS_CHECK' }), finding({}), finding({ severity: 'LOW' }), finding({ severity: 'INFORMATIONAL' })],
      new Map(),
    );
    expect(review.blocking.map((item) => item.check)).toEqual(['CONTEXT_ISOLATION_JS_CHECK', 'PRELOAD_JS_CHECK']);
    expect(review.notes).toHaveLength(2);
    expect(review.problems).toEqual([]);
  });

  it('accepts a finding only by a comment for that check, in that file, on or just above its line, with a reason', () => {
    expect(reviewFindings([finding({})], accepting(9)).accepted).toHaveLength(1);
    expect(reviewFindings([finding({})], accepting(10)).accepted).toHaveLength(1);
    expect(reviewFindings([finding({})], accepting(5)).blocking).toHaveLength(1);
    expect(reviewFindings([finding({ file: 'main/other.ts' })], accepting(9)).blocking).toHaveLength(1);
    expect(reviewFindings([finding({ check: 'SANDBOX_JS_CHECK' })], accepting(9)).blocking).toHaveLength(1);
    const unexplained = reviewFindings([finding({})], accepting(9, 'security-scan: accept PRELOAD_JS_CHECK'));
    expect(unexplained.blocking).toHaveLength(1);
    expect(unexplained.problems).toEqual([expect.stringMatching(/needs its reason/)]);
  });

  it('fails on an acceptance that matches nothing, and on electronegativity’s own eng-disable', () => {
    expect(reviewFindings([], accepting(9)).problems).toEqual([expect.stringMatching(/no such finding there/)]);
    expect(acceptancesIn('main/a.ts', 'new BrowserWindow({}); /* eng-disable CONTEXT_ISOLATION_JS_CHECK */').problems).toEqual([
      expect.stringMatching(/^main\/a\.ts:1: eng-disable/),
    ]);
  });
});

// Any DNS lookup or socket the scan opens is reported on stderr (and refused).
const NETWORK_GUARD = `data:text/javascript,${encodeURIComponent(`
import dns from 'node:dns';
import net from 'node:net';
const refuse = (what) => { process.stderr.write('NETWORK ATTEMPT: ' + what + '\\n'); throw new Error('no network in this test'); };
dns.lookup = (host) => refuse('dns ' + host);
net.Socket.prototype.connect = function () { refuse('connect'); };
`)}`;

describe('npm run lint’s security scan', () => {
  let folder = '';
  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), 'cowbell-'));
    await mkdir(join(folder, 'main'));
  });
  afterAll(() => rm(folder, { recursive: true, force: true }));

  async function scan(): Promise<{ code: number; output: string }> {
    try {
      const { stdout, stderr } = await run(process.execPath, ['--import', NETWORK_GUARD, 'scripts/security-scan.ts', '--input', folder], {
        cwd: repoRoot,
      });
      return { code: 0, output: stdout + stderr };
    } catch (error) {
      const failed = error as { code?: number; stdout?: string; stderr?: string };
      return { code: failed.code ?? -1, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
    }
  }

  it('fails offline on a window with Node in the page, and passes once the window is hardened', async () => {
    await writeFile(
      join(folder, 'main', 'window.ts'),
      `import { BrowserWindow } from 'electron';
export const window = new BrowserWindow({ webPreferences: { nodeIntegration: true, contextIsolation: false, sandbox: false } });
`,
    );
    const unsafe = await scan();
    expect(unsafe.code).toBe(1);
    expect(unsafe.output).toMatch(/FINDING: HIGH CONTEXT_ISOLATION_JS_CHECK at main\/window\.ts:2/);
    expect(unsafe.output).toMatch(/FINDING: MEDIUM SANDBOX_JS_CHECK at main\/window\.ts:2/);
    expect(unsafe.output).toMatch(/FINDING: HIGH LIMIT_NAVIGATION_GLOBAL_CHECK/);
    expect(unsafe.output).not.toMatch(/NETWORK ATTEMPT/);

    await writeFile(
      join(folder, 'main', 'window.ts'),
      `import { BrowserWindow, session } from 'electron';
session.defaultSession.setPermissionRequestHandler((_contents, _permission, callback) => callback(false));
export const window = new BrowserWindow({
  webPreferences: { contextIsolation: true, sandbox: true, nodeIntegration: false, disableBlinkFeatures: 'Auxclick' },
});
window.webContents.on('will-navigate', (event) => event.preventDefault());
window.webContents.setWindowOpenHandler(() => ({ action: 'deny' }));
window.webContents.session.webRequest.onHeadersReceived((details, callback) =>
  callback({ responseHeaders: { ...details.responseHeaders, 'Content-Security-Policy': ["default-src 'none'"] } }),
);
`,
    );
    const hardened = await scan();
    expect(hardened.output).not.toMatch(/FINDING|NETWORK ATTEMPT/);
    expect(hardened.code).toBe(0);
    expect(hardened.output).toMatch(/0 above LOW/);
  }, 60_000);
});
