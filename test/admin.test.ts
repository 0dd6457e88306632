// The admin page's API on the web port (ADMIN_TOKEN): figures, the last hour of samples, the
// uid lookup and the test push, on one node and cluster-wide on two nodes of a real
// redis-server; and the bounds of what each node keeps for it.
import { expect } from 'chai';
import { History, MAX_SAMPLES } from '../src/admin/history.ts';
import { NodeStats, RECENT_WEBHOOK_EVENT_BYTES } from '../src/admin/node-stats.ts';
import { MAX_ADMIN_SESSIONS, MemoryAdminSessions } from '../src/admin/sessions.ts';
import { guessKey, MAX_GUESSING_ADDRESSES, SIGN_IN_GUESSES, SignInThrottle } from '../src/admin/sign-in-throttle.ts';
import type { Config } from '../src/config.ts';
import type { WebhookEvent } from '../src/webhooks/events.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { connectClient } from './support/clients.ts';
import { rawRequest, type RawResponse } from './support/http.ts';
import { REDIS_SERVER, startRedis, type TestRedis } from './support/redis-server.ts';
import { legacyPush, startServer, type TestServer } from './support/server.ts';
import { SseClient } from './support/sse-client.ts';
import { until } from './support/until.ts';
import { closedPortUrl } from './support/webhook-receiver.ts';

const TOKEN = 'admin-test-token-0123456789';
const BEARER = { authorization: `Bearer ${TOKEN}` };

function start(overrides: Partial<Config> = {}): Promise<TestServer> {
  return startServer({ webPort: 0, adminToken: TOKEN, ...overrides });
}

async function get<T>(server: TestServer, path: string, headers: Record<string, string> = BEARER): Promise<{ status: number; body: T }> {
  const res = await fetch(server.webUrl + path, { headers });
  return { status: res.status, body: (await res.json()) as T };
}

async function post<T>(server: TestServer, body: unknown, headers: Record<string, string> = BEARER): Promise<{ status: number; body: T }> {
  const res = await fetch(server.webUrl + '/admin/push', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as T };
}

