/**
 * `node scripts/make-icons.ts`: renders assets/icon.svg (the one source) into the icons
 * electron-builder packs: assets/icon.png (1024 px), assets/icons/NxN.png (Linux), assets/icon.ico
 * (Windows, NSIS) and assets/icon.icns (macOS). Chromium draws the SVG, as the e2e tests use it.
 * Run it after changing the SVG and commit what it writes.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { encodeIcns, encodeIco, encodePng, ICNS_TYPES, type RgbaImage } from './lib/icon-files.ts';
import { fail } from './lib/fail.ts';
import { projectPath } from './lib/project.ts';

const CHROMIUM = '/usr/bin/chromium';
const LINUX_SIZES = [16, 24, 32, 48, 64, 128, 256, 512, 1024];
const WINDOWS_SIZES = [16, 24, 32, 48, 64, 128, 256];

// Runs in the page (no DOM types here): draws the SVG at size × size and returns its RGBA bytes in
// base64, which crosses the protocol far faster than an array of four million numbers.
const RASTERIZE_IN_PAGE = `async (source, size) => {
  const image = new Image();
  image.src = source;
  await image.decode();
  const canvas = document.createElement('canvas');
  canvas.width = size;
  canvas.height = size;
  const context = canvas.getContext('2d');
  context.imageSmoothingQuality = 'high';
  context.drawImage(image, 0, 0, size, size);
  const data = context.getImageData(0, 0, size, size).data;
  let binary = '';
  for (let at = 0; at < data.length; at += 0x8000) binary += String.fromCharCode(...data.subarray(at, at + 0x8000));
  return btoa(binary);
}`;

async function render(svg: string, sizes: readonly number[]): Promise<RgbaImage[]> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu'] });
  try {
    const page = await browser.newPage();
    const source = `data:image/svg+xml;base64,${Buffer.from(svg).toString('base64')}`;
    const images: RgbaImage[] = [];
    for (const size of sizes) {
      const pixels = await page.evaluate<string>(`(${RASTERIZE_IN_PAGE})(${JSON.stringify(source)}, ${size})`);
      images.push({ size, pixels: new Uint8Array(Buffer.from(pixels, 'base64')) });
    }
    return images;
  } finally {
    await browser.close();
  }
}

try {
  const svg = readFileSync(projectPath('assets/icon.svg'), 'utf8');
  const sizes = [...new Set([...LINUX_SIZES, ...WINDOWS_SIZES, ...ICNS_TYPES.map((entry) => entry.size)])].sort((a, b) => a - b);
  const images = await render(svg, sizes);
  const bySize = (size: number): RgbaImage => {
    const image = images.find((candidate) => candidate.size === size);
    if (image === undefined) throw new Error(`no ${size} px rendering`);
    return image;
  };
  mkdirSync(projectPath('assets/icons'), { recursive: true });
  for (const size of LINUX_SIZES) writeFileSync(projectPath(`assets/icons/${size}x${size}.png`), encodePng(bySize(size)));
  writeFileSync(projectPath('assets/icon.png'), encodePng(bySize(1024)));
  writeFileSync(projectPath('assets/icon.ico'), encodeIco(WINDOWS_SIZES.map(bySize)));
  writeFileSync(projectPath('assets/icon.icns'), encodeIcns(images));
  console.log(`icons written: assets/icon.png, assets/icons/{${LINUX_SIZES.join(',')}}, assets/icon.ico, assets/icon.icns`);
} catch (error) {
  fail(error);
}
