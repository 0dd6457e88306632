// GET /events: Server-Sent Events streams on the Socket.IO port, read by a raw Node HTTP
// client, by a real EventSource in headless Chromium, and on two start.ts nodes sharing a
// real redis-server. A stream is a page: it counts in presence and gets every push a
// Socket.IO page of its uid gets, in order; it resumes from Last-Event-ID.
import { expect } from 'chai';
import { SignJWT } from 'jose';
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { createServer as createHttpServer, type Server } from 'node:http';
import type { Browser } from 'playwright-core';
import { loginToken, topicKey } from '../src/login-auth.ts';
import { MemoryMessageStore } from '../src/message-store.ts';
import { CHROMIUM, launchBrowser } from './support/browser.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { connectClient, countsHtml, type TestClient } from './support/clients.ts';
import { REDIS_SERVER, startRedis } from './support/redis-server.ts';
import { legacyPush, startServer, type TestServer } from './support/server.ts';
import { SseClient, type SseEvent } from './support/sse-client.ts';
import { startNodeProcesses, type NodeProcess } from './support/start-process.ts';
import { until } from './support/until.ts';

const SECRET = 'sse-login-secret-0123456789';
/** Push answers name online uids, and the read routes answer, only with a PUSH_SECRET. */
const PUSH_SECRET = 'sse-push-secret-0123456789';
const AUTH = { authorization: `Bearer ${PUSH_SECRET}` };

function publish(apiUrl: string, to: string, content: string): Promise<{ status: number; body: string }> {
  return legacyPush(apiUrl, { type: 'publish', to, content, secret: PUSH_SECRET });
}

