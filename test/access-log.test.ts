// ACCESS_LOG=on: one JSON line per push API request, on the lean legacy path and the Koa app
// alike, that names the request without its query, headers or body: never a secret, a token
// or the pushed content.
import { expect } from 'chai';
import { connect } from 'node:net';
import { MAX_LOGGED_PATH, type AccessEntry } from '../src/api/access-log.ts';
import { MemoryPresence } from '../src/presence.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { connectClient } from './support/clients.ts';
import { recordingLogger } from './support/logger.ts';
import { spawnStart } from './support/start-process.ts';
import { legacyPush, startServer } from './support/server.ts';
import { until } from './support/until.ts';

const SECRET = 'push-secret-0123456789';
const CONTENT = 'content-that-must-not-be-logged';

/** Presence that cannot answer whether a uid is online, as a store away would: the push fails. */
class FailingPresence extends MemoryPresence {
  override async isOnline(): Promise<boolean> {
    throw new Error('presence away: test');
  }
}

/** Sends `GET <target> HTTP/1.1` as written (fetch would normalise it); resolves the status line. */
function rawGet(port: number, target: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    let received = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
    socket.on('error', reject).on('close', () => resolve(received.split('\r\n')[0]!));
  });
}

async function serverWithAccessLog(on: boolean) {
  const lines: string[] = [];
  const server = await startServer({ pushSecret: SECRET, accessLog: on }, { accessLog: (line) => lines.push(line) });
  return { server, lines, entries: () => lines.map((l) => JSON.parse(l) as AccessEntry) };
}

