// Pages in real headless Chromium: the demo page, and a legacy page on another origin that
// loads socket.io-client 2.x the way existing sites do.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { SignJWT } from 'jose';
import type { Browser } from 'playwright-core';
import { loginToken, topicKey } from '../src/login-auth.ts';
import { CHROMIUM, launchBrowser } from './support/browser.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { legacyPush, startServer } from './support/server.ts';
import { connectClient } from './support/clients.ts';
import { until } from './support/until.ts';
import { closedPortUrl } from './support/webhook-receiver.ts';

const V2_CLIENT = readFileSync(createRequire(import.meta.url).resolve('socket.io-client-v2/dist/socket.io.js'));

/** A site of its own origin, as a legacy deployment has: its copy of the 2.x client and a page. */
function legacySite(ioPort: number): Promise<{ url: string }> {
  const page = `<!doctype html><meta charset="utf-8"><title>legacy</title>
<script src="/socket.io-2.js"></script>
<div id="count"></div><pre id="msgs"></pre><div id="html"></div>
<script>
  var q = new URLSearchParams(location.search);
  var opts = q.get('transports') ? { transports: q.get('transports').split(',') } : undefined;
  var uid = q.get('uid');
  // exactly how the original README tells pages to connect
  var socket = io('http://' + document.domain + ':${ioPort}', opts);
  window.socket = socket;
  socket.on('connect', function () { socket.emit('login', uid); });
  socket.on('new_msg', function (msg) { document.getElementById('msgs').textContent += msg + '\\n'; });
  // and as the README tells legacy pages: new_msg is escaped HTML, so innerHTML is safe
  socket.on('new_msg', function (msg) { document.getElementById('html').innerHTML += msg + '<br>'; });
  socket.on('update_online_count', function (html) { document.getElementById('count').innerHTML = html; });
</script>`;
  const server: Server = createServer((req, res) => {
    if (req.url?.startsWith('/socket.io-2.js')) res.writeHead(200, { 'content-type': 'text/javascript' }).end(V2_CLIENT);
    else res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      onCleanup(() => new Promise((r) => server.close(r)));
      resolve({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}/` });
    });
  });
}

/**
 * A site that uses the client SDK as a page would: its page loads socket.io-client and the SDK
 * from the push server's Socket.IO port (no demo listener), and its backend (GET /token) gives
 * the page a login JWT that expires after `firstTokenSeconds` the first time, an hour later on.
 */
function sdkSite(ioUrl: string, secret: string, uid: string, firstTokenSeconds: number) {
  const key = new TextEncoder().encode(secret);
  const issued: number[] = []; // the exp of each token given out
  const page = `<!doctype html><meta charset="utf-8"><title>sdk</title>
<script src="${ioUrl}/socket.io/socket.io.js"></script>
<script src="${ioUrl}/sdk/push-client.js"></script>
<pre id="log"></pre><div id="status"></div>
<script>
  function log(line) { document.getElementById('log').textContent += line + '\\n'; }
  var client = PushClient.connect(${JSON.stringify(ioUrl)}, {
    uid: ${JSON.stringify(uid)},
    getToken: function () { return fetch('/token').then(function (r) { return r.text(); }); },
  });
  client.onStatus(function (status, login) {
    if (login) document.getElementById('status').textContent = login.ok ? 'logged in ' + Date.now() : 'refused: ' + login.error.code;
  });
  client.on('message', function (data) { log('message ' + data); });
  client.on('news', function (data) { log('news ' + data); });
  // the topic token, as the site's backend renders it into the page
  client.subscribe('private-room', { token: ${JSON.stringify(loginToken(topicKey(secret), 'private-room'))} })
    .then(function (reply) { log('subscribed ' + JSON.stringify(reply)); });
</script>`;
  const server: Server = createServer((req, res) => {
    if (req.url === '/token') {
      const exp = Math.floor(Date.now() / 1000) + (issued.length === 0 ? firstTokenSeconds : 3600);
      issued.push(exp);
      void new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(uid).setExpirationTime(exp).sign(key).then((jwt) => {
        res.writeHead(200, { 'content-type': 'text/plain' }).end(jwt);
      });
    } else res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page);
  });
  return new Promise<{ url: string; issued: number[] }>((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      onCleanup(() => new Promise((r) => server.close(r)));
      resolve({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}/`, issued });
    });
  });
}

