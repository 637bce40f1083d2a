/**
 * End-to-end harness: starts Cowbell in browser mode (`scripts/serve.ts`) on a free port, drives
 * Debian's Chromium through playwright-core with a throw-away profile, and tears both down.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext, type ConsoleMessage, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';

export const repoRoot = resolve(import.meta.dirname, '../..');
export const screenshotDir = join(repoRoot, 'test-results', 'screenshots');

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const SERVER_LINE = /^Cowbell \(browser mode\): (http:\/\/127\.0\.0\.1:\d+\/\?token=\S+)$/m;
const SERVER_START_TIMEOUT_MS = 30_000;

export interface Server {
  url: string;
  process: ChildProcess;
  /** Everything the server printed, for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

/** `node scripts/serve.ts --port 0 --no-build PATHS…`, resolved once it prints its address; `env` adds to the environment (test hooks). */
export function startServer(paths: string[] = [], env: Record<string, string> = {}): Promise<Server> {
  const child = spawn(process.execPath, ['scripts/serve.ts', '--port', '0', '--no-build', ...paths], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FORCE_COLOR: '0', ...env },
  });
  let stdout = '';
  let stderr = '';
  const output = (): string => `stdout:\n${stdout}\nstderr:\n${stderr}`;
  const exited = new Promise<void>((resolveExit) => child.once('exit', () => resolveExit()));

  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };

  return new Promise<Server>((resolveServer, rejectServer) => {
    const timer = setTimeout(() => {
      void stop();
      rejectServer(new Error(`serve.ts printed no address within ${SERVER_START_TIMEOUT_MS} ms\n${output()}`));
    }, SERVER_START_TIMEOUT_MS);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      const match = SERVER_LINE.exec(stdout);
      if (match?.[1]) {
        clearTimeout(timer);
        resolveServer({ url: match[1], process: child, output, stop });
      }
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      rejectServer(new Error(`serve.ts exited (${code ?? signal}) before printing its address\n${output()}`));
    });
  });
}

export interface BrowserOptions {
  viewport?: { width: number; height: number };
  colorScheme?: 'light' | 'dark';
}

export interface Browser {
  context: BrowserContext;
  page: Page;
  /** Console errors, page errors and CSP violations seen so far. */
  problems: string[];
  close(): Promise<void>;
}

export async function launchBrowser(options: BrowserOptions = {}): Promise<Browser> {
  const profile = await mkdtemp(join(tmpdir(), 'cowbell-chromium-'));
  // A persistent context is how playwright takes a user-data dir: a fresh one per browser.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: options.viewport ?? { width: 1400, height: 900 },
    colorScheme: options.colorScheme ?? 'light',
    deviceScaleFactor: 1,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const problems: string[] = [];
  page.on('console', (message: ConsoleMessage) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  return {
    context,
    page,
    problems,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

export interface Session extends Browser {
  server: Server;
}

/** A server (opening `paths` at start) and a browser showing it, ready to use. */
export async function openApp(paths: string[] = [], options: BrowserOptions & { env?: Record<string, string> } = {}): Promise<Session> {
  const server = await startServer(paths, options.env);
  let browser: Browser;
  try {
    browser = await launchBrowser(options);
    await browser.page.goto(server.url);
    await browser.page.getByTestId('connection-state').and(browser.page.locator('[data-state="open"]')).waitFor();
  } catch (error) {
    await server.stop();
    throw error;
  }
  const close = browser.close;
  return {
    ...browser,
    server,
    async close() {
      await close();
      await server.stop();
    },
  };
}

export interface SharedApp {
  folder: string;
  session: Session;
}

export interface SharedAppOptions {
  /** After each test, a screenshot named with this prefix and the test's name. */
  screenshotPrefix?: string;
  /** The assertion's message when the page logged errors. */
  problemsLabel?: string;
  /** Added to the server's environment (a test hook such as COWBELL_TEST_TREE_GATE). */
  env?: Record<string, string>;
}

/**
 * One app for a whole test file: a temporary folder and a session opened before the first test
 * (handed to `opened`), after each test a screenshot (if asked), Escape to close what a test left
 * open, and no errors logged by the page; the session closed and the folder removed at the end.
 */
export function useSharedApp(opened: (app: SharedApp) => void, options: SharedAppOptions = {}): void {
  let app: SharedApp | null = null;
  beforeAll(async () => {
    const folder = await makeTempDir();
    app = { folder, session: await openApp([], { viewport: { width: 1400, height: 900 }, env: options.env }) };
    opened(app);
  });
  afterAll(async () => {
    await app?.session.close();
    if (app !== null) await rm(app.folder, { recursive: true, force: true });
  });
  afterEach(async (context) => {
    if (app === null) return;
    const { page, problems } = app.session;
    if (options.screenshotPrefix !== undefined) await screenshot(page, `${options.screenshotPrefix}-${context.task.name.replace(/[^a-z0-9]+/gi, '-').toLowerCase().slice(0, 60)}`);
    await page.keyboard.press('Escape');
    expect(problems, options.problemsLabel ?? 'the page logged errors').toEqual([]);
  });
}

/** Types a path into the sidebar's field and presses Enter, as a user would. */
export async function openThroughPathField(page: Page, path: string): Promise<void> {
  const field = page.getByTestId('path-input');
  await field.fill(path);
  await field.press('Enter');
}

// Generous: on a 2-core CI machine the worker pool, the server and Chromium share the CPU.
const UI_TIMEOUT_MS = 15_000;

/** `expect.poll` with a timeout fit for a real server and browser (vitest's default is one second). */
export function eventually<T>(read: () => Promise<T> | T): ReturnType<typeof expect.poll<T>> {
  return expect.poll(read, { timeout: UI_TIMEOUT_MS, interval: 50 });
}

export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(screenshotDir, { recursive: true });
  const file = join(screenshotDir, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}

export async function makeTempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'cowbell-e2e-'));
}

export function qemuImg(...args: string[]): string {
  return execFileSync('qemu-img', args, { encoding: 'utf8' });
}

/** What qemu-img itself says about an image, to compare the page against. */
export function qemuImgInfo(path: string): { 'virtual-size': number; 'cluster-size': number; 'actual-size': number } {
  return JSON.parse(qemuImg('info', '--output=json', path)) as {
    'virtual-size': number;
    'cluster-size': number;
    'actual-size': number;
  };
}

/** Switches the disk view to one of its tabs (Snapshots, Space, Map, Properties). */
export async function showTab(page: Page, tab: 'snapshots' | 'space' | 'map' | 'properties'): Promise<void> {
  await page.getByTestId(`tab-${tab}`).click();
}
