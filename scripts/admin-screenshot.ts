// Takes docs/images/admin.png: the admin page of a server under a little load (npx tsx scripts/admin-screenshot.ts; needs /usr/bin/chromium).
import { chromium } from 'playwright-core';
import { configWith } from '../src/config.ts';
import { silentLogger } from '../src/log.ts';
import { createServer } from '../src/server.ts';
import { io } from 'socket.io-client';
const server = await createServer(configWith({ host: '127.0.0.1', ioPort: 0, apiPort: 0, webPort: 0, store: 'memory', adminToken: 'admin-token-0123456789', adminSampleMs: 300, webhookUrl: ['http://127.0.0.1:1/hook'], webhookGraceMs: 50 }), { log: silentLogger });
const sockets = [];
for (let i = 0; i < 12; i++) { const s = io(`http://127.0.0.1:${server.ports.io}`, { transports: [i % 3 ? 'websocket' : 'polling'] }); s.on('connect', () => s.emit('login', `user${i % 7}`)); sockets.push(s); }
const api = `http://127.0.0.1:${server.ports.api}`;
for (let r = 0; r < 40; r++) {
  const n = 5 + Math.round(20 * Math.abs(Math.sin(r / 5)));
  await Promise.all(Array.from({ length: n }, (_, i) => fetch(`${api}/?type=publish&to=user${i % 9}&content=hi`)));
  if (r % 6 === 0) await fetch(`${api}/api/v1/push`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ to: `away${r}`, data: 'x', ttl: 600 }) });
  await new Promise((res) => setTimeout(res, 150));
}
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu'] });
const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
await page.goto(`http://127.0.0.1:${server.ports.web}/admin?token=admin-token-0123456789`);
await page.locator('#status', { hasText: 'live' }).waitFor();
await page.waitForFunction(() => document.querySelectorAll('path.line').length === 5);
await page.locator('#lookup-uid').fill('user1');
await page.locator('#lookup-form button').click();
await page.locator('#lookup-summary', { hasText: 'online' }).waitFor();
await page.locator('#push-to').fill('user1');
await page.locator('#push-content').fill('hello from admin');
await page.locator('#push-form button').click();
await page.locator('#push-result', { hasText: 'answered' }).waitFor();
await page.screenshot({ path: new URL('../docs/images/admin.png', import.meta.url).pathname, fullPage: true });
await browser.close();
sockets.forEach((s) => s.close());
await server.close();
