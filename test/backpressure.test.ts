// What a page that does not keep up costs the server: stored messages go out at login a window
// at a time, a connection that stops reading is cut once its queue passes a bound, and a login
// that the server cannot complete answers an error and leaves nothing behind.
import { expect } from 'chai';
import { ConfigError, loadConfig } from '../src/config.ts';
import type { LoginReply, MessageMeta } from '../src/events.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { io as ioV4 } from 'socket.io-client';
import { connectClient, countsHtml, TestClient, type ClientVersion } from './support/clients.ts';
import { recordingLogger } from './support/logger.ts';
import { REDIS_SERVER, startRedis } from './support/redis-server.ts';
import { startServer, type TestServer } from './support/server.ts';
import { until } from './support/until.ts';

async function post(apiUrl: string, path: string, body: unknown): Promise<unknown> {
  const res = await fetch(apiUrl + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json: unknown = await res.json();
  if (res.status >= 300) throw new Error(`${path} answered ${res.status}: ${JSON.stringify(json)}`);
  return json;
}

const idOf = (i: number) => `m-${String(i).padStart(3, '0')}`;

/** Stores `count` messages `note(i)` for `uid` while it is offline, ids m-000, m-001, … in order. */
async function storeFor(apiUrl: string, uid: string, count: number, data: (i: number) => unknown = (i) => i): Promise<string[]> {
  const ids = Array.from({ length: count }, (_, i) => idOf(i));
  for (let start = 0; start < count; start += 100) {
    const messages = ids.slice(start, start + 100).map((id, k) => ({ to: uid, event: 'note', data: data(start + k), ttl: 600, id }));
    await post(apiUrl, '/api/v1/push/batch', { messages });
  }
  return ids;
}

/** A live push (not stored) to `uid`: it goes out after anything already sent to the page. */
function marker(apiUrl: string, uid: string, text: string): Promise<unknown> {
  return post(apiUrl, '/api/v1/push', { to: uid, event: 'note', data: text });
}

/** The stored messages a page received so far, in order, with their ack callbacks. */
function redelivered(page: TestClient): { id: string; ack: () => void }[] {
  return page
    .received('note')
    .filter((args) => (args[1] as MessageMeta).redelivery === true)
    .map((args) => ({ id: (args[1] as MessageMeta).id, ack: args[2] as () => void }));
}

/** Waits for a fresh live marker: every stored message sent before it has arrived by then. */
async function settled(server: TestServer, page: TestClient, uid: string): Promise<string[]> {
  const text = `marker ${Math.random()}`;
  await marker(server.apiUrl, uid, text);
  await page.waitFor('note', (data) => data === text);
  return redelivered(page).map((m) => m.id);
}

describe('backpressure', () => {
  afterEach(cleanupAll);

  describe('stored messages at login go out a window at a time', () => {
    for (const version of ['v4', 'v2'] as ClientVersion[]) {
      it(`socket.io-client ${version}: a page that does not ack gets one window; acks release the rest, in order`, async () => {
        const server = await startServer({ redeliveryWindow: 10 });
        const ids = await storeFor(server.apiUrl, 'reader', 300);
        const page = (await connectClient(version, server.ioUrl)).track('note');

        expect(await page.request<LoginReply>('login', 'reader')).to.deep.equal({ ok: true, uid: 'reader', pending: 300 });
        expect(await settled(server, page, 'reader')).to.deep.equal(ids.slice(0, 10));
        const [, meta] = page.received('note')[0]!;
        expect(meta).to.include({ id: ids[0], stored: true, redelivery: true });

        // one ack lets exactly one more go
        redelivered(page)[0]!.ack();
        await page.waitFor('note', (_d, m) => (m as MessageMeta).id === ids[10]);
        expect(await settled(server, page, 'reader')).to.deep.equal(ids.slice(0, 11));

        // acking each as it comes brings all of them, oldest first, once each
        const acked = new Set<string>([ids[0]!]);
        await until(
          () => {
            for (const m of redelivered(page)) {
              if (acked.has(m.id)) continue;
              acked.add(m.id);
              m.ack();
            }
            return acked.size === 300;
          },
          'all 300 stored messages',
        );
        expect(redelivered(page).map((m) => m.id)).to.deep.equal(ids);
        // every ack removed its message: a new page of the uid gets nothing stored
        await until(
          async () => {
            const next = await connectClient('v4', server.ioUrl);
            const reply = await next.request<LoginReply>('login', 'reader');
            next.close();
            return reply.ok && reply.pending === 0;
          },
          'the acks to reach the store',
          5000,
          100,
        );
      });
    }

    it('counts bytes too: messages whose data passes the window bytes go one window at a time', async () => {
      const server = await startServer({ redeliveryWindow: 100, redeliveryWindowBytes: 2000 });
      // each data is 902 bytes as JSON: two fit in 2000 bytes, three do not
      const ids = await storeFor(server.apiUrl, 'bytes', 6, () => 'b'.repeat(900));
      const page = (await connectClient('v4', server.ioUrl)).track('note');
      expect(await page.request<LoginReply>('login', 'bytes')).to.deep.equal({ ok: true, uid: 'bytes', pending: 6 });
      expect(await settled(server, page, 'bytes')).to.deep.equal(ids.slice(0, 2));
      for (const m of redelivered(page)) m.ack();
      await page.waitFor('note', (_d, m) => (m as MessageMeta).id === ids[3]);
      expect(await settled(server, page, 'bytes')).to.deep.equal(ids.slice(0, 4));
      // the rest acked too, so no ack timer outlives the test
      for (const m of redelivered(page).slice(2)) m.ack();
      await page.waitFor('note', (_d, m) => (m as MessageMeta).id === ids[5]);
      for (const m of redelivered(page).slice(4)) m.ack();
    });

    it('moves on past a message not acked within ACK_TIMEOUT_MS, and keeps it stored', async () => {
      const server = await startServer({ redeliveryWindow: 5, ackTimeoutMs: 100 });
      const ids = await storeFor(server.apiUrl, 'silent', 15);
      const page = (await connectClient('v2', server.ioUrl)).track('note');
      expect(await page.request<LoginReply>('login', 'silent')).to.deep.equal({ ok: true, uid: 'silent', pending: 15 });
      // never acked: each window goes after the last one timed out
      await until(() => redelivered(page).length === 15, 'all 15 through timed-out windows');
      expect(redelivered(page).map((m) => m.id)).to.deep.equal(ids);
      page.close();
      const again = await connectClient('v4', server.ioUrl);
      expect(await again.request<LoginReply>('login', 'silent')).to.deep.equal({ ok: true, uid: 'silent', pending: 15 });
    });
  });

  it('refuses at start a redelivery window that would fill MAX_SOCKET_BUFFER_BYTES', () => {
    expect(() => loadConfig({ REDELIVERY_WINDOW_BYTES: '1048576', MAX_SOCKET_BUFFER_BYTES: '1048576' }))
      .to.throw(ConfigError, 'REDELIVERY_WINDOW_BYTES must be below MAX_SOCKET_BUFFER_BYTES');
    expect(loadConfig({ REDELIVERY_WINDOW_BYTES: '1048575', MAX_SOCKET_BUFFER_BYTES: '1048576' }).redeliveryWindowBytes).to.equal(1048575);
  });

  it('cuts a connection that stops reading once MAX_SOCKET_BUFFER_BYTES wait for it, logged under its client address; other pages keep receiving', async () => {
    const bound = 256 * 1024;
    const log = recordingLogger();
    // behind a trusted proxy: the log names the client, not the proxy
    const server = await startServer({ maxSocketBufferBytes: bound, redeliveryWindowBytes: 1024, trustProxy: ['127.0.0.1'] }, { log });
    const options = { forceNew: true, reconnection: false, transports: ['websocket'], extraHeaders: { 'x-forwarded-for': '203.0.113.9' } };
    const slow = new TestClient('v4', ioV4(server.ioUrl, options) as unknown as ConstructorParameters<typeof TestClient>[1]).track('big');
    onCleanup(() => slow.close());
    await slow.waitFor('connect');
    const fast = (await connectClient('v4', server.ioUrl, ['websocket'])).track('big');
    await slow.login('slow');
    await fast.login('fast');
    const slowOnServer = [...server.io.of('/').sockets.values()].find((s) => s.data.uid === 'slow')!;
    // the page's process stops reading its socket: the kernel's buffers fill, then the server's
    const raw = slow.raw as unknown as { io: { engine: { transport: { ws: { _socket: { pause(): void; destroy(): void } } } } } };
    const tcp = raw.io.engine.transport.ws._socket;
    tcp.pause();
    onCleanup(() => tcp.destroy()); // a paused socket would hold the client's close for its timeout

    const data = 'x'.repeat(60_000);
    let pushes = 0;
    // loopback kernel buffers can take several MiB before anything waits in the server
    while (slowOnServer.connected && pushes < 600) {
      await post(server.apiUrl, '/api/v1/push', { to: ['slow', 'fast'], event: 'big', data });
      pushes++;
    }
    expect(slowOnServer.connected, `still connected after ${pushes} pushes of 60 kB`).to.equal(false);
    // the fast page got every push, and gets the next ones
    await until(() => fast.received('big').length === pushes, `the fast page to receive all ${pushes} pushes`);
    await post(server.apiUrl, '/api/v1/push', { to: 'fast', event: 'big', data: 'after' });
    await fast.waitFor('big', (d) => d === 'after');
    expect((await server.metrics.render()).body).to.match(/^push_slow_connections_cut_total 1$/m);
    expect(log.lines.filter((l) => l.includes('closed a connection from'))).to.have.length(1);
    expect(log.lines.find((l) => l.includes('closed a connection from'))).to.include('from 203.0.113.9:');
  });

  describe('a login the server cannot complete', () => {
    before(function () {
      if (!REDIS_SERVER) this.skip();
    });

    it('answers unavailable (ack or login_error) when Redis hangs, is undone, and works once Redis is back', async () => {
      const redis = await startRedis();
      onCleanup(() => redis.stop());
      const server = await startServer({ redisUrl: redis.url, loginTimeoutMs: 300 });
      onCleanup(() => redis.resume()); // before the server closes: its close talks to Redis
      const frozen = (await connectClient('v4', server.ioUrl)).track('note');
      const legacy = await connectClient('v2', server.ioUrl);
      redis.pause();
      const reply = await frozen.request<LoginReply>('login', 'frozen');
      expect(reply).to.have.property('ok', false);
      expect(reply).to.have.nested.property('error.code', 'unavailable');
      legacy.emit('login', 'frozen-legacy');
      const [error] = await legacy.waitFor('login_error');
      expect(error).to.have.property('code', 'unavailable');

      redis.resume();
      // the pages counted by the failed logins are given back once Redis answers
      const online = async () => (await (await fetch(`${server.apiUrl}/api/v1/online`)).json()) as { users: number; pages: number };
      await until(async () => (await online()).pages === 0, 'the failed logins undone');
      // undone: the socket left the uid's room
      await post(server.apiUrl, '/api/v1/push', { to: 'frozen', event: 'note', data: 'not logged in' });
      // the same socket may log in again: it was not left half logged in
      expect(await frozen.login('frozen')).to.equal(countsHtml(1, 1));
      expect(await legacy.login('frozen-legacy')).to.equal(countsHtml(2, 2));
      await post(server.apiUrl, '/api/v1/push', { to: 'frozen', event: 'note', data: 'logged in' });
      await frozen.waitFor('note', (d) => d === 'logged in');
      expect(frozen.received('note').map((args) => args[0])).to.deep.equal(['logged in']);
    });
  });
});