describe('access log (ACCESS_LOG)', function () {
  this.timeout(30_000);
  afterEach(cleanupAll);

  it('writes one JSON line per request, without the query, the secret, the token or the content', async () => {
    const { server, lines, entries } = await serverWithAccessLog(true);
    const page = await connectClient('v4', server.ioUrl);
    await page.login('u1');
    // the lean GET path, secret and content in the query
    expect((await legacyPush(server.apiUrl, { type: 'publish', to: 'u1', content: CONTENT, secret: SECRET })).body).to.equal('ok');
    // a wrong secret in the query answers 401
    expect((await legacyPush(server.apiUrl, { type: 'publish', to: '', content: CONTENT, secret: `${SECRET}-wrong` })).status).to.equal(401);
    // the Koa app: a form post on another path, and v1 with a Bearer token and a JSON body
    expect((await legacyPush(server.apiUrl, { type: 'publish', to: 'u1', content: CONTENT, secret: SECRET }, 'form', '/push')).body).to.equal('ok');
    const v1 = await fetch(`${server.apiUrl}/api/v1/push?secret=${SECRET}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${SECRET}` },
      body: JSON.stringify({ to: 'u1', data: { text: CONTENT } }),
    });
    expect(v1.status).to.equal(200);
    expect((await fetch(`${server.apiUrl}/metrics`)).status).to.equal(200);
    await until(async () => lines.length === 5, 'a line per request');

    const all = lines.join('\n');
    expect(all).not.to.include(SECRET);
    expect(all).not.to.include(CONTENT);
    expect(all).not.to.include('?');
    expect(entries().map(({ method, path, status, log }) => ({ log, method, path, status }))).to.deep.equal([
      { log: 'access', method: 'GET', path: '/', status: 200 },
      { log: 'access', method: 'GET', path: '/', status: 401 },
      { log: 'access', method: 'POST', path: '/push', status: 200 },
      { log: 'access', method: 'POST', path: '/api/v1/push', status: 200 },
      { log: 'access', method: 'GET', path: '/metrics', status: 200 },
    ]);
    for (const entry of entries()) {
      expect(entry.client).to.equal('127.0.0.1');
      expect(entry.durationMs).to.be.a('number').and.be.at.least(0).and.below(10_000);
      expect(Date.parse(entry.time)).to.be.closeTo(Date.now(), 60_000);
      expect(entry.time).to.match(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
      expect(entry).not.to.have.property('aborted');
    }
  });

  it('logs the path of an absolute-form target: no scheme, userinfo, host, query or fragment', async () => {
    const { server, lines, entries } = await serverWithAccessLog(true);
    const port = Number(new URL(server.apiUrl).port);
    const push = `type=publish&to=&content=${CONTENT}&secret=${SECRET}`;
    // as a proxy (or a client told to use one) sends it; Node hands the target over as req.url
    expect(await rawGet(port, `http://log-user:log-pass-4711@host.example:2121/push/path?${push}`)).to.equal('HTTP/1.1 200 OK');
    expect(await rawGet(port, `HTTPS://log-user:log-pass-4711@host.example?${push}`)).to.equal('HTTP/1.1 200 OK');
    // no secret in these: refused, and logged all the same
    expect(await rawGet(port, `ws://log-user@host.example/ws#log-pass-4711`)).to.equal('HTTP/1.1 401 Unauthorized');
    expect(await rawGet(port, `/fragment#log-pass-4711`)).to.equal('HTTP/1.1 401 Unauthorized');
    expect(await rawGet(port, `*`)).to.equal('HTTP/1.1 401 Unauthorized');
    await until(async () => lines.length === 5, 'a line per request');
    expect(entries().map(({ path }) => path)).to.deep.equal(['/push/path', '/', '/ws', '/fragment', '*']);
    const all = lines.join('\n');
    for (const secret of ['log-user', 'log-pass-4711', 'host.example', SECRET, CONTENT]) expect(all).not.to.include(secret);
  });

  it('names an absolute-form target by its path in the error line of a failed legacy push', async () => {
    const log = recordingLogger();
    const presence = new FailingPresence();
    onCleanup(() => presence.close());
    const server = await startServer({ pushSecret: SECRET }, { log, presence });
    const port = Number(new URL(server.apiUrl).port);
    const target = `http://log-user:log-pass-4711@host.example/legacy?type=publish&to=u1&content=${CONTENT}&secret=${SECRET}`;
    expect(await rawGet(port, target)).to.equal('HTTP/1.1 500 Internal Server Error');
    expect(log.lines).to.include('error: GET /legacy failed');
    for (const secret of ['log-user', 'log-pass-4711', 'host.example', SECRET, CONTENT]) expect(log.text()).not.to.include(secret);
  });

  it('cuts a long path to MAX_LOGGED_PATH characters', async () => {
    const { server, lines, entries } = await serverWithAccessLog(true);
    const long = `/${'a'.repeat(5000)}`;
    expect((await fetch(`${server.apiUrl}${long}?type=publish&content=x&secret=${SECRET}`)).status).to.equal(200);
    await until(async () => lines.length === 1, 'the line');
    expect(lines[0]).not.to.include('\n');
    expect(entries()[0]!.path).to.equal(`/${'a'.repeat(MAX_LOGGED_PATH - 1)}…`);
  });

  it('logs a request whose client went away before the answer, as aborted', async () => {
    const { server, lines, entries } = await serverWithAccessLog(true);
    const port = Number(new URL(server.apiUrl).port);
    // a body announced and never sent: the request waits, then the client leaves
    const socket = connect(port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    let received = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
    // Node answers 100 Continue as it hands the request to the handler: then it is in hand
    socket.write(`POST /?secret=${SECRET} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n`);
    await until(async () => received.startsWith('HTTP/1.1 100 Continue'), 'the request taken');
    socket.write('type=pub');
    socket.destroy();
    await until(async () => lines.length === 1, 'the line');
    expect(entries()[0]).to.deep.include({ method: 'POST', path: '/', status: null, aborted: true });
    expect(lines[0]).not.to.include(SECRET);
  });

  it('writes nothing while ACCESS_LOG is off (the default)', async () => {
    const { server, lines } = await serverWithAccessLog(false);
    expect((await legacyPush(server.apiUrl, { type: 'publish', to: '', content: 'x', secret: SECRET })).body).to.equal('ok');
    expect((await fetch(`${server.apiUrl}/healthz`)).status).to.equal(200);
    expect(lines).to.deep.equal([]);
  });

  it('goes to stdout as JSON beside text log lines when started with ACCESS_LOG=on', async () => {
    const run = spawnStart([], { IO_PORT: '0', API_PORT: '0', WEB_PORT: 'off', ACCESS_LOG: 'on', PUSH_SECRET: SECRET });
    const { apiUrl } = await run.started();
    expect((await legacyPush(apiUrl, { type: 'publish', to: '', content: CONTENT, secret: SECRET })).body).to.equal('ok');
    await run.waitForOutput(/"log":"access"/);
    expect((await run.stop()).code).to.equal(0);
    const access = run.stdout().split('\n').filter((l) => l.startsWith('{'));
    expect(access).to.have.length(1);
    expect(JSON.parse(access[0]!)).to.deep.include({ log: 'access', method: 'GET', path: '/', status: 200 });
    expect(run.output()).not.to.include(SECRET);
    expect(run.output()).not.to.include(CONTENT);
  });
});
