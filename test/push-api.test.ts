// The JSON API under /api/v1: stored messages with acks, idempotency, schedules, topics,
// batches and every validation error, against a real server and real clients.
import { expect } from 'chai';
import type { MessageMeta } from '../src/events.ts';
import { silentLogger } from '../src/log.ts';
import { idempotencyKeyBytes, MemoryMessageStore } from '../src/message-store.ts';
import { RedisMessageStore } from '../src/cluster/redis-store.ts';
import { MAX_CLAIMS, SCHEDULED_ATTEMPTS } from '../src/scheduler.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { connectClient, type ClientVersion } from './support/clients.ts';
import { recordingLogger } from './support/logger.ts';
import { REDIS_SERVER, startRedis, type TestRedis } from './support/redis-server.ts';
import { legacyPush, startServer, type TestServer } from './support/server.ts';
import { until } from './support/until.ts';
import { forEachEngine } from './support/engines.ts';
import { escapeHtml } from '../src/names.ts';
import { closeRedis, connectRedis } from '../src/cluster/redis-client.ts';
import { allPending } from './support/stored.ts';

/** Reading stored messages and scheduled pushes needs it (without it those routes answer 403). */
const SECRET = 'push-api-test-secret-0123';
const AUTH = { authorization: `Bearer ${SECRET}` };

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

