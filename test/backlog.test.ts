// A uid's backlog under attack (issue 21, findings 2 and 3): hundreds of 60 KB stored messages,
// dozens of logins that never ack and SSE streams that never read. Each reads the backlog a
// window at a time, every read or held byte counted against MAX_REDELIVERY_BYTES, so the
// server's memory stays bounded, Redis is never blocked by one command, another uid's pushes
// keep their time, and one client cannot take the redelivery budget or the SSE replays.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { io as ioV4 } from 'socket.io-client';
import { closeRedis, connectRedis } from '../src/cluster/redis-client.ts';
import type { LoginReply, MessageMeta } from '../src/events.ts';
import { silentLogger } from '../src/log.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { connectClient, TestClient } from './support/clients.ts';
import { REDIS_SERVER, startRedis } from './support/redis-server.ts';
import { startServer, type TestServer } from './support/server.ts';
import { SseClient } from './support/sse-client.ts';
import { spawnStart, type StartProcess } from './support/start-process.ts';
import { holdsFor, until } from './support/until.ts';

const SECRET = 'backlog-push-secret-0123456789';
const AUTH = { authorization: `Bearer ${SECRET}` };
/**
 * The attack's shape: 400 stored messages of 60 KB for one uid (24 MB), 32 logins, 32 streams.
 * SSE_MAX_REPLAYS is raised so every stream replays: the byte budget alone bounds them here.
 * ACK_TIMEOUT_MS is short so the unacked windows time out and the next ones are read while
 * the test runs.
 */
const ATTACKED = {
  IO_PORT: '0',
  API_PORT: '0',
  WEB_PORT: 'off',
  PUSH_SECRET: SECRET,
  SSE_MAX_REPLAYS: '1000',
  ACK_TIMEOUT_MS: '2000',
  NODE_OPTIONS: '--max-old-space-size=512',
};
const STORED = 400;
const DATA = 'x'.repeat(60_000);
const LOGINS = 32;
const STREAMS = 32;
/** Pushes to another uid timed before and during the attack. */
const PROBES = 15;

async function v1(apiUrl: string, path: string, body: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`${apiUrl}/api/v1${path}`, { method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const json = (await res.json()) as Record<string, unknown>;
  if (res.status >= 300) throw new Error(`${path} answered ${res.status}: ${JSON.stringify(json)}`);
  return json;
}

async function pagesOf(apiUrl: string, uid: string): Promise<number> {
  const res = await fetch(`${apiUrl}/api/v1/users/${encodeURIComponent(uid)}`, { headers: AUTH });
  return ((await res.json()) as { pages: number }).pages;
}

/** Stores `count` messages of DATA for `uid`, 15 to a batch (a body under 1 MiB). */
async function storeBacklog(apiUrl: string, uid: string, count: number): Promise<void> {
  for (let start = 0; start < count; start += 15) {
    const messages = Array.from({ length: Math.min(15, count - start) }, () => ({ to: uid, event: 'big', data: DATA, ttl: 600 }));
    await v1(apiUrl, '/push/batch', { messages });
  }
}

/** The process's resident memory, MiB; 0 once it has exited. */
function rssMiB(pid: number): number {
  let status = '';
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return 0; // gone
  }
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  return match ? Number(match[1]) / 1024 : 0;
}

