// CORS_ORIGINS: one rule for Socket.IO's polling and SSE streams (src/cors.ts). `*` answers any
// origin without credentials, except socket.io-client 2.x (Engine.IO 3), which always sends
// them; a list answers its origins with credentials and refuses the others. Real requests with
// an Origin (and preflights), then pages of another origin in Chromium.
import { expect } from 'chai';
import { createServer, request, type Server } from 'node:http';
import type { Browser } from 'playwright-core';
import { CHROMIUM, launchBrowser } from './support/browser.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { rawRequest, type RawResponse } from './support/http.ts';
import { legacyPush, startServer, type TestServer } from './support/server.ts';

const SITE = 'https://site.example';

/** The CORS headers of an answer, absent ones as undefined. */
function corsOf(res: RawResponse) {
  return {
    origin: res.headers['access-control-allow-origin'],
    credentials: res.headers['access-control-allow-credentials'],
  };
}

/** An Engine.IO polling session of protocol `eio`: its sid, from a handshake without Origin. */
async function session(server: TestServer, eio: 3 | 4): Promise<string> {
  const res = await rawRequest(`${server.ioUrl}/socket.io/?EIO=${eio}&transport=polling`);
  return /"sid":"([^"]+)"/.exec(res.body)![1]!;
}

/** The requests a page of `origin` makes on the Socket.IO port, by kind, answered. */
async function answers(server: TestServer, origin: string) {
  const headers = { origin };
  const preflight = (path: string, headersAsked: string) =>
    rawRequest(server.ioUrl + path, {
      method: 'OPTIONS',
      headers: { ...headers, 'access-control-request-method': path.startsWith('/events') ? 'GET' : 'POST', 'access-control-request-headers': headersAsked },
    });
  const sid4 = await session(server, 4);
  return {
    handshake4: await rawRequest(`${server.ioUrl}/socket.io/?EIO=4&transport=polling`, { headers }),
    post4: await rawRequest(`${server.ioUrl}/socket.io/?EIO=4&transport=polling&sid=${sid4}`, { method: 'POST', headers: { ...headers, 'content-type': 'text/plain;charset=UTF-8' }, body: '40' }),
    preflight4: await preflight(`/socket.io/?EIO=4&transport=polling&sid=${sid4}`, 'content-type'),
    handshake3: await rawRequest(`${server.ioUrl}/socket.io/?EIO=3&transport=polling`, { headers }),
    preflight3: await preflight(`/socket.io/?EIO=3&transport=polling&sid=${await session(server, 3)}`, 'content-type'),
    sse: await streamHead(server, origin),
    ssePreflight: await preflight('/events?uid=cors', 'last-event-id'),
  };
}

/** The head of an SSE stream's answer; the stream is ended once it is read. */
function streamHead(server: TestServer, origin: string): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request(`${server.ioUrl}/events?uid=cors`, { headers: { origin } }, (res) => {
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '' });
      res.destroy();
    });
    req.on('error', reject).end();
  });
}

