/**
 * The snapshot tree at scale, in the real UI: a disk with 500 snapshots (made by qemu-img, with
 * branches) opened in browser mode in Chromium, then the tree panned by dragging and zoomed with
 * Ctrl+wheel while a PerformanceObserver collects long tasks. Prints the longest task (goal: none
 * over 50 ms) and, as the row beside qemu-img, the time to show the drawn tree against the time
 * `qemu-img snapshot -l` takes to list the same disk. Then the allocation map of a 1 TiB disk: the
 * time from opening the Map tab to the drawn map, beside `qemu-img map --output=json`.
 */
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBuilt } from '../scripts/lib/build.ts';
import { makeTempDir, openApp, openThroughPathField, qemuImg, screenshot } from '../test/e2e/harness.ts';
import { measureQemuImg, report } from './lib.ts';

const SNAPSHOTS = 500;

/** Snapshots with a little data between them and a branch every 50 (apply an older one, carry on). */
function makeManySnapshots(path: string): void {
  qemuImg('create', '-q', '-f', 'qcow2', path, '8G');
  for (let index = 1; index <= SNAPSHOTS; index++) {
    if (index % 10 === 0) execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -P ${index % 250} ${index}M 64k`, path]);
    if (index % 50 === 0) qemuImg('snapshot', '-a', `snap-${index - 25}`, path);
    qemuImg('snapshot', '-c', `snap-${index}`, path);
  }
}

/** The page's side, as source text run in the browser (the bench's tsconfig has no DOM lib). */
const OBSERVE_LONG_TASKS = `(() => {
  const durations = [];
  new PerformanceObserver((list) => { for (const entry of list.getEntries()) durations.push(entry.duration); })
    .observe({ type: 'longtask', buffered: false });
  globalThis.__cowbellLongTasks = durations;
})()`;

ensureBuilt();
const folder = await makeTempDir();
const path = join(folder, 'many-snapshots.qcow2');
process.stderr.write(`making ${SNAPSHOTS} snapshots with qemu-img…\n`);
makeManySnapshots(path);
const qemuList = measureQemuImg(['snapshot', '-l', path]);

const session = await openApp([], { viewport: { width: 1400, height: 900 } });
try {
  const { page } = session;
  const paint = (await page.evaluate(
    `(() => { const paint = performance.getEntriesByName('first-contentful-paint')[0]; const scripts = performance.getEntriesByType('resource').filter((entry) => entry.initiatorType === 'script' && entry.startTime < (paint?.startTime ?? 0)); return { ms: paint?.startTime ?? -1, bytes: scripts.reduce((sum, entry) => sum + entry.decodedBodySize, 0) }; })()`,
  )) as { ms: number; bytes: number };
  process.stdout.write(`ui-first-paint: browser mode's first contentful paint at ${paint.ms.toFixed(0)} ms, after ${(paint.bytes / 1024).toFixed(0)} KiB of script\n`);
  const started = performance.now();
  await openThroughPathField(page, path);
  await page.locator('[data-testid="tree-node"][data-node-id="current"]').waitFor({ timeout: 120_000 });
  const openSeconds = (performance.now() - started) / 1000;
  const nodes = await page.getByTestId('tree-node').count();
  await page.waitForTimeout(1000);

  await page.evaluate(OBSERVE_LONG_TASKS);
  const tree = await page.getByTestId('snapshot-tree').boundingBox();
  if (!tree) throw new Error('the tree is not on screen');
  const centreX = tree.x + tree.width / 2;
  const centreY = tree.y + tree.height / 2;
  const panStarted = performance.now();
  for (let round = 0; round < 4; round++) {
    await page.mouse.move(centreX, centreY);
    await page.mouse.down();
    await page.mouse.move(centreX + 300, centreY - 250, { steps: 30 });
    await page.mouse.move(centreX - 200, centreY + 200, { steps: 30 });
    await page.mouse.up();
    await page.keyboard.down('Control');
    for (let step = 0; step < 12; step++) await page.mouse.wheel(0, 120);
    for (let step = 0; step < 12; step++) await page.mouse.wheel(0, -120);
    await page.keyboard.up('Control');
  }
  await page.getByTestId('tree-fit').click();
  await page.mouse.move(centreX, centreY);
  await page.mouse.down();
  await page.mouse.move(centreX + 250, centreY + 150, { steps: 30 });
  await page.mouse.up();
  await page.waitForTimeout(500);
  const panSeconds = (performance.now() - panStarted) / 1000;
  const longTasks = (await page.evaluate('globalThis.__cowbellLongTasks')) as number[];
  const heapMiB = Number(await page.evaluate('(performance.memory?.usedJSHeapSize ?? 0) / 1048576'));
  await screenshot(page, 'bench-500-snapshots');

  const longest = longTasks.length === 0 ? 0 : Math.max(...longTasks);
  process.stdout.write(
    `ui-tree: ${nodes} nodes drawn; pan and zoom for ${panSeconds.toFixed(1)} s: ${longTasks.length} long tasks, longest ${longest.toFixed(0)} ms (goal: none over 50 ms)${longest > 50 ? ' — OVER GOAL' : ''}\n`,
  );
  report({
    name: `ui: open a disk with ${SNAPSHOTS} snapshots, tree drawn (qemu-img: snapshot -l)`,
    cowbellSeconds: openSeconds,
    qemuSeconds: qemuList.seconds,
    cowbellPeakMiB: heapMiB,
    note: `page JS heap; longest task while panning/zooming ${longest.toFixed(0)} ms (${longTasks.length} over 50 ms)`,
  });

  const large = join(folder, 'one-tebibyte.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', large, '1T');
  for (let index = 0; index < 8; index++) execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -P ${index + 1} ${index * 100}G 64M`, large]);
  const qemuMap = measureQemuImg(['map', '--output=json', large]);
  await openThroughPathField(page, large);
  await page.locator('[data-testid="tree-node"][data-node-id="current"]').waitFor({ timeout: 60_000 });
  const mapStarted = performance.now();
  await page.getByTestId('tab-map').click();
  const map = page.getByTestId('allocation-map');
  while (Number((await map.getAttribute('data-squares').catch(() => null)) ?? 0) === 0) await page.waitForTimeout(10);
  const mapSeconds = (performance.now() - mapStarted) / 1000;
  process.stdout.write(`ui-map: 1 TiB disk mapped and drawn in ${(mapSeconds * 1000).toFixed(0)} ms (goal: under 1 s)\n`);
  report({ name: 'ui: allocation map of a 1 TiB disk drawn (qemu-img: map --output=json)', cowbellSeconds: mapSeconds, qemuSeconds: qemuMap.seconds, cowbellPeakMiB: heapMiB, note: 'page JS heap' });
  if (session.problems.length > 0) process.stderr.write(`page problems: ${session.problems.join('; ')}\n`);
} finally {
  await session.close();
  rmSync(folder, { recursive: true, force: true });
}