async function v1(server: TestServer, path: string, body?: unknown, method = body === undefined ? 'GET' : 'POST'): Promise<Reply> {
  const res = await fetch(`${server.apiUrl}/api/v1${path}`, {
    method,
    headers: body === undefined ? AUTH : { ...AUTH, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}


async function storedFor(server: TestServer, uid: string): Promise<{ id: string; data: unknown }[]> {
  return (await v1(server, `/users/${encodeURIComponent(uid)}/messages`)).body.messages as { id: string; data: unknown }[];
}

// What the store and presence carry (stored messages, idempotency, scheduled pushes), on both.
forEachEngine('v1 push API', (start) => {
  let server: TestServer;
  beforeEach(async () => {
    server = await start({ pushSecret: SECRET });
  });
  afterEach(cleanupAll);

  describe('stored messages', () => {
    for (const version of ['v4', 'v2'] as ClientVersion[]) {
      it(`${version}: a message stored for an offline uid arrives once at login, and is gone once acked`, async () => {
        const push = await v1(server, '/push', { to: 'carol', data: { text: 'while you were away' }, ttl: 60 });
        expect(push.status).to.equal(200);
        expect(push.body).to.deep.include({ online: [], offline: ['carol'], stored: 1 });

        const first = await connectClient(version, server.ioUrl);
        const login = await first.request<{ ok: boolean; pending: number }>('login', 'carol');
        expect(login).to.deep.equal({ ok: true, uid: 'carol', pending: 1 });
        const [data, meta, ack] = await first.waitFor('message');
        expect(data).to.deep.equal({ text: 'while you were away' });
        expect(meta).to.include({ id: push.body.id, stored: true, redelivery: true });
        expect((meta as MessageMeta).ts).to.be.a('number');
        expect(first.received('message')).to.have.length(1);

        (ack as () => void)();
        await until(async () => (await storedFor(server, 'carol')).length === 0, 'the ack to remove it');
        first.close();
        const second = await connectClient(version, server.ioUrl);
        expect(await second.request('login', 'carol')).to.deep.equal({ ok: true, uid: 'carol', pending: 0 });
        expect(second.received('message')).to.have.length(0);
      });
    }

    it('comes again at the next login when it was not acked', async () => {
      await v1(server, '/push', { to: 'dave', data: 'again', ttl: 60 });
      for (let i = 0; i < 2; i++) {
        const c = await connectClient('v4', server.ioUrl);
        expect(await c.request('login', 'dave')).to.deep.include({ pending: 1 });
        expect((await c.waitFor('message'))[0]).to.equal('again');
        c.close();
      }
      expect(await storedFor(server, 'dave')).to.have.length(1);
    });

    it('goes live to an online uid with stored meta, and the ack removes it', async () => {
      const c = await connectClient('v4', server.ioUrl);
      await c.login('erin');
      const push = await v1(server, '/push', { to: ['erin', 'frank'], data: 42, ttl: 60 });
      expect(push.body).to.deep.include({ online: ['erin'], offline: ['frank'], stored: 2 });
      const [data, meta, ack] = await c.waitFor('message');
      expect(data).to.equal(42);
      expect(meta).to.deep.equal({ id: push.body.id, ts: (meta as MessageMeta).ts, stored: true });
      (ack as () => void)();
      await until(async () => (await storedFor(server, 'erin')).length === 0, 'the ack');
      expect(await storedFor(server, 'frank')).to.have.length(1); // frank has not acked
    });

    it('keeps the order of 1000 stored messages', async () => {
      const ids: string[] = [];
      for (let b = 0; b < 10; b++) {
        const messages = Array.from({ length: 100 }, (_, i) => ({ to: 'grace', data: b * 100 + i, ttl: 600 }));
        const res = await v1(server, '/push/batch', { messages });
        for (const r of res.body.results as { id: string; status: number }[]) {
          expect(r.status).to.equal(200);
          ids.push(r.id);
        }
      }
      const c = await connectClient('v4', server.ioUrl);
      expect(await c.request('login', 'grace')).to.deep.include({ pending: 1000 });
      // they come a window at a time: each ack lets the next one go
      let acked = 0;
      await until(() => {
        const got = c.received('message');
        for (; acked < got.length; acked++) (got[acked]![2] as () => void)();
        return got.length === 1000;
      }, 'all 1000 stored messages, acked as they come');
      const got = c.received('message');
      expect(got.map(([data]) => data)).to.deep.equal(Array.from({ length: 1000 }, (_, i) => i));
      expect(got.map(([, meta]) => (meta as MessageMeta).id)).to.deep.equal(ids);
    });

    it('never delivers an expired message', async () => {
      await v1(server, '/push', { to: 'heidi', data: 'short-lived', ttl: 0.2 });
      expect(await storedFor(server, 'heidi')).to.have.length(1);
      await until(async () => (await storedFor(server, 'heidi')).length === 0, 'expiry');
      const c = await connectClient('v4', server.ioUrl);
      expect(await c.request('login', 'heidi')).to.deep.include({ pending: 0 });
      expect(c.received('message')).to.have.length(0);
    });

    it('drops the oldest past MAX_PENDING_PER_UID', async () => {
      const small = await start({ maxPendingPerUid: 3, pushSecret: SECRET });
      for (let i = 0; i < 5; i++) await v1(small, '/push', { to: 'ivan', data: i, ttl: 60 });
      expect((await storedFor(small, 'ivan')).map((m) => m.data)).to.deep.equal([2, 3, 4]);
    });
  });

  it('delivers a push with one idempotency key once', async () => {
    const c = await connectClient('v4', server.ioUrl);
    await c.login('judy');
    const first = await v1(server, '/push', { to: 'judy', data: 'once', id: 'order-17-shipped' });
    const again = await v1(server, '/push', { to: 'judy', data: 'once', id: 'order-17-shipped' });
    expect(first.body).to.deep.equal({ id: 'order-17-shipped', online: ['judy'], offline: [], stored: 0 });
    // the id keeps a compact answer: counts, not the uid lists
    expect(again.body).to.deep.equal({ id: 'order-17-shipped', onlineCount: 1, offlineCount: 0, stored: 0, duplicate: true });
    await v1(server, '/push', { to: 'judy', data: 'next' });
    await c.waitFor('message', (d) => d === 'next');
    expect(c.received('message').map(([d]) => d)).to.deep.equal(['once', 'next']);
  });

  describe('scheduled pushes', () => {
    it('fires within 1 s of its time, by delay or at', async () => {
      const c = await connectClient('v4', server.ioUrl);
      await c.login('kim');
      const byDelay = await v1(server, '/push', { to: 'kim', data: 'by delay', delay: 0.3 });
      const atTime = new Date(Date.now() + 400).toISOString();
      const byAt = await v1(server, '/push', { to: 'kim', data: 'by at', at: atTime });
      expect(byDelay.status).to.equal(202);
      expect(byAt).to.deep.equal({ status: 202, body: { id: byAt.body.id, at: atTime } });
      for (const [data, answer] of [['by delay', byDelay], ['by at', byAt]] as const) {
        await c.waitFor('message', (d) => d === data);
        const late = Date.now() - Date.parse(answer.body.at as string);
        expect(late, `${data} late by ${late} ms`).to.be.within(-20, 1000);
      }
      // listed (under its claim) until the node confirms it made it
      await until(async () => ((await v1(server, '/scheduled')).body.scheduled as unknown[]).length === 0, 'the pushes to be confirmed');
    });

    it('lists waiting pushes, and a cancelled one never fires', async () => {
      const c = await connectClient('v4', server.ioUrl);
      await c.login('lee');
      const cancelled = await v1(server, '/push', { to: 'lee', data: 'never', delay: 0.3, id: 'cancel-me' });
      const kept = await v1(server, '/push', { to: 'lee', data: 'later', delay: 0.6 });
      const listed = (await v1(server, '/scheduled')).body.scheduled as { id: string; data: unknown }[];
      expect(listed.map((s) => s.id)).to.deep.equal(['cancel-me', kept.body.id]);
      expect(await v1(server, '/scheduled/cancel-me', undefined, 'DELETE')).to.deep.equal({
        status: 200,
        body: { id: 'cancel-me', cancelled: true },
      });
      expect((await v1(server, '/scheduled/cancel-me', undefined, 'DELETE')).status).to.equal(404);
      await c.waitFor('message', (d) => d === 'later'); // past the cancelled one's time
      expect(c.received('message').map(([d]) => d)).to.deep.equal(['later']);
      expect(cancelled.status).to.equal(202);
    });
  });
});

describe('v1 push API (memory only)', () => {
  let server: TestServer;
  beforeEach(async () => {
    server = await startServer({ pushSecret: SECRET });
  });
  afterEach(cleanupAll);

  describe('bounds and failed pushes', () => {
    /** The measured case: 1000 uids in `to` and 64 KiB of data. */
    const bigPush = (id: string) => ({
      id,
      to: Array.from({ length: 1000 }, (_, i) => `user-${String(i).padStart(6, '0')}@example.com`),
      data: { text: 'x'.repeat(64 * 1024 - 20) },
      delay: 60,
    });

    it('a push refused at MAX_SCHEDULED releases its id: the retry is scheduled, not answered as a duplicate', async () => {
      const small = await startServer({ maxScheduled: 3, pushSecret: SECRET });
      for (let i = 0; i < 3; i++) expect((await v1(small, '/push', { to: 'u', data: i, delay: 60 })).status).to.equal(202);
      const refused = await v1(small, '/push', { to: 'u', data: 'retry me', delay: 60, id: 'order-9' });
      expect(refused.status).to.equal(503);
      expect((refused.body.error as { message: string }).message).to.include('MAX_SCHEDULED');
      const first = (await v1(small, '/scheduled')).body.scheduled as { id: string }[];
      expect((await v1(small, `/scheduled/${first[0]!.id}`, undefined, 'DELETE')).status).to.equal(200);
      const retry = await v1(small, '/push', { to: 'u', data: 'retry me', delay: 60, id: 'order-9' });
      expect(retry).to.deep.equal({ status: 202, body: { id: 'order-9', at: retry.body.at } });
      const listed = (await v1(small, '/scheduled')).body.scheduled as { id: string }[];
      expect(listed.map((s) => s.id)).to.include('order-9');
      // made now, its id is kept: the next retry is the duplicate
      expect((await v1(small, '/push', { to: 'u', data: 'retry me', delay: 60, id: 'order-9' })).body).to.include({ duplicate: true });
    });

    it('counts the bytes of scheduled pushes against MAX_SCHEDULED_BYTES: just under is kept, just over answers 503', async () => {
      const sized = await startServer({ maxScheduledBytes: 200_000, pushSecret: SECRET });
      // each is about 92 KB as JSON: two fit in 200 000 bytes, a third does not
      expect((await v1(sized, '/push', bigPush('big-1'))).status).to.equal(202);
      expect((await v1(sized, '/push', bigPush('big-2'))).status).to.equal(202);
      const over = await v1(sized, '/push', bigPush('big-3'));
      expect(over.status).to.equal(503);
      expect((over.body.error as { message: string }).message).to.include('MAX_SCHEDULED_BYTES');
      // a small one still fits, and the refused id is free for its retry
      expect((await v1(sized, '/push', { to: 'u', data: 1, delay: 60 })).status).to.equal(202);
      expect((await v1(sized, '/scheduled/big-1', undefined, 'DELETE')).status).to.equal(200);
      expect(await v1(sized, '/push', bigPush('big-3'))).to.deep.include({ status: 202 });
    });

    it('refuses a new push id past MAX_IDEMPOTENCY_BYTES with 503, and still knows every id it kept', async () => {
      const ids = ['id-a', 'id-b', 'id-c'];
      const sized = await startServer({ maxIdempotencyBytes: 2 * idempotencyKeyBytes('id-a'), pushSecret: SECRET });
      for (const id of ids.slice(0, 2)) expect((await v1(sized, '/push', { to: 'u', data: 1, id })).status).to.equal(200);
      const over = await v1(sized, '/push', { to: 'u', data: 1, id: ids[2] });
      expect(over.status).to.equal(503);
      expect((over.body.error as { message: string }).message).to.include('MAX_IDEMPOTENCY_BYTES');
      for (const id of ids.slice(0, 2)) expect((await v1(sized, '/push', { to: 'u', data: 1, id })).body).to.include({ duplicate: true });
      expect((await v1(sized, '/push', { to: 'u', data: 1 })).status).to.equal(200); // without an id: made
    });

    it('keeps a compact answer for an id, whatever the push named', async () => {
      const to = Array.from({ length: 1000 }, (_, i) => `uid-${i}`);
      const first = await v1(server, '/push', { to, data: 1, ttl: 60, id: 'wide' });
      expect(first.body.offline).to.have.length(1000);
      const again = await v1(server, '/push', { to, data: 1, ttl: 60, id: 'wide' });
      expect(again.body).to.deep.equal({ id: 'wide', onlineCount: 0, offlineCount: 1000, stored: 1000, duplicate: true });
    });

    it('pages GET /scheduled with cursor and limit, soonest first', async () => {
      for (let i = 5; i >= 1; i--) await v1(server, '/push', { to: 'u', data: i, delay: 10 + i, id: `s${i}` });
      const seen: string[][] = [];
      let cursor: string | null = null;
      do {
        const query: string = cursor === null ? '?limit=2' : `?limit=2&cursor=${encodeURIComponent(cursor)}`;
        const page = await v1(server, `/scheduled${query}`);
        expect(page.status).to.equal(200);
        seen.push((page.body.scheduled as { id: string }[]).map((s) => s.id));
        cursor = page.body.cursor as string | null;
      } while (cursor !== null && seen.length < 10);
      expect(seen).to.deep.equal([['s1', 's2'], ['s3', 's4'], ['s5']]);
      expect((await v1(server, '/scheduled')).body).to.deep.include({ cursor: null });
      for (const bad of ['limit=0', 'limit=1001', 'limit=x', 'cursor=nonsense', 'limit=1&limit=2']) {
        const answer = await v1(server, `/scheduled?${bad}`);
        expect(answer.status, bad).to.equal(400);
      }
    });
  });

  describe('scheduled pushes: claim then fire', () => {
    const LIMITS = { maxPendingPerUid: 10, maxBytes: 1 << 20, maxScheduled: 10, maxScheduledBytes: 1 << 20, maxIdempotencyBytes: 1 << 20 };
    const spec = (id: string, to: string) => ({ id, to: [to], event: 'message', data: id, ttlMs: 60_000, bytes: 10 });

    it('makes a push again with the same id when the node that claimed it died: stored once, live twice', async () => {
      const store = new MemoryMessageStore(LIMITS);
      onCleanup(() => store.close()); // the test's, not the server's: closed after it
      const log = recordingLogger();
      // a node claimed the push and stored its message, then died before confirming it
      await store.schedule({ at: Date.now() - 10, spec: spec('twice', 'ann') });
      const lease = Date.now() + 300;
      const [dead] = await store.claimDue(Date.now(), lease, 10);
      const ts = Date.now();
      expect(await store.add(['ann'], { id: 'twice', event: 'message', data: 'twice', ts, expiresAt: ts + 60_000 }, 100)).to.equal(1);
      const live = await startServer({ pushSecret: SECRET }, { store, log });
      const page = await connectClient('v4', live.ioUrl);
      await page.login('ann'); // the stored message comes at login
      await until(() => log.lines.some((l) => l.includes('scheduled push twice: claimed again (claim 2)')), 'the lease to run out');
      expect(Date.now()).to.be.at.least(lease);
      await until(() => page.received('message').length === 2, 'the live emit');
      // the same id both times: the SDK drops the second
      expect(page.received('message').map(([d, meta]) => [d, (meta as MessageMeta).id])).to.deep.equal([['twice', 'twice'], ['twice', 'twice']]);
      expect((await allPending(store, 'ann')).map((m) => m.id)).to.deep.equal(['twice']);
      await until(async () => (await store.stats()).scheduled === 0, 'the push to be confirmed');
      expect(await store.fired([dead!])).to.equal(0);
    });

    it(`gives a push up after ${MAX_CLAIMS} claims never confirmed (its making kills the node), logged and counted`, async () => {
      const store = new MemoryMessageStore(LIMITS);
      onCleanup(() => store.close());
      const log = recordingLogger();
      const t0 = Date.now() - 1000;
      await store.schedule({ at: t0, spec: spec('poison', 'bob') });
      // claimed by nodes that each died making it, every lease run out already
      for (let i = 1; i <= MAX_CLAIMS; i++) expect((await store.claimDue(t0 + i, t0 + i + 1, 10))[0]).to.deep.include({ claims: i });
      const live = await startServer({ pushSecret: SECRET }, { store, log });
      await until(() => log.lines.some((l) => l.startsWith('error: scheduled push poison dropped')), 'the push to be given up');
      expect(log.lines.find((l) => l.includes('poison'))).to.include(`claimed ${MAX_CLAIMS + 1} times`);
      await until(async () => (await store.stats()).scheduled === 0, 'the push to be removed');
      expect(await allPending(store, 'bob')).to.deep.equal([]);
      expect(await (await fetch(`${live.apiUrl}/metrics`)).text()).to.match(/^push_scheduled_dropped_total 1$/m);
    });
  });

  describe('topics and events', () => {
    it('reaches the sockets subscribed to a topic, until they unsubscribe', async () => {
      const a = await connectClient('v4', server.ioUrl);
      const b = await connectClient('v2', server.ioUrl);
      expect(await a.request('subscribe', 'news')).to.deep.equal({ ok: true, topics: ['news'] });
      expect(await b.request('subscribe', ['sports', 'news'])).to.deep.equal({ ok: true, topics: ['sports', 'news'] });
      await v1(server, '/push', { topic: 'sports', data: 'goal' });
      await v1(server, '/push', { topic: 'news', data: 'headline' });
      expect((await b.waitFor('message'))[0]).to.equal('goal');
      expect((await b.waitFor('message'))[0]).to.equal('headline');
      expect((await a.waitFor('message'))[0]).to.equal('headline');

      expect(await a.request('unsubscribe', 'news')).to.deep.equal({ ok: true, topics: [] });
      await v1(server, '/push', { topic: 'news', data: 'second' });
      await v1(server, '/push', { data: 'to everyone' });
      await a.waitFor('message', (d) => d === 'to everyone');
      expect(a.received('message').map(([d]) => d)).to.deep.equal(['headline', 'to everyone']);
    });

    it('refuses bad topics and more than MAX_TOPICS_PER_SOCKET', async () => {
      const small = await startServer({ maxTopicsPerSocket: 2 });
      const a = await connectClient('v4', small.ioUrl);
      expect(await a.request('subscribe', 'bad topic!')).to.deep.equal({
        ok: false,
        error: { code: 'invalid_topic', message: 'topic may hold only letters, digits and _ . : @ / -' },
      });
      expect(await a.request('subscribe', ['t1', 't2'])).to.deep.include({ ok: true });
      expect(await a.request('subscribe', 't3')).to.deep.equal({
        ok: false,
        error: { code: 'too_many_topics', message: 'at most 2 topics per connection' },
      });
    });

    it('sends its own event name with data as is, to both client versions', async () => {
      for (const version of ['v4', 'v2'] as ClientVersion[]) {
        const c = (await connectClient(version, server.ioUrl)).track('order.updated');
        await c.login(`user-${version}`);
        const data = { order: 17, status: 'shipped', html: '<b>not escaped</b>', list: [1, null, true] };
        const push = await v1(server, '/push', { to: `user-${version}`, event: 'order.updated', data });
        const [got, meta] = await c.waitFor('order.updated');
        expect(got).to.deep.equal(data);
        expect(meta).to.deep.equal({ id: push.body.id, ts: (meta as MessageMeta).ts });
      }
    });
  });

  describe('batch', () => {
    it('answers one result per message, in order', async () => {
      const res = await v1(server, '/push/batch', {
        messages: [{ to: 'a', data: 1 }, { to: 'b', data: 2, bogus: 1 }, { topic: 't', data: 3, delay: 5 }],
      });
      expect(res.status).to.equal(200);
      const results = res.body.results as Record<string, unknown>[];
      expect(results.map((r) => r.status)).to.deep.equal([200, 400, 202]);
      expect(results[1]).to.deep.equal({
        status: 400,
        error: { code: 'invalid_request', message: 'bogus is not a known field', field: 'bogus' },
      });
    });

    it('refuses an empty batch, too many messages and unknown fields', async () => {
      const small = await startServer({ maxBatchMessages: 2 });
      for (const [body, field] of [
        [{ messages: [] }, 'messages'],
        [{ messages: [{ data: 1 }, { data: 2 }, { data: 3 }] }, 'messages'],
        [{ messages: [{ data: 1 }], extra: true }, 'extra'],
        [{}, 'messages'],
      ] as const) {
        const res = await v1(small, '/push/batch', body);
        expect(res.status).to.equal(400);
        expect((res.body.error as { field: string }).field).to.equal(field);
      }
    });
  });

  describe('legacy pages: new_msg gets only escaped text', () => {
    const XSS = '<img src=x onerror=alert(1)> & "q" \'s\'';
    const ESCAPED = '&lt;img src=x onerror=alert(1)&gt; &amp; &quot;q&quot; &#039;s&#039;';

    it('escapes as the legacy API does (PHP htmlspecialchars)', async () => {
      const c = await connectClient('v4', server.ioUrl);
      await c.login('php');
      expect(await legacyPush(server.apiUrl, { type: 'publish', to: 'php', content: XSS, secret: SECRET })).to.deep.equal({ status: 200, body: 'ok' });
      expect((await c.waitFor('new_msg'))[0]).to.equal(ESCAPED);
      expect(escapeHtml(XSS)).to.equal(ESCAPED);
    });

    for (const version of ['v4', 'v2'] as ClientVersion[]) {
      it(`${version}: a v1 push that names no event arrives on message as sent, never on new_msg`, async () => {
        const c = await connectClient(version, server.ioUrl);
        await c.login('page');
        const push = await v1(server, '/push', { to: 'page', data: XSS });
        expect(push.status).to.equal(200);
        const [data, meta] = await c.waitFor('message');
        expect(data).to.equal(XSS); // v1 data is delivered as given, on its own event
        expect(meta).to.deep.include({ id: push.body.id });
        await v1(server, '/push', { data: XSS }); // to everyone
        await c.waitFor('message', (d) => d === XSS);
        expect(await legacyPush(server.apiUrl, { type: 'publish', to: 'page', content: 'marker', secret: SECRET })).to.deep.equal({ status: 200, body: 'ok' });
        await c.waitFor('new_msg', (d) => d === 'marker'); // in order after the v1 pushes
        expect(c.received('new_msg').map(([d]) => d)).to.deep.equal(['marker']);
      });

      it(`${version}: a v1 push that names new_msg arrives escaped on every path: to, batch, scheduled, stored, topic, everyone`, async () => {
        const live = await connectClient(version, server.ioUrl);
        await live.login('legacy');
        expect(await live.request('subscribe', 'news')).to.deep.include({ ok: true });
        const pushes: unknown[] = [
          { to: 'legacy', event: 'new_msg', data: `${XSS} to` },
          { to: 'legacy', event: 'new_msg', data: `${XSS} kept`, ttl: 60 },
          { topic: 'news', event: 'new_msg', data: `${XSS} topic` },
          { event: 'new_msg', data: `${XSS} everyone` },
        ];
        for (const push of pushes) expect((await v1(server, '/push', push)).status).to.equal(200);
        const batch = await v1(server, '/push/batch', { messages: [{ to: 'legacy', event: 'new_msg', data: `${XSS} batch` }] });
        expect(batch.body.results).to.have.nested.property('[0].status', 200);
        const scheduled = await v1(server, '/push', { to: 'legacy', event: 'new_msg', data: `${XSS} scheduled`, delay: 0.05 });
        expect(scheduled.status).to.equal(202);

        const tags = ['to', 'kept', 'topic', 'everyone', 'batch', 'scheduled'];
        for (const tag of tags) await live.waitFor('new_msg', (d) => d === `${ESCAPED} ${tag}`);
        // stored escaped: the listing and a later login's redelivery show the same safe text
        expect((await storedFor(server, 'legacy')).map((m) => m.data)).to.deep.equal([`${ESCAPED} kept`]);
        const later = await connectClient(version, server.ioUrl);
        expect(await later.request('login', 'legacy')).to.deep.include({ ok: true, pending: 1 });
        const [again, meta] = await later.waitFor('new_msg');
        expect(again).to.equal(`${ESCAPED} kept`);
        expect(meta).to.deep.include({ redelivery: true });
        for (const c of [live, later]) {
          for (const [d] of c.received('new_msg')) expect(d as string).not.to.match(/[<>"']/);
        }
      });
    }

    it('keeps a scheduled new_msg push escaped while it waits', async () => {
      const push = await v1(server, '/push', { to: 'u', event: 'new_msg', data: XSS, delay: 60 });
      expect(push.status).to.equal(202);
      const listed = (await v1(server, '/scheduled')).body.scheduled as { data: unknown }[];
      expect(listed.map((s) => s.data)).to.deep.equal([ESCAPED]);
    });

    it('refuses a v1 push that names new_msg with data that is not a string: 400 naming data', async () => {
      for (const data of [{ html: '<b>' }, ['<b>'], 42, null, true]) {
        const res = await v1(server, '/push', { to: 'u', event: 'new_msg', data });
        expect(res.status, JSON.stringify(data)).to.equal(400);
        expect(res.body.error).to.deep.include({ code: 'invalid_request', field: 'data' });
        expect((res.body.error as { message: string }).message).to.match(/^data must be a string with event new_msg/);
      }
      const batch = await v1(server, '/push/batch', { messages: [{ event: 'new_msg', data: { a: 1 } }] });
      expect(batch.body.results).to.have.nested.property('[0].status', 400);
      expect((await v1(server, '/scheduled')).body.scheduled).to.deep.equal([]);
    });

    it('accepts message, the default event, when it is named', async () => {
      const c = await connectClient('v2', server.ioUrl);
      await c.login('named');
      expect((await v1(server, '/push', { to: 'named', event: 'message', data: { a: 1 } })).status).to.equal(200);
      expect((await c.waitFor('message'))[0]).to.deep.equal({ a: 1 });
    });

    it('escapes, when it sends them, new_msg messages stored or scheduled unescaped by an older version', async () => {
      const store = new MemoryMessageStore({ maxPendingPerUid: 10, maxBytes: 1 << 20, maxScheduled: 10, maxScheduledBytes: 1 << 20, maxIdempotencyBytes: 1 << 20 });
      onCleanup(() => store.close()); // the test's, not the server's: closed after it
      const old = await startServer({}, { store });
      const ts = Date.now();
      await store.add(['old'], { id: 'raw-text', event: 'new_msg', data: XSS, ts, expiresAt: ts + 60_000 }, 100);
      await store.add(['old'], { id: 'raw-json', event: 'new_msg', data: { html: '<b>' }, ts, expiresAt: ts + 60_000 }, 100);
      const c = await connectClient('v4', old.ioUrl);
      await c.login('old');
      await store.schedule({ at: Date.now(), spec: { id: 'raw-scheduled', to: ['old'], event: 'new_msg', data: XSS, ttlMs: 0, bytes: 100 } });
      await c.waitFor('new_msg', (_d, meta) => (meta as MessageMeta).id === 'raw-scheduled');
      const got = Object.fromEntries(c.received('new_msg').map(([d, meta]) => [(meta as MessageMeta).id, d]));
      expect(got).to.deep.equal({ 'raw-text': ESCAPED, 'raw-json': '{&quot;html&quot;:&quot;&lt;b&gt;&quot;}', 'raw-scheduled': ESCAPED });
    });
  });

  describe('errors', () => {
    const cases: [string, unknown, number, string][] = [
      ['no data', { to: 'a' }, 400, 'data'],
      ['unknown field', { data: 1, color: 'red' }, 400, 'color'],
      ['empty to list', { to: [], data: 1 }, 400, 'to'],
      ['object uid', { to: [{}], data: 1 }, 400, 'to.0'],
      ['to and topic', { to: 'a', topic: 't', data: 1 }, 400, 'topic'],
      ['bad topic', { topic: 'a b', data: 1 }, 400, 'topic'],
      ['reserved event', { event: 'disconnect', data: 1 }, 400, 'event'],
      ['bad event', { event: '1x', data: 1 }, 400, 'event'],
      ['negative ttl', { to: 'a', data: 1, ttl: -1 }, 400, 'ttl'],
      ['ttl for everyone', { data: 1, ttl: 5 }, 400, 'ttl'],
      ['string ttl', { to: 'a', data: 1, ttl: '5' }, 400, 'ttl'],
      ['bad id', { data: 1, id: 'has space' }, 400, 'id'],
      ['delay and at', { data: 1, delay: 1, at: '2030-01-01T00:00:00Z' }, 400, 'at'],
      ['bad at', { data: 1, at: 'tomorrow' }, 400, 'at'],
      ['at too far', { data: 1, at: '2999-01-01T00:00:00Z' }, 400, 'at'],
      ['delay too far', { data: 1, delay: 1e9 }, 400, 'delay'],
      ['data too big', { data: 'x'.repeat(70_000) }, 413, 'data'],
    ];
    for (const [name, body, status, field] of cases) {
      it(`${name}: ${status} naming ${field}`, async () => {
        const res = await v1(server, '/push', body);
        expect(res.status).to.equal(status);
        const error = res.body.error as { field: string; message: string; code: string };
        expect(error.field).to.equal(field);
        expect(error.message.startsWith(field.split('.')[0]!)).to.equal(true, error.message);
      });
    }

    it('answers JSON for routes, methods, content types and malformed bodies', async () => {
      expect(await v1(server, '/nope')).to.deep.equal({
        status: 404,
        body: { error: { code: 'not_found', message: 'no API route GET /api/v1/nope' } },
      });
      const wrongMethod = await fetch(`${server.apiUrl}/api/v1/push`, { headers: AUTH });
      expect(wrongMethod.status).to.equal(405);
      expect(wrongMethod.headers.get('allow')).to.equal('POST');
      const form = await fetch(`${server.apiUrl}/api/v1/push`, { method: 'POST', headers: AUTH, body: new URLSearchParams({ data: '1' }) });
      expect(form.status).to.equal(415);
      const broken = await fetch(`${server.apiUrl}/api/v1/push`, {
        method: 'POST',
        headers: { ...AUTH, 'content-type': 'application/json' },
        body: '{"data": ',
      });
      expect(broken.status).to.equal(400);
      expect(((await broken.json()) as { error: { message: string } }).error.message).to.match(/^malformed body/);
    });

    it('leaves every other path to the legacy endpoint', async () => {
      const c = await connectClient('v4', server.ioUrl);
      await c.login('m');
      for (const path of ['/api', '/api/v2/push', '/apiv1']) {
        expect(await legacyPush(server.apiUrl, { type: 'publish', to: 'm', content: path, secret: SECRET }, 'get', path))
          .to.deep.equal({ status: 200, body: 'ok' });
      }
      expect(c.received('new_msg').length).to.be.at.most(3);
      await c.waitFor('new_msg', (d) => d === '/apiv1');
    });
  });
});

describe('v1 push API on Redis: failures', () => {
  let redis: TestRedis;
  before(async function () {
    if (!REDIS_SERVER) return this.skip();
    redis = await startRedis();
  });
  after(() => redis?.stop());
  afterEach(cleanupAll);

  /** A client of the test's own, to break (and mend) the server's keys with a real store error. */
  async function direct() {
    const client = await connectRedis(redis.url, silentLogger);
    onCleanup(() => closeRedis(client));
    await client.flushAll();
    return client;
  }

  it('a push that fails on a store error releases its id: the retry is made, not answered as a duplicate', async () => {
    const client = await direct();
    const server = await startServer({ redisUrl: redis.url, pushSecret: SECRET });
    // the schedule's hash holds a string: Redis answers WRONGTYPE to the schedule, after the claim
    await client.set('push:specs', 'not a hash');
    const failed = await v1(server, '/push', { to: 'u', data: 'again', delay: 60, id: 'order-10' });
    expect(failed.status).to.equal(503);
    await client.del('push:specs');
    const retry = await v1(server, '/push', { to: 'u', data: 'again', delay: 60, id: 'order-10' });
    expect(retry).to.deep.equal({ status: 202, body: { id: 'order-10', at: retry.body.at } });
    expect(((await v1(server, '/scheduled')).body.scheduled as { id: string }[]).map((s) => s.id)).to.deep.equal(['order-10']);
  });

  it('a scheduled push whose delivery fails is put back and fires once when the store works again', async () => {
    const client = await direct();
    const log = recordingLogger();
    const server = await startServer({ redisUrl: redis.url, pushSecret: SECRET }, { log });
    const page = await connectClient('v4', server.ioUrl);
    await page.login('sched-u');
    // the uid's message queue holds a string: storing the message fails with WRONGTYPE
    await client.set('push:q:sched-u', 'not a sorted set');
    const accepted = await v1(server, '/push', { to: 'sched-u', data: 'once', ttl: 60, delay: 0.05, id: 'sched-1' });
    expect(accepted.status).to.equal(202);
    await until(() => log.lines.some((l) => l.startsWith('warn: scheduled push sched-1: delivery failed')), 'the failed delivery');
    // put back, not dropped: it waits again for its retry
    const waiting = (await v1(server, '/scheduled')).body.scheduled as { id: string }[];
    expect(waiting.map((s) => s.id)).to.deep.equal(['sched-1']);
    expect(page.received('message')).to.have.length(0);
    await client.del('push:q:sched-u');
    await page.waitFor('message', (d) => d === 'once');
    // removed once the scheduler confirms it made it (claim, fire, confirm): just after the emit
    await until(async () => ((await v1(server, '/scheduled')).body.scheduled as unknown[]).length === 0, 'the push confirmed made');
    expect(((await v1(server, '/users/sched-u/messages')).body.messages as unknown[]).length).to.equal(1);
    expect(page.received('message')).to.have.length(1);
    expect(log.lines.filter((l) => l.includes('sched-1'))).to.have.length(1);
  });

  it('gives a scheduled push up after SCHEDULED_ATTEMPTS failed deliveries, logged and counted', async () => {
    const client = await direct();
    const log = recordingLogger();
    const server = await startServer({ redisUrl: redis.url, pushSecret: SECRET }, { log });
    await client.set('push:q:gone-u', 'not a sorted set');
    // a push that failed every time but its last: put in as the scheduler leaves it
    const store = new RedisMessageStore(client, { maxPendingPerUid: 10, maxBytes: 1 << 20, maxScheduled: 10, maxScheduledBytes: 1 << 20, maxIdempotencyBytes: 1 << 20 }, silentLogger);
    onCleanup(() => store.close());
    const spec = { id: 'doomed', to: ['gone-u'], event: 'message', data: 1, ttlMs: 60_000, bytes: 1 };
    expect(await store.schedule({ at: Date.now(), spec, attempts: SCHEDULED_ATTEMPTS - 1 })).to.equal('scheduled');
    await until(() => log.lines.some((l) => l.startsWith('error: scheduled push doomed dropped')), 'the push to be given up');
    expect(log.lines.find((l) => l.includes('doomed'))).to.include(`failed ${SCHEDULED_ATTEMPTS} times`);
    expect((await store.stats()).scheduled).to.equal(0);
    const metrics = await (await fetch(`${server.apiUrl}/metrics`)).text();
    expect(metrics).to.match(/^push_scheduled_dropped_total 1$/m);
  });
});