describe('one CORS rule for Socket.IO polling and SSE (CORS_ORIGINS)', function () {
  this.timeout(30_000);
  afterEach(cleanupAll);

  it('* : any origin without credentials on Socket.IO 4.x polling, its preflight and SSE', async () => {
    const server = await startServer();
    const got = await answers(server, SITE);
    for (const [name, res] of Object.entries(got)) {
      if (name.endsWith('3')) continue;
      expect(res.status, name).to.be.oneOf([200, 204]);
      expect(corsOf(res), name).to.deep.equal({ origin: '*', credentials: undefined });
    }
  });

  it('* : socket.io-client 2.x polling (Engine.IO 3), which always sends credentials, gets its origin reflected with them', async () => {
    const server = await startServer();
    const got = await answers(server, SITE);
    for (const res of [got.handshake3, got.preflight3]) {
      expect(corsOf(res)).to.deep.equal({ origin: SITE, credentials: 'true' });
      expect(res.headers.vary).to.match(/Origin/);
    }
  });

  it('a list: a listed origin with credentials on every kind of request, another refused on both transports', async () => {
    const server = await startServer({ corsOrigins: [SITE] });
    for (const [name, res] of Object.entries(await answers(server, SITE))) {
      expect(res.status, name).to.be.oneOf([200, 204]);
      expect(corsOf(res), name).to.deep.equal({ origin: SITE, credentials: 'true' });
    }
    const other = 'https://other.example';
    const polling = await rawRequest(`${server.ioUrl}/socket.io/?EIO=4&transport=polling`, { headers: { origin: other } });
    expect([polling.status, corsOf(polling)]).to.deep.equal([403, { origin: undefined, credentials: undefined }]);
    const sse = await streamHead(server, other);
    expect([sse.status, corsOf(sse)]).to.deep.equal([403, { origin: undefined, credentials: undefined }]);
  });

  describe('in the browser', () => {
    let browser: Browser;
    before(function () {
      if (!CHROMIUM) this.skip();
    });
    beforeEach(async () => {
      browser = await launchBrowser();
    });

    /**
     * A site of its own origin whose page connects to the push server as a 4.x page does
     * (polling only, so CORS is what decides), opens an EventSource, and tries both once more
     * asking for credentials.
     */
    function site(ioUrl: string): Promise<string> {
      const page = `<!doctype html><meta charset="utf-8"><title>cors</title>
<script src="${ioUrl}/socket.io/socket.io.js"></script>
<pre id="log"></pre>
<script>
  function log(line) { document.getElementById('log').textContent += line + '\\n'; }
  var plain = io(${JSON.stringify(ioUrl)}, { transports: ['polling'], reconnection: false });
  plain.on('connect', function () { plain.emit('login', 'cors-page', function () { log('socket logged in'); }); });
  plain.on('new_msg', function (m) { log('socket got ' + m); });
  var withCookies = io(${JSON.stringify(ioUrl)}, { transports: ['polling'], reconnection: false, withCredentials: true, forceNew: true });
  withCookies.on('connect', function () { log('credentialed socket connected'); });
  withCookies.on('connect_error', function () { log('credentialed socket refused'); });
  var stream = new EventSource(${JSON.stringify(ioUrl)} + '/events?uid=cors-page');
  stream.onopen = function () { log('stream open'); };
  stream.addEventListener('new_msg', function (e) { log('stream got ' + JSON.parse(e.data)); });
  var credentialed = new EventSource(${JSON.stringify(ioUrl)} + '/events?uid=cors-cookies', { withCredentials: true });
  credentialed.onopen = function () { log('credentialed stream open'); };
  credentialed.onerror = function () { if (credentialed.readyState === 2) log('credentialed stream refused'); };
</script>`;
      const server: Server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page));
      return new Promise((resolve) => {
        server.listen(0, '127.0.0.1', () => {
          onCleanup(() => new Promise((r) => server.close(r)));
          resolve(`http://127.0.0.1:${(server.address() as { port: number }).port}/`);
        });
      });
    }

    it('* : a page of another origin connects by polling and streams; asking for credentials it is refused on both', async () => {
      const server = await startServer();
      const page = await browser.newPage();
      await page.goto(await site(server.ioUrl));
      const log = page.locator('#log');
      for (const line of ['socket logged in', 'stream open', 'credentialed socket refused', 'credentialed stream refused']) {
        await log.filter({ hasText: line }).waitFor({ timeout: 10_000 });
      }
      expect(await legacyPush(server.apiUrl, { type: 'publish', to: 'cors-page', content: 'across' })).to.deep.equal({ status: 200, body: 'ok' });
      await log.filter({ hasText: 'socket got across' }).waitFor();
      await log.filter({ hasText: 'stream got across' }).waitFor();
      expect(await log.textContent()).not.to.match(/credentialed (socket connected|stream open)/);
    });
  });
});