async function v1Push(apiUrl: string, body: Record<string, unknown>): Promise<{ id: string; online: string[] }> {
  const res = await fetch(apiUrl + '/api/v1/push', { method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const json = (await res.json()) as { id: string; online: string[] };
  if (res.status >= 300) throw new Error(`push answered ${res.status}: ${JSON.stringify(json)}`);
  return json;
}

async function pagesOf(apiUrl: string, uid: string): Promise<number> {
  const res = await fetch(`${apiUrl}/api/v1/users/${encodeURIComponent(uid)}`, { headers: AUTH });
  return ((await res.json()) as { pages: number }).pages;
}

async function storedIds(apiUrl: string, uid: string): Promise<string[]> {
  const ids: string[] = [];
  for (let cursor: string | null = ''; cursor !== null; ) {
    const res = await fetch(`${apiUrl}/api/v1/users/${encodeURIComponent(uid)}/messages?limit=1000&cursor=${cursor}`, { headers: AUTH });
    const page = (await res.json()) as { messages: { id: string }[]; cursor: string | null };
    ids.push(...page.messages.map((m) => m.id));
    cursor = page.cursor;
  }
  return ids;
}

/** A Socket.IO page logged in as `uid` and subscribed to `topic`, which may publish client messages to it. */
async function chatMember(ioUrl: string, uid: string, topic: string): Promise<TestClient> {
  const client = await connectClient('v4', ioUrl);
  await client.login(uid);
  expect(await client.request('subscribe', topic)).to.deep.include({ ok: true });
  return client;
}

/** Publishes a client message; resolves its id. */
async function chat(client: TestClient, topic: string, data: unknown): Promise<string> {
  const reply = await client.request<{ ok: boolean; id?: string }>('publish', { topic, data });
  expect(reply.ok, JSON.stringify(reply)).to.equal(true);
  return reply.id!;
}

/** A stream that has started: its first event, the online count, has come. */
async function openStream(ioUrl: string, query: string, headers: Record<string, string> = {}): Promise<SseClient> {
  const client = await SseClient.open(`${ioUrl}/events?${query}`, headers);
  expect(client.status, client.body).to.equal(200);
  await client.waitFor((e) => e.event === 'update_online_count', 'the online count at the start');
  return client;
}

describe('SSE streams (GET /events)', function () {
  this.timeout(20_000);
  afterEach(cleanupAll);

  describe('one node', () => {
    let server: TestServer;
    beforeEach(async () => {
      server = await startServer({ sseHeartbeatMs: 100, pushSecret: PUSH_SECRET });
    });

    it('starts with text/event-stream and the online count, then gets legacy (escaped), v1, broadcast and topic pushes, an id on kept messages only', async () => {
      const stream = await openStream(server.ioUrl, 'uid=u1&topics=news');
      expect(stream.headers['content-type']).to.equal('text/event-stream; charset=utf-8');
      expect(stream.events[0]).to.deep.equal({ event: 'update_online_count', data: countsHtml(1, 1) });

      expect((await publish(server.apiUrl, 'u1', '<b>hi</b> & "q"')).body).to.equal('ok');
      const direct = await v1Push(server.apiUrl, { to: 'u1', event: 'note', data: { n: 1 }, ttl: 600 });
      expect(direct.online).to.deep.equal(['u1']);
      await publish(server.apiUrl, '', 'to all');
      await v1Push(server.apiUrl, { topic: 'news', data: 'headline' });
      await v1Push(server.apiUrl, { topic: 'sports', data: 'not subscribed' });
      await v1Push(server.apiUrl, { to: 'u1', event: 'note', data: 'last' });
      await stream.waitFor((e) => e.data === 'last', 'the last push');

      // (the count comes again as a broadcast: counts changed when the stream's page was counted)
      expect(stream.events.filter((e) => e.event !== 'update_online_count')).to.deep.equal([
        { event: 'new_msg', data: '&lt;b&gt;hi&lt;/b&gt; &amp; &quot;q&quot;' },
        { event: 'note', data: { n: 1 }, id: direct.id },
        { event: 'new_msg', data: 'to all' },
        { event: 'message', data: 'headline' },
        { event: 'note', data: 'last' },
      ]);
    });

    it('a uid with a WebSocket page and a stream: both get every push, in order (the lean path leaves the stream to Socket.IO)', async () => {
      const page = (await connectClient('v4', server.ioUrl, ['websocket'])).track('note');
      await page.login('both');
      const stream = await openStream(server.ioUrl, 'uid=both');
      const sent: number[] = [];
      for (let i = 0; i < 30; i++) {
        sent.push(i);
        await v1Push(server.apiUrl, { to: 'both', event: 'note', data: i });
      }
      await stream.waitFor((e) => e.data === 29, 'the 30th push on the stream');
      await page.waitFor('note', (d) => d === 29);
      expect(stream.dataOf('note')).to.deep.equal(sent);
      expect(page.received('note').map((args) => args[0])).to.deep.equal(sent);
    });

    it('counts as a page: online counts, presence and the socket pages\' count event; the page goes when the stream closes', async () => {
      const page = await connectClient('v4', server.ioUrl);
      await page.login('sock');
      const stream = await openStream(server.ioUrl, 'uid=streamer');
      expect(stream.events[0]!.data).to.equal(countsHtml(2, 2));
      await page.waitFor('update_online_count', (html) => html === countsHtml(2, 2));
      expect(await pagesOf(server.apiUrl, 'streamer')).to.equal(1);
      // a count broadcast reaches the stream too
      const other = await connectClient('v2', server.ioUrl);
      await other.login('third');
      await stream.waitFor((e) => e.event === 'update_online_count' && e.data === countsHtml(3, 3), 'the broadcast count');

      stream.close();
      await until(async () => (await pagesOf(server.apiUrl, 'streamer')) === 0, 'the stream\'s page to go');
      await page.waitFor('update_online_count', (html) => html === countsHtml(2, 2));
    });

    it('the server side of rooms works on streams: socketsJoin adds a topic, disconnectSockets ends the stream', async () => {
      const stream = await openStream(server.ioUrl, 'uid=ops');
      server.io.in('uid:ops').socketsJoin('topic:extra');
      await v1Push(server.apiUrl, { topic: 'extra', data: 'joined' });
      await stream.waitFor((e) => e.data === 'joined', 'the push to the joined topic');
      server.io.in('uid:ops').socketsLeave('topic:extra');
      await v1Push(server.apiUrl, { topic: 'extra', data: 'left' });
      await v1Push(server.apiUrl, { to: 'ops', data: 'marker' });
      await stream.waitFor((e) => e.data === 'marker', 'the marker');
      expect(stream.dataOf('message')).to.deep.equal(['joined', 'marker']);
      server.io.in('uid:ops').disconnectSockets();
      await stream.waitForEnd();
    });

    it('sends a heartbeat comment every SSE_HEARTBEAT_MS', async () => {
      const stream = await openStream(server.ioUrl, 'uid=quiet');
      await until(() => stream.comments.filter((c) => c === 'heartbeat').length >= 2, 'two heartbeats');
    });

    it('resumes from Last-Event-ID: exactly the messages stored after it, in order, and those up to it acked', async () => {
      const first = await openStream(server.ioUrl, 'uid=r');
      const seen = await v1Push(server.apiUrl, { to: 'r', event: 'note', data: 'seen', ttl: 600 });
      await first.waitFor((e) => e.id === seen.id, 'the first push');
      first.close();
      await until(async () => (await pagesOf(server.apiUrl, 'r')) === 0, 'r offline');

      const ids: string[] = [];
      for (const n of [1, 2, 3]) ids.push((await v1Push(server.apiUrl, { to: 'r', event: 'note', data: n, ttl: 600 })).id);
      expect(await storedIds(server.apiUrl, 'r')).to.deep.equal([seen.id, ...ids]);

      const again = await openStream(server.ioUrl, 'uid=r', { 'last-event-id': seen.id });
      await again.waitFor((e) => e.id === ids[2], 'the third stored message');
      await v1Push(server.apiUrl, { to: 'r', event: 'note', data: 'live' });
      await again.waitFor((e) => e.data === 'live', 'a live push after the replay');
      expect(again.events.filter((e) => e.event === 'note')).to.deep.equal([
        { event: 'note', data: 1, id: ids[0] },
        { event: 'note', data: 2, id: ids[1] },
        { event: 'note', data: 3, id: ids[2] },
        { event: 'note', data: 'live' }, // not kept: no id
      ]);
      // the id it reported is its ack: the seen message is gone, the three stay until a later id
      await until(async () => (await storedIds(server.apiUrl, 'r')).length === 3, 'the seen message acked');
      expect(await storedIds(server.apiUrl, 'r')).to.deep.equal(ids);

      // ?lastEventId= for a first connection does the same
      const third = await openStream(server.ioUrl, `uid=r&lastEventId=${ids[1]}`);
      await third.waitFor((e) => e.id === ids[2], 'the message after lastEventId');
      expect(third.events.filter((e) => e.event === 'note').map((e) => e.id)).to.deep.equal([ids[2]]);
      await until(async () => (await storedIds(server.apiUrl, 'r')).length === 1, 'the first two acked');
    });

    it('with no or an unknown Last-Event-ID sends every stored message, as a login does', async () => {
      const ids: string[] = [];
      for (const n of [1, 2]) ids.push((await v1Push(server.apiUrl, { to: 'fresh', event: 'note', data: n, ttl: 600 })).id);
      const plain = await openStream(server.ioUrl, 'uid=fresh');
      await plain.waitFor((e) => e.id === ids[1], 'both stored messages');
      const unknown = await openStream(server.ioUrl, 'uid=fresh', { 'last-event-id': 'no-such-id' });
      await unknown.waitFor((e) => e.id === ids[1], 'both stored messages');
      expect(unknown.events.filter((e) => e.event === 'note').map((e) => e.id)).to.deep.equal(ids);
      expect(await storedIds(server.apiUrl, 'fresh')).to.deep.equal(ids); // nothing acked
    });

    it('escapes markup on new_msg from the store too (a message kept by an older version)', async () => {
      const limits = { maxPendingPerUid: 10, maxBytes: 1 << 20, maxScheduled: 10, maxScheduledBytes: 1 << 20, maxIdempotencyBytes: 1 << 20 };
      const store = new MemoryMessageStore(limits, () => {});
      const now = Date.now();
      await store.add(['old'], { id: 'old-1', event: 'new_msg', data: '<img src=x onerror=alert(1)>', ts: now, expiresAt: now + 60_000 }, 500);
      const own = await startServer({}, { store });
      onCleanup(() => store.close());
      const stream = await openStream(own.ioUrl, 'uid=old');
      await stream.waitFor((e) => e.id === 'old-1', 'the stored message');
      expect(stream.dataOf('new_msg')).to.deep.equal(['&lt;img src=x onerror=alert(1)&gt;']);
    });

    it('refuses bad input before the stream starts, with a reason', async () => {
      const cases: [string, number, string][] = [
        ['', 400, 'invalid_uid'],
        [`uid=${'x'.repeat(300)}`, 400, 'invalid_uid'],
        ['uid=a&topics=bad topic', 400, 'invalid_topic'],
        ['uid=a&topics=private-x', 401, 'unauthorized'],
      ];
      for (const [query, status, code] of cases) {
        const res = await SseClient.open(`${server.ioUrl}/events?${query}`);
        await res.waitForEnd();
        expect([res.status, res.error().code], query).to.deep.equal([status, code]);
        expect(res.error().message).to.be.a('string').and.not.equal('');
      }
      const post = await fetch(`${server.ioUrl}/events?uid=a`, { method: 'POST' });
      expect(post.status).to.equal(405);
      expect((await fetch(`${server.ioUrl}/elsewhere`)).status).to.equal(404);
      expect(await pagesOf(server.apiUrl, 'a')).to.equal(0);
    });

    it('cuts a stream that stops reading once MAX_SOCKET_BUFFER_BYTES wait for it; other streams keep receiving', async () => {
      const bounded = await startServer({ maxSocketBufferBytes: 256 * 1024, redeliveryWindowBytes: 1024, pushSecret: PUSH_SECRET });
      const tcp = connect(Number(new URL(bounded.ioUrl).port), '127.0.0.1');
      onCleanup(() => tcp.destroy());
      tcp.write('GET /events?uid=slow HTTP/1.1\r\nHost: x\r\n\r\n');
      tcp.pause(); // the client stops reading: the kernel's buffers fill, then the server's
      await until(async () => (await pagesOf(bounded.apiUrl, 'slow')) === 1, 'the slow stream to start');
      const fast = await openStream(bounded.ioUrl, 'uid=fast');

      const data = 'x'.repeat(60_000);
      let pushes = 0;
      while ((await pagesOf(bounded.apiUrl, 'slow')) === 1 && pushes < 600) {
        await v1Push(bounded.apiUrl, { to: ['slow', 'fast'], event: 'big', data });
        pushes++;
      }
      expect(await pagesOf(bounded.apiUrl, 'slow'), `still open after ${pushes} pushes of 60 kB`).to.equal(0);
      const { body: text } = await bounded.metrics.render();
      expect(text).to.match(/^push_slow_connections_cut_total 1$/m);
      await v1Push(bounded.apiUrl, { to: 'fast', event: 'big', data: 'after' });
      await fast.waitFor((e) => e.data === 'after', 'the fast stream to get the next push', 10_000);
      expect(fast.dataOf('big')).to.have.length(pushes + 1);
    });

    it('cuts a stream whose client stopped reading within a few heartbeats, long before the byte bound fills', async () => {
      // the bound is far away: only the heartbeat's check can find this client
      const patient = await startServer({ sseHeartbeatMs: 100, maxSocketBufferBytes: 256 * 1024 * 1024, pushSecret: PUSH_SECRET });
      const tcp = connect(Number(new URL(patient.ioUrl).port), '127.0.0.1');
      onCleanup(() => tcp.destroy());
      tcp.write('GET /events?uid=stalled HTTP/1.1\r\nHost: x\r\n\r\n');
      tcp.pause();
      await until(async () => (await pagesOf(patient.apiUrl, 'stalled')) === 1, 'the stream to start');
      // enough to fill the kernel's buffers on both sides, so bytes wait in the server
      const data = 'x'.repeat(60_000);
      for (let i = 0; i < 100 && (await pagesOf(patient.apiUrl, 'stalled')) === 1; i++) {
        await v1Push(patient.apiUrl, { to: 'stalled', event: 'big', data });
      }
      await until(async () => (await pagesOf(patient.apiUrl, 'stalled')) === 0, 'the stalled stream to be cut', 5000);
      const { body: text } = await patient.metrics.render();
      expect(text).to.match(/^push_slow_connections_cut_total 1$/m);
    });

    it('a replay whose client does not read holds its SSE_MAX_REPLAYS slot at most two heartbeats; past the bound a new stream ends at once with a retry', async () => {
      const bounded = await startServer({ sseHeartbeatMs: 300, sseMaxReplays: 1, maxSocketBufferBytes: 256 * 1024 * 1024, pushSecret: PUSH_SECRET });
      const data = 'y'.repeat(60_000);
      for (let i = 0; i < 80; i++) await v1Push(bounded.apiUrl, { to: 'backlog', event: 'big', data, ttl: 600 });
      const tcp = connect(Number(new URL(bounded.ioUrl).port), '127.0.0.1');
      onCleanup(() => tcp.destroy());
      tcp.write('GET /events?uid=backlog HTTP/1.1\r\nHost: x\r\n\r\n');
      tcp.pause(); // 4.8 MB of replay against a client that takes nothing
      await until(async () => (await pagesOf(bounded.apiUrl, 'backlog')) === 1, 'the replaying stream to start');
      // an ended stream that tells EventSource when to come back (an error status would make it give up)
      const refused = await SseClient.open(`${bounded.ioUrl}/events?uid=other`);
      await refused.waitForEnd();
      expect(refused.status).to.equal(200);
      expect(refused.body).to.match(/SSE_MAX_REPLAYS\)\nretry: [1-3]\d{3}\n\n$/);
      expect(await pagesOf(bounded.apiUrl, 'other'), 'a refused stream is no page').to.equal(0);
      // the stuck replay is cut after two heartbeats without a drain; its slot is free again
      await until(async () => (await pagesOf(bounded.apiUrl, 'backlog')) === 0, 'the stuck replay to be cut', 5000);
      await openStream(bounded.ioUrl, 'uid=other');
      expect(await storedIds(bounded.apiUrl, 'backlog'), 'nothing acked by a cut replay').to.have.length(80);
    });

    it('SSE_OPENS_PER_SECOND: past the burst an address is told to come back later, not refused for good', async () => {
      const limited = await startServer({ sseOpensPerSecond: 1, pushSecret: PUSH_SECRET });
      await openStream(limited.ioUrl, 'uid=o1');
      await openStream(limited.ioUrl, 'uid=o2');
      const third = await SseClient.open(`${limited.ioUrl}/events?uid=o3`);
      await third.waitForEnd();
      expect(third.status).to.equal(200); // an error status would make EventSource give up
      expect(third.body).to.match(/SSE_OPENS_PER_SECOND\)\nretry: [1-3]\d{3}\n\n$/);
      expect(await pagesOf(limited.apiUrl, 'o3')).to.equal(0);
    });

    it('counts against MAX_CONNECTIONS_PER_IP together with Socket.IO connections', async () => {
      const limited = await startServer({ maxConnectionsPerIp: 2, pushSecret: PUSH_SECRET });
      await connectClient('v4', limited.ioUrl);
      const one = await openStream(limited.ioUrl, 'uid=a');
      const refused = await SseClient.open(`${limited.ioUrl}/events?uid=b`);
      await refused.waitForEnd();
      expect([refused.status, refused.error().code]).to.deep.equal([429, 'too_many_connections']);
      one.close();
      await until(async () => (await SseClient.open(`${limited.ioUrl}/events?uid=c`)).status === 200, 'a slot to free');
    });

    it('close() ends open streams at once, and the port can be bound again', async () => {
      const own = await startServer();
      const stream = await openStream(own.ioUrl, 'uid=bye');
      const started = Date.now();
      await own.close();
      expect(Date.now() - started).to.be.below(2000); // not SHUTDOWN_TIMEOUT_MS (5 s)
      await stream.waitForEnd();
      const again = createHttpServer();
      await new Promise<void>((resolve) => again.listen(own.ports.io, '127.0.0.1', resolve));
      await new Promise((resolve) => again.close(resolve));
    });
  });

  describe('client messages and event ids', () => {
    let server: TestServer;
    beforeEach(async () => {
      server = await startServer({ sseHeartbeatMs: 100, pushSecret: PUSH_SECRET, clientPublishTopics: ['chat-*'] });
    });

    it('a client message comes as client_message, {data, meta} with the sender\'s uid and client: true, never as a backend push on message', async () => {
      const stream = await openStream(server.ioUrl, 'uid=reader&topics=chat-1');
      const alice = await chatMember(server.ioUrl, 'alice', 'chat-1');
      // data shaped like the envelope: it stays inside `data`, the client fills no meta
      const forged = { data: 'from the backend', meta: { id: 'x', ts: 1, uid: 'backend' } };
      const id = await chat(alice, 'chat-1', forged);
      await v1Push(server.apiUrl, { topic: 'chat-1', data: 'from the backend' });
      await stream.waitFor((e) => e.data === 'from the backend', 'the backend push');

      const events = stream.events.filter((e) => e.event !== 'update_online_count');
      expect(events).to.have.length(2);
      const [message, push] = events as [SseEvent, SseEvent];
      expect(message.event).to.equal('client_message');
      expect(message).to.not.have.property('id'); // not kept: no id (see the next test)
      const { data, meta } = message.data as { data: unknown; meta: Record<string, unknown> };
      expect(data).to.deep.equal(forged);
      expect(meta).to.have.all.keys('id', 'ts', 'uid', 'client');
      expect(meta).to.deep.include({ id, uid: 'alice', client: true });
      expect(meta.ts).to.be.a('number').within(Date.now() - 60_000, Date.now());
      expect(push).to.deep.equal({ event: 'message', data: 'from the backend' });

      // the backend cannot take the name either: the event name alone says a client sent it
      const res = await fetch(server.apiUrl + '/api/v1/push', {
        method: 'POST',
        headers: { ...AUTH, 'content-type': 'application/json' },
        body: JSON.stringify({ topic: 'chat-1', event: 'client_message', data: 'x' }),
      });
      expect(res.status).to.equal(400);
      expect(await res.text()).to.match(/event.*reserved/);
    });

    it('only kept messages carry an id: client messages, topic, broadcast, legacy and unkept pushes between kept ones leave the last event id at a kept one, and the reconnect acks them', async () => {
      const stream = await openStream(server.ioUrl, 'uid=r&topics=chat-1');
      const alice = await chatMember(server.ioUrl, 'alice', 'chat-1');
      const first = await v1Push(server.apiUrl, { to: 'r', event: 'note', data: 1, ttl: 600 });
      await chat(alice, 'chat-1', 'between');
      await v1Push(server.apiUrl, { topic: 'chat-1', data: 'topic' });
      await v1Push(server.apiUrl, { data: 'everyone' });
      await v1Push(server.apiUrl, { to: 'r', event: 'note', data: 'not kept' });
      await v1Push(server.apiUrl, { to: 'r', event: 'new_msg', data: 'v1 legacy' });
      await publish(server.apiUrl, 'r', 'legacy');
      const second = await v1Push(server.apiUrl, { to: 'r', event: 'note', data: 2, ttl: 600 });
      await chat(alice, 'chat-1', 'after');
      await stream.waitFor((e) => e.event === 'client_message' && (e.data as { data: unknown }).data === 'after', 'the last client message');

      expect(stream.events.filter((e) => e.id !== undefined).map((e) => e.id)).to.deep.equal([first.id, second.id]);
      expect(stream.lastEventId).to.equal(second.id);
      expect(await storedIds(server.apiUrl, 'r')).to.deep.equal([first.id, second.id]);
      stream.close();
      await until(async () => (await pagesOf(server.apiUrl, 'r')) === 0, 'r offline');

      // EventSource's reconnect: the last id it holds acks both kept messages, and none comes again
      const again = await openStream(server.ioUrl, 'uid=r&topics=chat-1', { 'last-event-id': stream.lastEventId! });
      await until(async () => (await storedIds(server.apiUrl, 'r')).length === 0, 'both kept messages acked by the reconnect');
      const marker = await v1Push(server.apiUrl, { to: 'r', event: 'note', data: 'marker', ttl: 600 });
      await again.waitFor((e) => e.id === marker.id, 'a live push after the replay');
      expect(again.dataOf('note')).to.deep.equal(['marker']);
    });
  });

  describe('tokens (LOGIN_SECRET) and origins', () => {
    it('is refused without a token, or with a wrong or expired one; an HMAC or JWT token opens it', async () => {
      const server = await startServer({ loginSecret: SECRET, pushSecret: PUSH_SECRET });
      for (const [query, code] of [
        ['uid=42', 'unauthorized'],
        [`uid=42&token=${loginToken(SECRET, '43')}`, 'unauthorized'],
      ] as const) {
        const res = await SseClient.open(`${server.ioUrl}/events?${query}`);
        await res.waitForEnd();
        expect([res.status, res.error().code]).to.deep.equal([401, code]);
      }
      const key = new TextEncoder().encode(SECRET);
      const expired = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('42').setExpirationTime(Math.floor(Date.now() / 1000) - 60).sign(key);
      const late = await SseClient.open(`${server.ioUrl}/events?uid=42&token=${expired}`);
      await late.waitForEnd();
      expect([late.status, late.error().code]).to.deep.equal([401, 'token_expired']);
      expect(await pagesOf(server.apiUrl, '42')).to.equal(0);

      await openStream(server.ioUrl, `uid=42&token=${loginToken(SECRET, '42')}`);
      const jwt = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('43').setExpirationTime('1h').sign(key);
      await openStream(server.ioUrl, `uid=43&token=${jwt}`);
      expect(await pagesOf(server.apiUrl, '42')).to.equal(1);
    });

    it('a private topic needs its token, in the query parameter named as the topic', async () => {
      const server = await startServer({ loginSecret: SECRET, pushSecret: PUSH_SECRET });
      const auth = `uid=7&token=${loginToken(SECRET, '7')}`;
      const without = await SseClient.open(`${server.ioUrl}/events?${auth}&topics=private-team`);
      await without.waitForEnd();
      expect([without.status, without.error().code]).to.deep.equal([401, 'unauthorized']);
      const topicToken = loginToken(topicKey(SECRET), 'private-team');
      const stream = await openStream(server.ioUrl, `${auth}&topics=private-team&private-team=${topicToken}`);
      await v1Push(server.apiUrl, { topic: 'private-team', data: 'secret plans' });
      await stream.waitFor((e) => e.data === 'secret plans', 'the private topic push');
    });

    it('CORS_ORIGINS: a listed origin is answered with its CORS headers, another is refused', async () => {
      const server = await startServer({ corsOrigins: ['https://app.example'], pushSecret: PUSH_SECRET });
      const ok = await openStream(server.ioUrl, 'uid=c', { origin: 'https://app.example' });
      expect(ok.headers['access-control-allow-origin']).to.equal('https://app.example');
      const other = await SseClient.open(`${server.ioUrl}/events?uid=c`, { origin: 'https://evil.example' });
      await other.waitForEnd();
      expect([other.status, other.error().code]).to.deep.equal([403, 'origin_not_allowed']);
      // any origin (the default *): a literal * without credentials, never the origin reflected
      const anyOrigin = await startServer({ pushSecret: PUSH_SECRET });
      const open = await openStream(anyOrigin.ioUrl, 'uid=d', { origin: 'null' });
      expect([open.headers['access-control-allow-origin'], open.headers['access-control-allow-credentials']]).to.deep.equal(['*', undefined]);
    });
  });

  describe('in the browser', () => {
    let browser: Browser;
    before(function () {
      if (!CHROMIUM) this.skip();
    });
    beforeEach(async () => {
      browser = await launchBrowser();
    });

    it('an EventSource on a page of another origin gets the count and pushes, and resumes from its last event id after the stream ends', async () => {
      const server = await startServer({ sseHeartbeatMs: 100, pushSecret: PUSH_SECRET });
      const proxy = await tcpProxy(Number(new URL(server.ioUrl).port));
      const page = await browser.newPage();
      await page.goto(await pageSite());
      await page.evaluate((url) => {
        const w = window as unknown as { log: string[]; source: EventSource };
        w.log = [];
        w.source = new EventSource(url);
        for (const name of ['update_online_count', 'new_msg', 'note']) {
          w.source.addEventListener(name, (e) => w.log.push(`${name} ${(e as MessageEvent).lastEventId} ${(e as MessageEvent).data as string}`));
        }
      }, `http://127.0.0.1:${proxy.port}/events?uid=web`);
      const log = () => page.evaluate(() => (window as unknown as { log: string[] }).log);
      await until(async () => (await log()).length >= 1, 'the count in the page');
      expect((await log())[0]).to.equal(`update_online_count  ${JSON.stringify(countsHtml(1, 1))}`);

      await publish(server.apiUrl, 'web', '<img src=x onerror=alert(1)>');
      const kept = await v1Push(server.apiUrl, { to: 'web', event: 'note', data: { a: 1 }, ttl: 600 });
      await until(async () => (await log()).some((l) => l.includes(kept.id)), 'the v1 push in the page');
      // (the count comes again as a broadcast: counts changed when the stream's page was counted)
      expect((await log()).filter((l) => !l.startsWith('update_online_count'))).to.deep.equal([`new_msg  "&lt;img src=x onerror=alert(1)&gt;"`, `note ${kept.id} {"a":1}`]);

      // the connection drops (the proxy cuts it); EventSource reconnects with Last-Event-ID on
      // its own and gets only what was stored after that id
      const before = (await log()).length;
      proxy.cut();
      await until(async () => (await pagesOf(server.apiUrl, 'web')) === 0, 'the dropped stream\'s page to go');
      const next = await v1Push(server.apiUrl, { to: 'web', event: 'note', data: 'while away', ttl: 600 });
      await until(async () => (await log()).some((l) => l.includes(next.id)), 'the message stored while away', 15_000);
      expect(proxy.requests.at(-1)).to.match(new RegExp(`^last-event-id: ${kept.id}$`, 'im'));
      const notes = (await log()).slice(before).filter((l) => l.startsWith('note'));
      expect(notes).to.deep.equal([`note ${next.id} "while away"`]);
      await until(async () => (await storedIds(server.apiUrl, 'web')).length === 1, 'the kept message acked by the resume');
    });

    it('an EventSource: a client message comes on client_message with its sender; between kept messages it leaves the last event id at a kept one, so the reconnect acks them', async () => {
      const server = await startServer({ sseHeartbeatMs: 100, pushSecret: PUSH_SECRET, clientPublishTopics: ['chat-*'] });
      const proxy = await tcpProxy(Number(new URL(server.ioUrl).port));
      const page = await browser.newPage();
      await page.goto(await pageSite());
      type Logged = { type: string; lastEventId: string; data: string };
      await page.evaluate((url) => {
        const w = window as unknown as { log: Logged[]; source: EventSource };
        w.log = [];
        w.source = new EventSource(url);
        for (const type of ['update_online_count', 'message', 'note', 'client_message']) {
          w.source.addEventListener(type, (e) => w.log.push({ type, lastEventId: (e as MessageEvent).lastEventId, data: (e as MessageEvent).data as string }));
        }
      }, `http://127.0.0.1:${proxy.port}/events?uid=web&topics=chat-1`);
      const log = async () => (await page.evaluate(() => (window as unknown as { log: Logged[] }).log)).filter((l) => l.type !== 'update_online_count');
      await until(async () => (await page.evaluate(() => (window as unknown as { log: Logged[] }).log)).length >= 1, 'the count in the page');

      const alice = await chatMember(server.ioUrl, 'alice', 'chat-1');
      const first = await v1Push(server.apiUrl, { to: 'web', event: 'note', data: 1, ttl: 600 });
      const hi = await chat(alice, 'chat-1', { text: 'hi' });
      await v1Push(server.apiUrl, { topic: 'chat-1', data: 'topic push' });
      const second = await v1Push(server.apiUrl, { to: 'web', event: 'note', data: 2, ttl: 600 });
      const after = await chat(alice, 'chat-1', 'after');
      await until(async () => (await log()).length === 5, 'five events in the page');

      // Chromium: an event without an id reports the last id it had, and keeps it
      const seen = await log();
      expect(seen.map((l) => [l.type, l.lastEventId])).to.deep.equal([
        ['note', first.id],
        ['client_message', first.id],
        ['message', first.id],
        ['note', second.id],
        ['client_message', second.id],
      ]);
      const messages = [seen[1]!, seen[4]!].map((l) => JSON.parse(l.data) as { data: unknown; meta: Record<string, unknown> });
      expect(messages.map((m) => m.data)).to.deep.equal([{ text: 'hi' }, 'after']);
      expect(messages.map((m) => m.meta)).to.deep.equal([
        { id: hi, ts: messages[0]!.meta.ts, uid: 'alice', client: true },
        { id: after, ts: messages[1]!.meta.ts, uid: 'alice', client: true },
      ]);
      expect(seen[2]!.data).to.equal('"topic push"');

      // the connection drops; EventSource reconnects with the last kept id, which acks both
      proxy.cut();
      await until(async () => (await pagesOf(server.apiUrl, 'web')) === 0, 'the dropped stream\'s page to go');
      await until(async () => (await storedIds(server.apiUrl, 'web')).length === 0, 'both kept messages acked by the reconnect', 15_000);
      expect(proxy.requests.at(-1)).to.match(new RegExp(`^last-event-id: ${second.id}$`, 'im'));
      const marker = await v1Push(server.apiUrl, { to: 'web', event: 'note', data: 'marker', ttl: 600 });
      await until(async () => (await log()).some((l) => l.lastEventId === marker.id), 'a push after the reconnect');
      expect((await log()).slice(5).filter((l) => l.type === 'note').map((l) => l.data)).to.deep.equal(['"marker"']);
    });
  });

  describe('cluster (two start.ts nodes on a real redis-server)', function () {
    this.timeout(60_000);
    let nodes: NodeProcess[];
    beforeEach(async function () {
      if (!REDIS_SERVER) return this.skip();
      const redis = await startRedis();
      onCleanup(() => redis.stop());
      nodes = await startNodeProcesses(['A', 'B'], redis.url, { PUSH_SECRET, CLIENT_PUBLISH_TOPICS: 'chat-*' });
    });

    it('a push through node A reaches a stream on node B, in order, a client message as client_message, and the online count counts the stream', async () => {
      const [a, b] = nodes as [NodeProcess, NodeProcess];
      const page = await chatMember(a.ioUrl, 'on-a', 'chat-1');
      const stream = await openStream(b.ioUrl, 'uid=on-b&topics=news,chat-1');
      await page.waitFor('update_online_count', (html) => html === countsHtml(2, 2), 10_000);
      await stream.waitFor((e) => e.event === 'update_online_count' && e.data === countsHtml(2, 2), 'the count with both pages');

      await publish(a.apiUrl, 'on-b', 'legacy <x>');
      const ids: string[] = [];
      for (let i = 0; i < 10; i++) ids.push((await v1Push(a.apiUrl, { to: 'on-b', event: 'note', data: i, ttl: 600 })).id);
      await v1Push(a.apiUrl, { topic: 'news', data: 'headline' });
      const said = await chat(page, 'chat-1', 'from node A');
      await publish(a.apiUrl, '', 'everyone');
      await stream.waitFor((e) => e.data === 'everyone', 'the broadcast from node A');
      const events = stream.events.filter((e) => e.event !== 'update_online_count');
      const fromA = events.find((e) => e.event === 'client_message');
      expect(fromA?.data).to.deep.include({ data: 'from node A' });
      expect((fromA!.data as { meta: unknown }).meta).to.deep.include({ id: said, uid: 'on-a', client: true });
      expect(events.map((e) => (e === fromA ? 'the client message' : e))).to.deep.equal([
        { event: 'new_msg', data: 'legacy &lt;x&gt;' },
        ...ids.map((id, i) => ({ event: 'note', data: i, id })),
        { event: 'message', data: 'headline' },
        'the client message',
        { event: 'new_msg', data: 'everyone' },
      ]);
      expect(await pagesOf(a.apiUrl, 'on-b')).to.equal(1);
    });
  });
});

/** A page of its own origin (not the server's), as a site embedding the stream has. */
function pageSite(): Promise<string> {
  const server: Server = createHttpServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>site</title>'));
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      onCleanup(() => new Promise((r) => server.close(r)));
      resolve(`http://127.0.0.1:${(server.address() as { port: number }).port}/`);
    });
  });
}

/** A TCP proxy to `port` whose connections the test can cut, as a network drop does. */
function tcpProxy(port: number): Promise<{ port: number; requests: string[]; cut(): void }> {
  const open = new Set<Socket>();
  const requests: string[] = [];
  const proxy = createNetServer((client) => {
    const upstream = connect(port, '127.0.0.1');
    open.add(client).add(upstream);
    client.once('data', (head: Buffer) => requests.push(head.toString('latin1')));
    client.pipe(upstream).pipe(client);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  });
  return new Promise((resolve) => {
    proxy.listen(0, '127.0.0.1', () => {
      onCleanup(() => {
        for (const s of open) s.destroy();
        return new Promise((r) => proxy.close(r));
      });
      resolve({ port: (proxy.address() as AddressInfo).port, requests, cut: () => open.forEach((s) => s.destroy()) });
    });
  });
}