describe('in the browser', function () {
  this.timeout(30_000);
  let browser: Browser;

  before(function () {
    if (!CHROMIUM) this.skip();
  });
  beforeEach(async () => {
    browser = await launchBrowser();
  });
  afterEach(cleanupAll);

  it('the demo page shows its uid, a push from its own link, and the online counts', async () => {
    const server = await startServer({ webPort: 0 });
    const page = await browser.newPage();
    await page.goto(server.webUrl + '/');
    await page.locator('#status', { hasText: 'connected' }).waitFor();
    const uid = await page.locator('#uid').textContent();
    expect(uid).to.match(/^\d{13}$/); // a timestamp, as in the original demo
    await page.locator('#online_box', { hasText: '1 users online, 1 pages open' }).waitFor();

    // the page's own link, built from its host name, pushes to its uid
    const link = page.locator('#send_to_one');
    expect(await link.getAttribute('href')).to.equal(
      `http://127.0.0.1:${server.ports.api}/?type=publish&to=${uid}&content=hello%20${uid}`,
    );
    const [popup] = await Promise.all([page.waitForEvent('popup'), link.click()]);
    await popup.waitForLoadState();
    expect(await popup.locator('body').textContent()).to.equal('ok');
    await page.locator('.toast', { hasText: `hello ${uid}` }).waitFor();

    // markup in a push is shown as text, never run or rendered
    await legacyPush(server.apiUrl, { type: 'publish', to: uid!, content: '<b id="injected">bold</b> & "q"' });
    await page.locator('.toast', { hasText: '<b id="injected">bold</b> & "q"' }).waitFor();
    expect(await page.locator('#injected').count()).to.equal(0);

    // a second page of another uid shows in the first page's footer
    const other = await browser.newPage();
    await other.goto(server.webUrl + '/?uid=bob');
    await page.locator('#online_box', { hasText: '2 users online, 2 pages open' }).waitFor();
    await legacyPush(server.apiUrl, { type: 'publish', to: '', content: 'to everyone' });
    await page.locator('.toast', { hasText: 'to everyone' }).waitFor();
    await other.locator('.toast', { hasText: 'to everyone' }).waitFor();
    await other.close();
    await page.locator('#online_box', { hasText: '1 users online, 1 pages open' }).waitFor();
  });

  it('the demo page, through the SDK, gets stored messages once and after coming back online', async () => {
    // reading stored messages needs the push secret
    const server = await startServer({ webPort: 0, pushSecret: 'browser-test-secret-0123' });
    const auth = { authorization: 'Bearer browser-test-secret-0123' };
    const v1 = (body: unknown) =>
      fetch(`${server.apiUrl}/api/v1/push`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const storedCount = async () =>
      ((await (await fetch(`${server.apiUrl}/api/v1/users/sdk-user/messages`, { headers: auth })).json()) as { messages: unknown[] }).messages.length;

    await v1({ to: 'sdk-user', data: 'kept while away', ttl: 300 });
    const page = await browser.newPage();
    await page.goto(server.webUrl + '/?uid=sdk-user');
    await page.locator('#status', { hasText: 'connected as sdk-user, 1 stored message(s) delivered' }).waitFor();
    await page.locator('#messages li', { hasText: 'kept while away' }).waitFor();
    expect(await page.locator('#messages li').first().textContent()).to.include('stored, delivered after reconnect');
    await until(async () => (await storedCount()) === 0, 'the page to ack');

    // acked: a reload gets nothing again
    await page.reload();
    await page.locator('#status', { hasText: 'connected as sdk-user, 0 stored message(s) delivered' }).waitFor();
    expect(await page.locator('#messages li').count()).to.equal(0);

    // offline by the button, a push is kept; back online, it arrives
    await page.locator('#toggle').click();
    await page.locator('#status', { hasText: 'offline' }).waitFor();
    await v1({ to: 'sdk-user', data: { note: 'sent while offline' }, ttl: 300 });
    await page.locator('#toggle', { hasText: 'Come back online' }).click();
    await page.locator('#status', { hasText: '1 stored message(s) delivered' }).waitFor();
    await page.locator('#messages li', { hasText: '{"note":"sent while offline"}' }).waitFor();
    expect(await page.locator('#messages li').count()).to.equal(1);
  });

  it('a page with the SDK from the Socket.IO port (WEB_PORT=off) logs in by token, gets a private topic, and refreshes an expired JWT', async () => {
    const secret = 'browser-login-secret-0123';
    const server = await startServer({ loginSecret: secret }); // webPort: null, no demo listener
    expect(server.webUrl).to.equal(null);
    // long enough to log in with on a loaded machine (exp is whole seconds: "1" could be 0.1 s)
    const site = await sdkSite(server.ioUrl, secret, 'alice', 3);
    const page = await browser.newPage();
    await page.goto(site.url);
    await page.locator('#log', { hasText: 'subscribed {"ok":true,"topics":["private-room"]}' }).waitFor();
    await page.locator('#status', { hasText: 'logged in' }).waitFor();
    expect(site.issued).to.have.length(1); // getToken at connect
    const v1 = (body: unknown) =>
      fetch(`${server.apiUrl}/api/v1/push`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await v1({ to: 'alice', data: 'to alice' })).status).to.equal(200);
    expect((await v1({ topic: 'private-room', event: 'news', data: 'to the room' })).status).to.equal(200);
    await page.locator('#log', { hasText: 'message to alice' }).waitFor();
    await page.locator('#log', { hasText: 'news to the room' }).waitFor();

    // the login JWT expires; the connection drops (as a network does) and the page reconnects:
    // its kept token is refused as expired, getToken gives a new one, and pushes reach it again
    await until(() => Math.floor(Date.now() / 1000) >= site.issued[0]!, 'the first token to expire', 10_000, 50);
    const before = await page.locator('#status').textContent();
    for (const socket of server.io.of('/').sockets.values()) socket.conn.close();
    await page.waitForFunction((old) => document.getElementById('status')!.textContent !== old, before);
    expect(await page.locator('#status').textContent()).to.match(/^logged in /);
    expect(site.issued).to.have.length(2);
    expect(site.issued[1]! - site.issued[0]!).to.be.greaterThan(1000);
    expect((await v1({ to: 'alice', data: 'after the refresh' })).status).to.equal(200);
    expect((await v1({ topic: 'private-room', event: 'news', data: 'room after the refresh' })).status).to.equal(200);
    await page.locator('#log', { hasText: 'message after the refresh' }).waitFor();
    await page.locator('#log', { hasText: 'news room after the refresh' }).waitFor();
  });

  it('the demo chat room: two tabs talk on a topic (CLIENT_PUBLISH_TOPICS), text shown as text, no echo', async () => {
    const server = await startServer({ webPort: 0, clientPublishTopics: ['chat-*'] });
    const ann = await browser.newPage();
    const ben = await browser.newPage();
    await ann.goto(server.webUrl + '/?uid=ann');
    await ben.goto(server.webUrl + '/?uid=ben');
    // subscribe goes before login on the socket, so a login reply means both are done
    for (const p of [ann, ben]) await p.locator('#status', { hasText: 'connected as' }).waitFor();
    await ann.locator('#chat_input').fill('hi <b id="x">ben</b>');
    await ann.locator('#chat_form button').click();
    await ben.locator('#chat li', { hasText: 'ann: hi <b id="x">ben</b>' }).waitFor();
    await ann.locator('#chat li', { hasText: 'ann (me): hi <b id="x">ben</b>' }).waitFor();
    await ben.locator('#chat_input').fill('hello ann');
    await ben.locator('#chat_form button').click();
    await ann.locator('#chat li', { hasText: 'ben: hello ann' }).waitFor();
    expect(await ann.locator('#chat li').allTextContents()).to.deep.equal(['ann (me): hi <b id="x">ben</b>', 'ben: hello ann']);
    expect(await ben.locator('#x').count()).to.equal(0);
    expect(await ben.locator('.toast').count()).to.equal(0); // chat lines are not push notifications
  });

  it('the demo chat room says why it cannot send when the server does not allow client messages', async () => {
    const server = await startServer({ webPort: 0 });
    const page = await browser.newPage();
    await page.goto(server.webUrl + '/?uid=solo');
    await page.locator('#status', { hasText: 'connected as' }).waitFor();
    await page.locator('#chat_input').fill('anyone?');
    await page.locator('#chat_form button').click();
    await page.locator('#chat_status', { hasText: 'not sent: clients may not publish to chat-demo' }).waitFor();
  });

  it('the admin page, behind its token, shows figures, charts with axes, a uid lookup, a test push and webhook failures', async () => {
    const token = 'admin-token-0123456789';
    const server = await startServer({
      webPort: 0,
      adminToken: token,
      webhookUrl: [await closedPortUrl()],
      webhookGraceMs: 50,
      adminSampleMs: 200,
    });
    const page = await browser.newPage();
    // no request the page makes carries the token, in its URL or a Referer
    const sent: string[] = [];
    page.on('request', (r) => sent.push(`${r.url()} ${r.headers().referer ?? ''}`));
    await page.goto(server.webUrl + '/admin?token=wrong-token-0123456789');
    await page.locator('#status', { hasText: 'wrong admin token' }).waitFor();
    expect(page.url()).to.equal(server.webUrl + '/admin'); // the token is not left in the address bar
    expect(await page.locator('#dashboard').isHidden()).to.equal(true);

    // signing in by the form
    await page.locator('#token').fill(token);
    await page.locator('#sign-in button').click();
    await page.locator('#status', { hasText: 'live' }).waitFor();
    expect(page.url()).to.equal(server.webUrl + '/admin');
    const [cookie] = await page.context().cookies();
    expect(cookie).to.deep.include({ name: 'push_admin', path: '/admin', httpOnly: true, sameSite: 'Strict' });
    expect(cookie!.value).not.to.include(token);
    expect(await page.evaluate(() => document.cookie)).to.equal(''); // out of reach of scripts
    const a = await connectClient('v4', server.ioUrl);
    await a.login('a1'); // user.online to a receiver that is down: a webhook failure
    const b = await connectClient('v2', server.ioUrl);
    await b.login('a1');
    await page.locator('#users', { hasText: '1' }).waitFor();
    await page.locator('#pages', { hasText: '2' }).waitFor();
    for (let i = 0; i < 30; i++) await legacyPush(server.apiUrl, { type: 'publish', to: 'a1', content: String(i) });
    await page.locator('#pushes', { hasText: '30' }).waitFor();
    // the poll after the pushes shows a rate above 0
    await page.waitForFunction(() => Number(document.getElementById('rate')?.textContent) > 0);
    // five charts, each with axes: value ticks from 0 and time ticks over the hour, a unit, and a line
    await page.waitForFunction(() => document.querySelectorAll('#chart-rate path.line').length === 1, undefined, { timeout: 10_000 });
    for (const id of ['users', 'pages', 'rate', 'backlog', 'failures']) {
      const yTicks = await page.locator(`#chart-${id} text.y-tick`).allTextContents();
      expect(yTicks[0], id).to.equal('0');
      expect(yTicks.length, id).to.be.at.least(3);
      const xTicks = await page.locator(`#chart-${id} text.x-tick`).allTextContents();
      expect(xTicks, id).to.have.length(7);
      for (const t of xTicks) expect(t, id).to.match(/^\d\d:\d\d$/);
      expect(await page.locator(`#chart-${id} text.unit`).count(), id).to.equal(2);
    }
    expect(await page.locator('#chart-users text.unit').first().textContent()).to.equal('users');
    expect(await page.locator('#chart-rate text.unit').first().textContent()).to.equal('pushes / s');
    expect(await page.locator('#scope').textContent()).to.include('this node');

    // the uid lookup: online, its two pages by transport, its webhook events
    await page.locator('#lookup-uid').fill('a1');
    await page.locator('#lookup-form button').click();
    await page.locator('#lookup-summary', { hasText: 'a1: online, 2 page(s)' }).waitFor();
    expect(await page.locator('#lookup-transports').textContent()).to.match(/^transports: websocket 2, polling 0, sse 0/);
    await page.locator('#lookup-events tr', { hasText: 'user.online' }).first().waitFor();
    // the test push form, with the session's CSRF token: a v1 push with a ttl to an offline uid is stored
    await page.locator('#push-to').fill('<b>away</b>');
    await page.locator('#push-content').fill('kept <i>for later</i>');
    await page.locator('#push-api').selectOption('v1');
    await page.locator('#push-ttl').fill('60');
    await page.locator('#push-form button').click();
    await page.locator('#push-result', { hasText: 'answered: 200' }).waitFor();
    await page.locator('#lookup-uid').fill('<b>away</b>');
    await page.locator('#lookup-form button').click();
    await page.locator('#lookup-stored-count', { hasText: 'stored messages: 1' }).waitFor();
    await page.locator('#lookup-stored td', { hasText: '"kept <i>for later</i>"' }).waitFor();
    expect(await page.locator('#lookup i, #lookup b').count()).to.equal(0); // shown as text
    await page.locator('#failures tr', { hasText: 'user.online' }).first().waitFor();
    expect(await page.locator('#failures tr').first().textContent()).to.include('a1');

    // signing out shows the form again; an old ?token= link signs in once and leaves the URL
    await page.locator('#dashboard button', { hasText: 'Sign out' }).click();
    await page.locator('#status', { hasText: 'sign in' }).waitFor();
    await page.goto(`${server.webUrl}/admin?token=${token}`);
    await page.locator('#status', { hasText: 'live' }).waitFor();
    expect(page.url()).to.equal(server.webUrl + '/admin');
    // only the link's own navigation (answered by a redirect) held it
    const leaks = sent.filter((line) => line.includes(token) && !line.startsWith(`${server.webUrl}/admin?token=${token} `));
    expect(leaks).to.deep.equal([]);
  });

  it('a legacy page that puts new_msg in with innerHTML runs no markup from any v1 push', async () => {
    const server = await startServer();
    const site = await legacySite(server.ports.io);
    const page = await browser.newPage();
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    await page.goto(`${site.url}?uid=legacy-user`);
    await page.locator('#count b', { hasText: '1' }).first().waitFor();
    const v1 = (body: unknown) =>
      fetch(`${server.apiUrl}/api/v1/push`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const xss = '<img src=x onerror=alert(1)>';
    expect((await v1({ to: 'legacy-user', data: xss })).status).to.equal(200); // the default event
    expect((await v1({ data: `${xss} everyone` })).status).to.equal(200);
    expect((await v1({ to: 'legacy-user', event: 'new_msg', data: `${xss} named` })).status).to.equal(200);
    expect((await v1({ to: 'legacy-user', event: 'new_msg', data: `${xss} kept`, ttl: 60 })).status).to.equal(200);
    expect(await legacyPush(server.apiUrl, { type: 'publish', to: 'legacy-user', content: 'marker' })).to.deep.equal({ status: 200, body: 'ok' });
    await page.locator('#html', { hasText: 'marker' }).waitFor();
    // the named pushes show as text, escaped once; nothing else came on new_msg
    expect(await page.locator('#html').textContent()).to.equal(`${xss} named${xss} keptmarker`);
    expect(await page.locator('#html img').count()).to.equal(0);
    expect(dialogs).to.deep.equal([]);
  });

  for (const transports of [undefined, 'websocket', 'polling']) {
    it(`a legacy page on another origin with socket.io-client 2.x (${transports ?? 'default transports'}) logs in and receives a push`, async () => {
      const server = await startServer();
      const site = await legacySite(server.ports.io);
      const page = await browser.newPage();
      await page.goto(`${site.url}?uid=legacy-user${transports ? `&transports=${transports}` : ''}`);
      await page.locator('#count b', { hasText: '1' }).first().waitFor();
      expect(await page.locator('#count').innerHTML()).to.equal('当前<b>1</b>人在线，共打开<b>1</b>个页面');
      expect(await legacyPush(server.apiUrl, { type: 'publish', to: 'legacy-user', content: 'hi <you>' }))
        .to.deep.equal({ status: 200, body: 'ok' });
      await page.locator('#msgs', { hasText: 'hi &lt;you&gt;' }).waitFor();
      if (transports) {
        expect(await page.evaluate(() => (window as unknown as { socket: { io: { engine: { transport: { name: string } } } } }).socket.io.engine.transport.name))
          .to.equal(transports);
      }
    });
  }
});