/** ms from a push to another uid until its page has it; the median of PROBES. */
async function pushTimeMs(apiUrl: string, page: TestClient, label: string): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < PROBES; i++) {
    const text = `${label} ${i}`;
    const start = performance.now();
    await v1(apiUrl, '/push', { to: 'bystander', event: 'probe', data: text });
    await page.waitFor('probe', (data) => data === text, 20_000);
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

/** An SSE stream of `uid` whose client never reads a byte. */
function stuckStream(ioUrl: string, uid: string, address?: string): Socket {
  const tcp = connect(Number(new URL(ioUrl).port), '127.0.0.1');
  onCleanup(() => tcp.destroy());
  const forwarded = address === undefined ? '' : `X-Forwarded-For: ${address}\r\n`;
  tcp.write(`GET /events?uid=${uid} HTTP/1.1\r\nHost: x\r\n${forwarded}\r\n`);
  tcp.pause();
  return tcp;
}

interface Figures {
  rssBefore: number;
  rssPeak: number;
  /** Median ms of another uid's push, before and during. */
  before: number;
  during: number;
  /** What each login answered. */
  replies: unknown[];
}

/**
 * The attack on a running start.ts: LOGINS pages of `heavy` that never ack and STREAMS SSE
 * streams of it that never read, all at once, while another uid's page is pushed to. Resolves
 * the figures; fails if the server dies.
 */
async function attack(node: StartProcess, urls: { ioUrl: string; apiUrl: string }): Promise<Figures> {
  await storeBacklog(urls.apiUrl, 'heavy', STORED);
  const bystander = (await connectClient('v4', urls.ioUrl, ['websocket'])).track('probe');
  await bystander.login('bystander');
  const before = await pushTimeMs(urls.apiUrl, bystander, 'before');
  const rssBefore = rssMiB(node.pid);
  let rssPeak = rssBefore;
  const sample = () => (rssPeak = Math.max(rssPeak, rssMiB(node.pid)));
  const sampler = setInterval(sample, 50);
  onCleanup(() => clearInterval(sampler));

  const alive = node.exited.then(() => {
    throw new Error(`the server died under the attack (RSS peak ${rssPeak.toFixed(0)} MiB): ${node.output().slice(-600)}`);
  });
  alive.catch(() => {}); // raced below
  const pages = await Promise.all(Array.from({ length: LOGINS }, async () => (await connectClient('v4', urls.ioUrl, ['websocket'])).track('big')));
  const logins = pages.map((page) => page.request<{ ok: boolean; pending: number }>('login', 'heavy'));
  for (let i = 0; i < STREAMS; i++) stuckStream(urls.ioUrl, 'heavy');
  const during = await Promise.race([pushTimeMs(urls.apiUrl, bystander, 'during'), alive]);
  const replies = await Promise.all(logins);
  await until(async () => (await pagesOf(urls.apiUrl, 'heavy')) === LOGINS + STREAMS, 'every login and stream counted', 20_000, 100);
  // another uid's stored messages are not kept waiting behind the attacker's: its own share
  await v1(urls.apiUrl, '/push', { to: 'victim', event: 'big', data: 'kept for the victim', ttl: 600 });
  const victim = (await connectClient('v4', urls.ioUrl, ['websocket'])).track('big');
  expect(await victim.request('login', 'victim')).to.deep.equal({ ok: true, uid: 'victim', pending: 1 });
  await victim.waitFor('big', (data) => data === 'kept for the victim', 10_000);
  // the windows time out and the next pages are read: memory stays where it is meanwhile
  await holdsFor(() => node.running(), 'the server running', 3 * Number(ATTACKED.ACK_TIMEOUT_MS));
  sample();
  clearInterval(sampler);
  expect(node.running(), node.output()).to.equal(true);
  return { rssBefore, rssPeak, before, during, replies };
}

function expectBounded(figures: Figures): void {
  // every login answered with the whole count, though its messages come a window at a time
  for (const reply of figures.replies) expect(reply).to.deep.equal({ ok: true, uid: 'heavy', pending: STORED });
  expect(figures.rssPeak - figures.rssBefore, 'MiB more at the peak').to.be.below(160);
  expect(figures.during, 'median ms during the attack').to.be.below(Math.max(10 * figures.before, 250));
}

describe('a backlog under attack: hundreds of 60 KB messages, dozens of logins and SSE streams that never ack or read', function () {
  this.timeout(120_000);
  afterEach(cleanupAll);

  it('embedded store (start.ts, a 512 MiB heap): memory stays bounded and another uid\'s pushes keep their time', async () => {
    const node = spawnStart([], ATTACKED);
    const figures = await attack(node, await node.started());
    console.log(`      embedded: RSS ${figures.rssBefore.toFixed(0)} -> peak ${figures.rssPeak.toFixed(0)} MiB; another uid's push ${figures.before.toFixed(1)} ms before, ${figures.during.toFixed(1)} ms during (median of ${PROBES})`);
    expectBounded(figures);
  });

  it('Redis (start.ts): no Redis command above 10 ms (SLOWLOG), memory stays bounded, another uid\'s pushes keep their time', async function () {
    if (!REDIS_SERVER) return this.skip();
    const redis = await startRedis();
    onCleanup(() => redis.close());
    const admin = await connectRedis(redis.url, silentLogger);
    onCleanup(() => closeRedis(admin));
    await admin.configSet('slowlog-log-slower-than', '10000'); // µs
    const node = spawnStart([], { ...ATTACKED, REDIS_URL: redis.url });
    const urls = await node.started();
    // Redis compiles each script at its first EVAL: done before the log is reset
    await storeBacklog(urls.apiUrl, 'warmup', 1);
    const warmup = (await connectClient('v4', urls.ioUrl, ['websocket'])).track('big');
    await warmup.login('warmup');
    await warmup.waitFor('big');
    warmup.close();
    await admin.sendCommand(['SLOWLOG', 'RESET']);
    const figures = await attack(node, urls);
    const slow = (await admin.sendCommand(['SLOWLOG', 'GET', '128'])) as [number, number, number, string[]][];
    const shown = slow.map(([, , us, args]) => `${(us / 1000).toFixed(1)} ms ${args.slice(0, 3).join(' ').slice(0, 80)}`);
    console.log(`      redis: RSS ${figures.rssBefore.toFixed(0)} -> peak ${figures.rssPeak.toFixed(0)} MiB; another uid's push ${figures.before.toFixed(1)} ms before, ${figures.during.toFixed(1)} ms during; ${slow.length} commands above 10 ms`);
    expect(shown, 'SLOWLOG (commands above 10 ms)').to.deep.equal([]);
    expectBounded(figures);
  });
});

/** A v4 page connected from client `address` (X-Forwarded-For, behind a trusted proxy). */
async function pageFrom(server: TestServer, address: string): Promise<TestClient> {
  const options = { forceNew: true, reconnection: false, transports: ['websocket'], extraHeaders: { 'x-forwarded-for': address } };
  const page = new TestClient('v4', ioV4(server.ioUrl, options) as unknown as ConstructorParameters<typeof TestClient>[1]).track('note');
  onCleanup(() => page.close());
  await page.waitFor('connect');
  return page;
}

/** Ids of the stored messages a page got, in order. */
function redelivered(page: TestClient): string[] {
  return page
    .received('note')
    .filter(([, meta]) => (meta as MessageMeta | undefined)?.redelivery === true)
    .map(([, meta]) => (meta as MessageMeta).id);
}

/**
 * Stored messages the page has got by now: a live push after them reaches it after anything
 * already sent to it, so none is on its way once it has come.
 */
async function redeliveredBy(server: TestServer, page: TestClient, uid: string): Promise<string[]> {
  const text = `marker ${Math.random()}`;
  await v1(server.apiUrl, '/push', { to: uid, event: 'note', data: text });
  await page.waitFor('note', (data) => data === text);
  return redelivered(page);
}

describe('MAX_REDELIVERY_BYTES: what every redelivery reads or holds at once, shared fairly', function () {
  this.timeout(20_000);
  afterEach(cleanupAll);

  // 3 KB of data: 3452 bytes as the store counts it. 64 KiB in all: a uid's share (8 KiB)
  // holds two, a client address's (16 KiB) four.
  const DATA_3K = 'n'.repeat(3000);
  const BUDGET = { maxRedeliveryBytes: 64 * 1024, trustProxy: ['127.0.0.1'], pushSecret: SECRET };

  async function storeNotes(server: TestServer, uid: string, count: number): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < count; i++) ids.push((await v1(server.apiUrl, '/push', { to: uid, event: 'note', data: DATA_3K, ttl: 600 })).id as string);
    return ids;
  }

  it('past a uid\'s share a login answers at once and its redelivery waits its turn; a disconnect gives the share back at once', async () => {
    const server = await startServer({ ...BUDGET, ackTimeoutMs: 60_000 });
    const ids = await storeNotes(server, 'hog', 10);
    const first = await pageFrom(server, '203.0.113.1');
    expect(await first.request<LoginReply>('login', 'hog')).to.deep.equal({ ok: true, uid: 'hog', pending: 10 });
    expect(await redeliveredBy(server, first, 'hog')).to.deep.equal(ids.slice(0, 2));
    // another page of the uid, from another address: answered, but its share is held
    const second = await pageFrom(server, '203.0.113.2');
    expect(await second.request<LoginReply>('login', 'hog')).to.deep.equal({ ok: true, uid: 'hog', pending: 10 });
    expect(await redeliveredBy(server, second, 'hog')).to.deep.equal([]);
    // the first page goes (no ack, long before ACK_TIMEOUT_MS): its share is the second's now
    first.close();
    await until(() => redelivered(second).length === 2, 'the second page\'s first window');
    expect(redelivered(second)).to.deep.equal(ids.slice(0, 2));
  });

  it('an ack timeout gives the bytes back too: the waiting login goes on, before the page that timed out reads more', async () => {
    const server = await startServer({ ...BUDGET, ackTimeoutMs: 300 });
    const ids = await storeNotes(server, 'hog', 6);
    const first = await pageFrom(server, '203.0.113.1');
    await first.login('hog');
    expect(await redeliveredBy(server, first, 'hog')).to.deep.equal(ids.slice(0, 2));
    const second = await pageFrom(server, '203.0.113.2');
    await second.login('hog');
    // neither acks: the first's window times out, and the second, waiting first, gets its turn
    await until(() => redelivered(second).length === 2, 'the second page\'s first window after the first one\'s timed out');
    expect(redelivered(second)).to.deep.equal(ids.slice(0, 2));
    // and turns alternate: each page gets every message in the end, as windows time out
    await until(() => redelivered(first).length === 6 && redelivered(second).length === 6, 'every message to both pages', 15_000);
  });

  it('acks let a page through its whole backlog within its share', async () => {
    const server = await startServer(BUDGET);
    const ids = await storeNotes(server, 'reader', 12);
    const page = await pageFrom(server, '203.0.113.1');
    await page.login('reader');
    let acked = 0;
    await until(() => {
      const got = page.received('note');
      for (; acked < got.length; acked++) (got[acked]![2] as () => void)();
      return got.length === 12;
    }, 'all 12 stored messages, acked as they come');
    expect(redelivered(page)).to.deep.equal(ids);
  });

  it('one client address cannot take the budget: its own uids wait, another address\'s login is served', async () => {
    const server = await startServer({ ...BUDGET, ackTimeoutMs: 60_000 });
    const pages: TestClient[] = [];
    for (const uid of ['h1', 'h2', 'h3']) {
      await storeNotes(server, uid, 4);
      const page = await pageFrom(server, '203.0.113.1');
      await page.login(uid);
      pages.push(page);
    }
    // two uids' shares fill the address's: the third uid's page waits
    expect((await redeliveredBy(server, pages[0]!, 'h1')).length).to.equal(2);
    expect((await redeliveredBy(server, pages[1]!, 'h2')).length).to.equal(2);
    expect(await redeliveredBy(server, pages[2]!, 'h3')).to.deep.equal([]);
    const ids = await storeNotes(server, 'victim', 2);
    const victim = await pageFrom(server, '198.51.100.7');
    await victim.login('victim');
    expect(await redeliveredBy(server, victim, 'victim')).to.deep.equal(ids);
    // the address gives back a share: its waiting page goes on
    pages[0]!.close();
    await until(() => redelivered(pages[2]!).length === 2, 'the waiting page of the same address');
  });
});