/** Signs in by the form; resolves the session cookie. */
async function signIn(server: TestServer): Promise<string> {
  const res = await fetch(server.webUrl + '/admin', { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${TOKEN}` });
  return res.headers.get('set-cookie')!.split(';')[0]!;
}

interface Lookup {
  uid: string;
  online: boolean;
  pages: number;
  transports: { websocket: number; polling: number; sse: number };
  stored: { count: number; messages: { id: string; preview: string }[] } | null;
  webhookEvents: { type: string; outcome: string; detail?: string }[];
  scope: string;
  nodes: number;
  complete: boolean;
}

interface Snapshot {
  users: number;
  pages: number;
  pushes: number;
  pushesPerSecond: number;
  backlog: { messages: number } | null;
  scope: string;
  nodes: number;
  csrf?: string;
}

interface HistoryAnswer {
  sampleMs: number;
  samples: { t: number; users: number | null; pages: number | null; pushes: number; backlog: number | null; webhookFailures: number }[];
  scope: string;
  nodes: number;
}

const event = (uid: string): WebhookEvent => ({ id: 'x', time: new Date().toISOString(), type: 'user.online', uid });

describe('admin page API', function () {
  this.timeout(20_000);
  afterEach(cleanupAll);

  it('keeps the last hour of samples in a fixed number of slots, whatever the interval', () => {
    let now = 1_000_000_000_000;
    const stats = new NodeStats({ sampleMs: 10_000 }, () => now);
    expect(stats.history.capacity).to.equal(360);
    for (let i = 0; i < 1000; i++) {
      stats.pushed();
      stats.sample({ users: i, pages: i, backlog: 0 });
      now += 10_000;
    }
    const { samples } = stats.history.toJSON(now);
    expect(samples).to.have.length(359); // the hour before now: the oldest slot is an hour old
    expect(samples.at(-1)).to.deep.include({ users: 999, pushes: 1 });
    expect(new History(100).capacity).to.equal(MAX_SAMPLES);
  });

  it('keeps recent webhook events within RECENT_WEBHOOK_EVENT_BYTES, the newest first', () => {
    const stats = new NodeStats({ sampleMs: 10_000 });
    const long = 'e'.repeat(10_000);
    for (let i = 0; i < 20_000; i++) stats.webhook(event(`u${i % 50}`), 'failed', long);
    expect(stats.webhookEventBytes).to.be.at.most(RECENT_WEBHOOK_EVENT_BYTES);
    expect(stats.webhookEventBytes).to.be.above(RECENT_WEBHOOK_EVENT_BYTES / 2);
    const mine = stats.webhookEventsOf('u49');
    expect(mine.length).to.be.above(0);
    expect(mine[0]!.detail).to.have.length(200); // an error text is cut
    expect(stats.summary().webhookFailures).to.have.length(20);
  });

  it('looks a uid up: pages by transport (websocket, polling, sse), stored messages, recent webhook events', async () => {
    const server = await start({ webhookUrl: [await closedPortUrl()], webhookGraceMs: 50 });
    const ws = await connectClient('v4', server.ioUrl, ['websocket']);
    await ws.login('look');
    const polling = await connectClient('v2', server.ioUrl, ['polling']);
    await polling.login('look');
    const sse = await SseClient.open(`${server.ioUrl}/events?uid=look`);
    expect(sse.status).to.equal(200);
    await fetch(`${server.apiUrl}/api/v1/push`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ to: 'away', data: { n: 1 }, ttl: 60 }) });

    await until(async () => (await get<Lookup>(server, '/admin/users?uid=look')).body.pages === 3, 'three pages of look');
    const look = (await get<Lookup>(server, '/admin/users?uid=look')).body;
    expect(look).to.deep.include({ uid: 'look', online: true, transports: { websocket: 1, polling: 1, sse: 1 }, scope: 'node', nodes: 1, complete: true });
    // user.online to a receiver that is down: failed attempts, shown for this uid
    await until(async () => (await get<Lookup>(server, '/admin/users?uid=look')).body.webhookEvents.length > 0, 'a webhook event of look');
    const events = (await get<Lookup>(server, '/admin/users?uid=look')).body.webhookEvents;
    expect(events[0]).to.deep.include({ type: 'user.online', outcome: 'failed' });

    const away = (await get<Lookup>(server, '/admin/users?uid=away')).body;
    expect(away).to.deep.include({ online: false, pages: 0 });
    expect(away.stored!.count).to.equal(1);
    expect(away.stored!.messages[0]!.preview).to.equal('{"n":1}');
    expect(away.webhookEvents).to.deep.equal([]);

    // bad or missing uid: a reason; no token: 401
    const bad = await get<{ error: { code: string; message: string } }>(server, '/admin/users?uid=');
    expect(bad.status).to.equal(400);
    expect(bad.body.error.message).to.match(/uid must be given once/);
    expect((await get(server, '/admin/users?uid=' + 'x'.repeat(257))).status).to.equal(400);
    expect((await get(server, '/admin/users?uid=a&uid=b')).status).to.equal(400);
    expect((await get(server, '/admin/users?uid=look', {})).status).to.equal(401);
    expect((await get(server, '/admin/history', {})).status).to.equal(401);
  });

  it('samples users, pages, pushes, backlog and webhook failures on ADMIN_SAMPLE_MS', async () => {
    const server = await start({ adminSampleMs: 100 });
    const client = await connectClient('v4', server.ioUrl);
    await client.login('s1');
    for (let i = 0; i < 5; i++) await legacyPush(server.apiUrl, { type: 'publish', to: 's1', content: String(i) });
    await until(async () => {
      const { samples } = (await get<HistoryAnswer>(server, '/admin/history')).body;
      return samples.reduce((sum, s) => sum + s.pushes, 0) === 5 && samples.some((s) => s.users === 1 && s.pages === 1 && s.backlog === 0);
    }, 'the samples to hold the 5 pushes and the page');
    const history = (await get<HistoryAnswer>(server, '/admin/history')).body;
    expect(history).to.deep.include({ sampleMs: 100, scope: 'node', nodes: 1 });
    const stats = (await get<Snapshot>(server, '/admin/stats')).body;
    expect(stats).to.deep.include({ users: 1, pages: 1, pushes: 5, backlog: { messages: 0, bytes: 0 } });
    expect(stats.pushesPerSecond).to.be.above(0);
    expect(stats.csrf).to.equal(undefined); // a Bearer script gets no CSRF token: it needs none
  });

  it('test push: legacy (escaped, on new_msg) and v1 with ttl (stored), counted as pushes', async () => {
    const server = await start();
    const client = await connectClient('v2', server.ioUrl);
    await client.login('t1');
    const got = client.waitFor('new_msg');
    const legacy = await post<{ api: string; answer: string }>(server, { api: 'legacy', to: 't1', content: '<b>hi</b>' });
    expect(legacy).to.deep.equal({ status: 200, body: { api: 'legacy', answer: 'ok' } });
    expect(await got).to.deep.equal(['&lt;b&gt;hi&lt;/b&gt;']);

    const v1 = await post<{ api: string; status: number; answer: { stored: number } }>(server, { api: 'v1', to: 'later', content: 'kept', ttl: 60 });
    expect(v1.status).to.equal(200);
    expect(v1.body).to.deep.include({ api: 'v1', status: 200 });
    expect(v1.body.answer.stored).to.equal(1);
    expect((await get<Lookup>(server, '/admin/users?uid=later')).body.stored!.count).to.equal(1);
    expect((await get<Snapshot>(server, '/admin/stats')).body.pushes).to.equal(2);

    for (const [body, field] of [
      [{ api: 'legacy', to: 't1', content: 'x', ttl: 5 }, 'ttl'],
      [{ api: 'carrier-pigeon', to: 't1', content: 'x' }, 'api'],
      [{ api: 'v1', to: '', content: 'x' }, 'to'],
      [{ api: 'v1', to: 't1', content: 'x', extra: 1 }, 'extra'],
    ] as const) {
      const res = await post<{ error: { field: string; message: string } }>(server, body);
      expect(res.status, JSON.stringify(body)).to.equal(400);
      expect(res.body.error.field, JSON.stringify(body)).to.equal(field);
    }
    const notJson = await fetch(server.webUrl + '/admin/push', { method: 'POST', headers: { ...BEARER, 'content-type': 'text/plain' }, body: 'x' });
    expect(notJson.status).to.equal(415);
    const huge = await post(server, { api: 'v1', to: 't1', content: 'x'.repeat(3 * 65536) });
    expect(huge.status).to.equal(413);
  });

  it('test push from a session needs the CSRF token the page got from /admin/stats', async () => {
    const server = await start();
    const cookie = await signIn(server);
    const push = { api: 'legacy', to: 'nobody', content: 'x' };
    const without = await post<{ error: { code: string } }>(server, push, { cookie });
    expect(without.status).to.equal(403);
    expect(without.body.error.code).to.equal('csrf');
    expect((await post(server, push, { cookie, 'x-csrf-token': 'f'.repeat(64) })).status).to.equal(403);
    const { csrf } = (await get<Snapshot>(server, '/admin/stats', { cookie })).body;
    expect(csrf).to.match(/^[0-9a-f]{64}$/);
    expect(await post(server, push, { cookie, 'x-csrf-token': csrf! })).to.deep.equal({ status: 200, body: { api: 'legacy', answer: 'offline' } });
    expect((await post(server, push, {})).status).to.equal(401);
    expect((await get<Snapshot>(server, '/admin/stats', { cookie })).body.pushes).to.equal(1);
  });

  describe('in a cluster of two nodes on a real redis-server', function () {
    let redis: TestRedis;
    before(async function () {
      if (!REDIS_SERVER) this.skip();
      redis = await startRedis();
    });
    after(async () => redis?.close());

    it('every figure is cluster-wide: pushes summed over the nodes, a uid looked up on either, histories merged', async () => {
      const a = await start({ redisUrl: redis.url, adminSampleMs: 200 });
      const b = await start({ redisUrl: redis.url, adminSampleMs: 200 });
      const onB = await connectClient('v4', b.ioUrl, ['websocket']);
      await onB.login('cw');
      const onA = await connectClient('v2', a.ioUrl, ['polling']);
      await onA.login('cw');
      for (let i = 0; i < 3; i++) await legacyPush(a.apiUrl, { type: 'publish', to: 'cw', content: 'a' });
      for (let i = 0; i < 4; i++) await legacyPush(b.apiUrl, { type: 'publish', to: 'cw', content: 'b' });

      for (const node of [a, b]) {
        const stats = (await get<Snapshot>(node, '/admin/stats')).body;
        expect(stats).to.deep.include({ users: 1, pages: 2, pushes: 7, scope: 'cluster', nodes: 2 });
        expect(stats.pushesPerSecond).to.be.above(0);
        const look = (await get<Lookup>(node, '/admin/users?uid=cw')).body;
        expect(look).to.deep.include({ online: true, pages: 2, transports: { websocket: 1, polling: 1, sse: 0 }, nodes: 2, complete: true });
      }
      await until(async () => {
        const { samples } = (await get<HistoryAnswer>(a, '/admin/history')).body;
        return samples.reduce((sum, s) => sum + s.pushes, 0) === 7;
      }, "node A's history to hold both nodes' pushes");
      expect((await get<HistoryAnswer>(b, '/admin/history')).body).to.deep.include({ scope: 'cluster', nodes: 2 });
    });
  });
});

/** A sign-in by the form from `address` (X-Forwarded-For, the server trusting 127.0.0.1). */
async function signInFrom(server: TestServer, token: string, address?: string): Promise<RawResponse> {
  return rawRequest(server.webUrl + '/admin', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(address ? { 'x-forwarded-for': address } : {}) },
    body: new URLSearchParams({ token }).toString(),
  });
}

const cookieOf = (res: RawResponse) => String(res.headers['set-cookie']).split(';')[0]!;

describe('admin page sessions, sign-in throttling and framing', function () {
  this.timeout(30_000);
  afterEach(cleanupAll);

  it('signing out ends the session: the old cookie is refused from then on, another session goes on', async () => {
    const server = await start();
    const cookie = await signIn(server);
    const other = await signIn(server);
    expect((await get(server, '/admin/stats', { cookie })).status).to.equal(200);
    const out = await rawRequest(server.webUrl + '/admin/sign-out', { method: 'POST', headers: { cookie } });
    expect(out.status).to.equal(303);
    // a copy of the cookie kept (or the browser that ignored the expired one) no longer signs in
    expect((await get(server, '/admin/stats', { cookie })).status).to.equal(401);
    expect((await get(server, '/admin/history', { cookie })).status).to.equal(401);
    expect((await post(server, { api: 'legacy', to: 'x', content: 'x' }, { cookie, 'x-csrf-token': 'f'.repeat(64) })).status).to.equal(401);
    expect((await get(server, '/admin/stats', { cookie: other })).status).to.equal(200);
  });

  it('keeps at most MAX_ADMIN_SESSIONS sessions: past it a sign-in ends the oldest', async () => {
    const sessions = new MemoryAdminSessions();
    const now = Date.now();
    for (let i = 0; i < MAX_ADMIN_SESSIONS + 500; i++) await sessions.add(`s${i}`, now + 60_000, now);
    expect(sessions.size).to.equal(MAX_ADMIN_SESSIONS);
    expect(await sessions.has('s0', now)).to.equal(false);
    expect(await sessions.has(`s${MAX_ADMIN_SESSIONS + 499}`, now)).to.equal(true);
    // expired ones go first
    await sessions.add('late', now + 120_000, now + 60_000);
    expect(sessions.size).to.equal(1);
  });

  it(`throttles wrong tokens per client address: past ${SIGN_IN_GUESSES} a minute 429 with Retry-After, Bearer guesses counted, the right token not checked`, async () => {
    const server = await start({ trustProxy: ['127.0.0.1'] });
    const guesser = '203.0.113.7';
    for (let i = 0; i < SIGN_IN_GUESSES - 1; i++) {
      const res = await signInFrom(server, `wrong-token-${i}-0123456789`, guesser);
      expect([res.status, res.headers.location]).to.deep.equal([303, '/admin#wrong-token']);
    }
    // a wrong Bearer token is a guess too: the tenth
    expect((await get(server, '/admin/stats', { authorization: 'Bearer wrong-token-0123456789', 'x-forwarded-for': guesser })).status).to.equal(401);
    for (const res of [
      await signInFrom(server, 'wrong-token-x-0123456789', guesser),
      await signInFrom(server, TOKEN, guesser), // right, but not even compared: nothing learnt
      await rawRequest(`${server.webUrl}/admin?token=${TOKEN}`, { headers: { 'x-forwarded-for': guesser } }),
    ]) {
      expect(res.status).to.equal(429);
      expect(Number(res.headers['retry-after'])).to.be.within(1, 60);
      expect(res.headers['set-cookie']).to.equal(undefined);
      expect(res.body).to.match(/too many wrong admin tokens from this address; retry in \d+ s/);
    }
    const bearer = await rawRequest(server.webUrl + '/admin/stats', { headers: { ...BEARER, 'x-forwarded-for': guesser } });
    expect(bearer.status).to.equal(429);
    expect(Number(bearer.headers['retry-after'])).to.be.within(1, 60);
    expect(JSON.parse(bearer.body)).to.have.nested.property('error.code', 'rate_limited');
    const push = await rawRequest(server.webUrl + '/admin/push', { method: 'POST', headers: { ...BEARER, 'x-forwarded-for': guesser, 'content-type': 'application/json' }, body: '{}' });
    expect([push.status, push.headers['retry-after'] !== undefined]).to.deep.equal([429, true]);
    // the same /64 is the same guesser; another address signs in, and a session is not throttled
    expect((await signInFrom(server, TOKEN, '2001:db8:1:2::1')).status).to.equal(303);
    const v6 = '2001:db8:7:7::';
    for (let i = 0; i < SIGN_IN_GUESSES; i++) await signInFrom(server, 'wrong-token-0123456789', `${v6}${i + 1}`);
    expect((await signInFrom(server, TOKEN, `${v6}ffff`)).status).to.equal(429);
    const signedIn = await signInFrom(server, TOKEN, '198.51.100.1');
    expect(signedIn.status).to.equal(303);
    expect((await get(server, '/admin/stats', { cookie: cookieOf(signedIn), 'x-forwarded-for': guesser })).status).to.equal(200);
  });

  it('follows at most MAX_GUESSING_ADDRESSES guessing addresses: full, a new one waits for the oldest window', () => {
    let now = 1_000_000;
    const throttle = new SignInThrottle({ guesses: 3, windowMs: 60_000, maxAddresses: 100 });
    for (let i = 0; i < 1000; i++) {
      const address = `10.0.${i >> 8}.${i & 255}`;
      if (throttle.waitMs(address, now) === 0) throttle.failed(address, now);
      now += 10;
    }
    expect(throttle.size).to.equal(100);
    // the first window began at 1_000_000 and ends a minute later
    expect(throttle.waitMs('192.0.2.1', now)).to.equal(1_060_000 - now);
    expect(throttle.waitMs('192.0.2.1', 1_060_000)).to.equal(0);
    expect(new SignInThrottle().size).to.equal(0);
    expect(MAX_GUESSING_ADDRESSES).to.equal(10_000);
    // IPv6 by /64, however it is written
    expect(['2001:db8:0:1::5', '2001:0db8:0000:0001:ffff::', '2001:db8::1:0:0:0:1'].map(guessKey)).to.deep.equal([
      '2001:db8:0:1::/64', '2001:db8:0:1::/64', '2001:db8:0:1::/64',
    ]);
    expect(guessKey('64:ff9b::1.2.3.4')).to.equal('64:ff9b:0:0::/64');
    expect(guessKey('::1')).to.equal('0:0:0:0::/64');
    expect(guessKey('203.0.113.7')).to.equal('203.0.113.7');
  });

  it('forbids framing on every answer of the web port: X-Frame-Options DENY and CSP frame-ancestors none', async () => {
    const server = await start();
    const cookie = await signIn(server);
    const answers = await Promise.all([
      rawRequest(`${server.webUrl}/`),
      rawRequest(`${server.webUrl}/admin`),
      rawRequest(`${server.webUrl}/admin.js`),
      rawRequest(`${server.webUrl}/config.js`),
      rawRequest(`${server.webUrl}/admin/stats`),
      rawRequest(`${server.webUrl}/admin/stats`, { headers: { cookie } }),
      rawRequest(`${server.webUrl}/admin/users?uid=`, { headers: BEARER }),
      rawRequest(`${server.webUrl}/admin?token=${TOKEN}`),
      rawRequest(`${server.webUrl}/admin`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' }),
      rawRequest(`${server.webUrl}/admin/sign-out`, { method: 'POST', headers: { cookie } }),
      rawRequest(`${server.webUrl}/nope`),
      rawRequest(`${server.webUrl}/admin`, { method: 'DELETE' }),
    ]);
    expect(answers.map((r) => r.status)).to.deep.equal([200, 200, 200, 200, 401, 200, 400, 303, 415, 303, 404, 405]);
    for (const res of answers) {
      expect(res.headers['x-frame-options']).to.equal('DENY');
      expect(res.headers['content-security-policy']).to.equal("frame-ancestors 'none'");
    }
  });

  describe('on two nodes of a real redis-server', function () {
    let redis: TestRedis;
    before(async function () {
      if (!REDIS_SERVER) this.skip();
      redis = await startRedis();
    });
    after(async () => redis?.close());

    it('a session signed in on one node works on the other; signed out on either it ends on both, and after a restart', async () => {
      const a = await start({ redisUrl: redis.url });
      const b = await start({ redisUrl: redis.url });
      const cookie = cookieOf(await signInFrom(a, TOKEN));
      const kept = cookieOf(await signInFrom(b, TOKEN));
      for (const node of [a, b]) expect((await get(node, '/admin/stats', { cookie })).status).to.equal(200);
      expect((await rawRequest(b.webUrl + '/admin/sign-out', { method: 'POST', headers: { cookie } })).status).to.equal(303);
      for (const node of [a, b]) expect((await get(node, '/admin/stats', { cookie })).status).to.equal(401);
      // a node started later (a restart, a new WORKERS process) knows both
      await a.close();
      const c = await start({ redisUrl: redis.url });
      expect((await get(c, '/admin/stats', { cookie })).status).to.equal(401);
      expect((await get(c, '/admin/stats', { cookie: kept })).status).to.equal(200);
    });

    it('answers 503 while Redis is away: a sign-in, a sign-out and a session are neither taken nor dropped', async () => {
      const own = await startRedis();
      onCleanup(() => own.close());
      const node = await start({ redisUrl: own.url, redisCommandTimeoutMs: 300 });
      const cookie = cookieOf(await signInFrom(node, TOKEN));
      own.pause(); // frozen: every command times out
      const signIn = await signInFrom(node, TOKEN);
      expect([signIn.status, signIn.headers['set-cookie']]).to.deep.equal([503, undefined]);
      expect((await rawRequest(node.webUrl + '/admin/sign-out', { method: 'POST', headers: { cookie } })).status).to.equal(503);
      expect((await get(node, '/admin/stats', { cookie })).status).to.equal(503);
      expect((await get(node, '/admin/stats')).status).to.equal(200); // a script's Bearer token needs no Redis
      own.resume();
      await until(async () => (await get(node, '/admin/stats', { cookie })).status === 200, 'the session back with Redis', 15_000);
    });
  });
});
