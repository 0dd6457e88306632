// Headless Debian Chromium through playwright-core (never a downloaded browser).
import { chromium, type Browser } from 'playwright-core';
import { onCleanup } from './cleanup.ts';
import { findBinary } from './requirements.ts';

export const CHROMIUM = findBinary('chromium', ['/usr/bin/chromium', '/usr/bin/chromium-browser']);

export async function launchBrowser(): Promise<Browser> {
  if (!CHROMIUM) throw new Error('chromium is missing');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  onCleanup(() => browser.close());
  return browser;
}