describe('SSE_MAX_REPLAYS per uid and per client address (issue 21, finding 3)', function () {
  this.timeout(60_000);
  afterEach(cleanupAll);

  /** 80 stored messages of 60 KB (4.8 MB) for each uid: a replay its client does not read stalls on it. */
  async function storeStalling(server: TestServer, uids: string[]): Promise<void> {
    for (let i = 0; i < 80; i++) await v1(server.apiUrl, '/push', { to: uids, event: 'big', data: DATA, ttl: 600 });
  }

  /** A stream from `address` that the server ends at once: what it said. */
  async function toldLater(server: TestServer, uid: string, address: string): Promise<string> {
    const stream = await SseClient.open(`${server.ioUrl}/events?uid=${uid}`, { 'x-forwarded-for': address });
    await stream.waitForEnd();
    expect(stream.status).to.equal(200); // an error status would make EventSource give up
    return stream.body;
  }

  /** A stream from `address` that replays its stored message. */
  async function replays(server: TestServer, uid: string, address: string): Promise<void> {
    const stream = await SseClient.open(`${server.ioUrl}/events?uid=${uid}`, { 'x-forwarded-for': address });
    expect(stream.status).to.equal(200);
    await stream.waitFor((e) => e.event === 'note', `${uid}'s stored message`, 10_000);
  }

  it('64 streams that never read, from one address, do not keep other users from their replays', async () => {
    const server = await startServer({ trustProxy: ['127.0.0.1'], sseOpensPerSecond: 100, pushSecret: SECRET });
    await storeStalling(server, ['backlog']);
    for (let i = 0; i < 64; i++) stuckStream(server.ioUrl, 'backlog', '203.0.113.1');
    // an eighth of SSE_MAX_REPLAYS (64) replays for one uid; the others are told to come back
    await until(async () => (await pagesOf(server.apiUrl, 'backlog')) === 8, 'the uid\'s share of replays', 10_000, 100);
    expect(await toldLater(server, 'backlog', '203.0.113.1')).to.match(/of this uid are replaying stored messages \(SSE_MAX_REPLAYS\)\nretry: [1-3]\d{3}\n\n$/);
    // every other user, from other addresses, replays at once
    for (let i = 0; i < 20; i++) {
      await v1(server.apiUrl, '/push', { to: `user-${i}`, event: 'note', data: i, ttl: 600 });
      await replays(server, `user-${i}`, `198.51.100.${i + 1}`);
    }
    expect(await pagesOf(server.apiUrl, 'backlog')).to.equal(8);
  });

  it('bounds the streams replaying per uid and per client address', async () => {
    // 8 in all: one per uid, two per address
    const server = await startServer({ trustProxy: ['127.0.0.1'], sseMaxReplays: 8, pushSecret: SECRET });
    await storeStalling(server, ['b1', 'b2', 'b3']);
    stuckStream(server.ioUrl, 'b1', '203.0.113.1');
    await until(async () => (await pagesOf(server.apiUrl, 'b1')) === 1, 'b1 replaying');
    expect(await toldLater(server, 'b1', '203.0.113.2')).to.match(/of this uid are replaying stored messages \(SSE_MAX_REPLAYS\)\nretry:/);
    stuckStream(server.ioUrl, 'b2', '203.0.113.1');
    await until(async () => (await pagesOf(server.apiUrl, 'b2')) === 1, 'b2 replaying');
    expect(await toldLater(server, 'b3', '203.0.113.1')).to.match(/from this address are replaying stored messages \(SSE_MAX_REPLAYS\)\nretry:/);
    // another address, another uid: replays
    await v1(server.apiUrl, '/push', { to: 'v', event: 'note', data: 'kept', ttl: 600 });
    await replays(server, 'v', '198.51.100.1');
    stuckStream(server.ioUrl, 'b3', '198.51.100.2');
    await until(async () => (await pagesOf(server.apiUrl, 'b3')) === 1, 'b3 replaying from another address');
  });
});

describe('GET /api/v1/users/:uid/messages, page by page', function () {
  afterEach(cleanupAll);

  async function page(server: TestServer, uid: string, query = ''): Promise<{ status: number; body: { messages?: { id: string }[]; cursor?: string | null; error?: { message: string } } }> {
    const res = await fetch(`${server.apiUrl}/api/v1/users/${uid}/messages${query}`, { headers: AUTH });
    return { status: res.status, body: (await res.json()) as never };
  }

  it('answers at most `limit` messages (100 by default) and 4 MiB, and a cursor for the rest', async () => {
    const server = await startServer({ pushSecret: SECRET });
    const ids: string[] = [];
    for (let b = 0; b < 3; b++) {
      const messages = Array.from({ length: 50 }, (_, i) => ({ to: 'many', data: b * 50 + i, ttl: 600 }));
      const answer = await v1(server.apiUrl, '/push/batch', { messages });
      ids.push(...(answer.results as { id: string }[]).map((r) => r.id));
    }
    const first = await page(server, 'many');
    expect(first.body.messages!.map((m) => m.id)).to.deep.equal(ids.slice(0, 100));
    const second = await page(server, 'many', `?cursor=${first.body.cursor}`);
    expect(second.body.messages!.map((m) => m.id)).to.deep.equal(ids.slice(100));
    expect(second.body.cursor).to.equal(null);
    const small = await page(server, 'many', '?limit=7');
    expect(small.body.messages).to.have.length(7);
    // 100 messages of 60 KB pass 4 MiB: the page ends before
    for (let i = 0; i < 80; i++) await v1(server.apiUrl, '/push', { to: 'large', event: 'big', data: DATA, ttl: 600 });
    const bytes = await page(server, 'large');
    expect(bytes.body.messages!.length).to.be.within(60, 70);
    const rest = await page(server, 'large', `?cursor=${bytes.body.cursor}`);
    expect(bytes.body.messages!.length + rest.body.messages!.length).to.equal(80);
    // a bad cursor or limit is a 400 naming it
    for (const query of ['?cursor=abc', '?limit=0', '?limit=1001']) {
      const bad = await page(server, 'many', query);
      expect(bad.status, query).to.equal(400);
      expect(bad.body.error!.message).to.match(/cursor|limit/);
    }
  });
});
