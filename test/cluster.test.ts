// A cluster of real nodes: start.ts child processes joined through one real redis-server,
// with real socket.io clients and real HTTP pushes. Rooms span nodes (Redis adapter),
// presence is cluster-wide (leases renewed by a heartbeat), and stored messages and scheduled
// pushes live in Redis. Crashes are SIGKILL, graceful stops SIGTERM, and a Redis outage is the
// test's redis-server killed and started again on the same port: empty, or, for the test of a
// Redis with AOF, with what its AOF held.
import { expect } from 'chai';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { connectClient, countsHtml, type ClientVersion, type TestClient } from './support/clients.ts';
import { occurrences, startNodeProcess, startNodeProcesses, type NodeProcess } from './support/start-process.ts';
import { REDIS_SERVER, startRedis, type TestRedis } from './support/redis-server.ts';
import { legacyPush } from './support/server.ts';
import { until } from './support/until.ts';
import { startWebhookReceiver } from './support/webhook-receiver.ts';

/** What a v1 push made now answers. */
interface PushAnswer {
  id: string;
  online: string[];
  offline: string[];
  stored: number;
}

/** What `login` acks with on success. */
interface LoginReply {
  ok: boolean;
  uid?: string;
  pending?: number;
}

/** Meta of a v1 message: the second argument of its event. */
interface MessageMeta {
  id: string;
  ts: number;
  stored?: boolean;
  redelivery?: boolean;
}

/** Presence leases: 6 s, renewed every 2 s, so a dead node's pages go within ~8 s. */
const CONVERGE_MS = 10_000;

/** Nodes that list stored messages or scheduled pushes need it (those routes answer 403 without). */
const PUSH_SECRET = 'cluster-test-secret-0123';
const WITH_SECRET = { PUSH_SECRET };

/** Sends the push secret, which a node without PUSH_SECRET ignores. */
async function v1(apiUrl: string, path: string, body?: unknown): Promise<{ status: number; type: string; json: unknown }> {
  const auth = { authorization: `Bearer ${PUSH_SECRET}` };
  const res = await fetch(apiUrl + path, {
    method: body === undefined ? 'GET' : 'POST',
    headers: body === undefined ? auth : { ...auth, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, type: res.headers.get('content-type') ?? '', json: await res.json() };
}

async function v1Push(apiUrl: string, body: Record<string, unknown>): Promise<{ status: number; type: string; json: unknown }> {
  return v1(apiUrl, '/api/v1/push', body);
}

/** The uid's kept, unacked messages, as any node answers them from the shared store. */
async function storedFor(apiUrl: string, uid: string): Promise<{ id: string; data: unknown }[]> {
  const { status, json } = await v1(apiUrl, `/api/v1/users/${encodeURIComponent(uid)}/messages`);
  expect(status).to.equal(200);
  return (json as { messages: { id: string; data: unknown }[] }).messages;
}

async function publish(node: NodeProcess, to: string, content: string): Promise<string> {
  const { status, body } = await legacyPush(node.apiUrl, { type: 'publish', to, content, secret: PUSH_SECRET });
  expect(status).to.equal(200);
  return body;
}

/** A client of `version` on `node`, logged in as `uid` with the ack. */
async function pageOn(node: NodeProcess, uid: string, version: ClientVersion = 'v4'): Promise<TestClient> {
  const client = await connectClient(version, node.ioUrl);
  await client.login(uid);
  return client;
}

/** The first argument of every push received so far: legacy `new_msg` contents, then v1 `message` data. */
function messages(client: TestClient): unknown[] {
  return [...client.received('new_msg'), ...client.received('message')].map((args) => args[0]);
}

function copiesOf(client: TestClient, content: unknown): number {
  return messages(client).filter((m) => JSON.stringify(m) === JSON.stringify(content)).length;
}

/**
 * Waits until the client's latest `update_online_count` shows these totals. The latest, not
 * any: counts pass through intermediate values while nodes' logins land, and only the
 * settled one is the claim. It may be the count of its own login or a later broadcast.
 */
function showsCounts(client: TestClient, users: number, pages: number, timeoutMs = 5000): Promise<void> {
  const want = countsHtml(users, pages);
  return until(
    () => client.received('update_online_count').at(-1)?.[0] === want,
    `${client.version} client to show ${want}; last ${String(client.received('update_online_count').at(-1)?.[0])}`,
    timeoutMs,
  );
}

/**
 * A barrier for "exactly once": a broadcast from `node` that every client must get. Made
 * after a broadcast from another node was seen at every client, Redis has already fanned that
 * one out to every node's subscription, and each node's subscription delivers in order, so a
 * duplicate of it would arrive before this barrier.
 */
async function barrier(node: NodeProcess, clients: TestClient[], tag: string): Promise<void> {
  expect(await publish(node, '', tag)).to.equal('ok');
  await Promise.all(clients.map((c) => c.waitFor('new_msg', (m) => m === tag)));
}

/** A line of an error's stack, as Node prints it. */
const STACK_LINE = /^\s+at .+(:\d+:\d+\)?|\(node:.+\))$/;

/** Log lines (not stack frames) that occur more than once: a state change logged per retry. */
function repeatedLines(output: string): string[] {
  const seen = new Map<string, number>();
  for (const line of output.split('\n')) {
    if (line.trim() === '' || STACK_LINE.test(line)) continue;
    seen.set(line, (seen.get(line) ?? 0) + 1);
  }
  return [...seen].filter(([, n]) => n > 1).map(([line, n]) => `${n}x ${line}`);
}

/**
 * What an operator should not see for an outage the server handles: unhandled rejections,
 * uncaught exceptions, and error stacks (each with the line that introduced it, to name it).
 */
function crashLines(output: string): string[] {
  const lines = output.split('\n');
  const found: string[] = [];
  lines.forEach((line, i) => {
    if (/unhandled|uncaught/i.test(line)) found.push(line);
    // the first frame of a stack: the line above it is the message that carried it
    else if (STACK_LINE.test(line) && !STACK_LINE.test(lines[i - 1] ?? '')) found.push(`${lines[i - 1] ?? ''} [+ stack]`);
  });
  return found;
}

describe('cluster (start.ts nodes sharing a real redis-server)', function () {
  // node startups under tsx take a second or two each; the SIGKILL test waits up to ~10 s
  this.timeout(60_000);
  let redis: TestRedis;

  beforeEach(async function () {
    if (!REDIS_SERVER) return this.skip(); // findBinary has said so loudly (or thrown under strict)
    redis = await startRedis();
    // registered first, so closed last: nodes and clients go before their Redis
    onCleanup(() => redis.stop());
  });
  afterEach(cleanupAll);

  for (const size of [2, 3]) {
    const names = ['A', 'B', 'C'].slice(0, size);

    describe(`${size} nodes`, () => {
      it('a page on one node gets legacy and v1 pushes made at any other node', async () => {
        const nodes = await startNodeProcesses(names, redis.url, WITH_SECRET); // push answers name online uids only with it
        for (const node of nodes) expect(node.stdout()).to.include('engine redis');
        // a page on each node, both client versions
        const pages = await Promise.all(nodes.map((n, i) => pageOn(n, `u${i}`, i % 2 === 0 ? 'v2' : 'v4')));

        for (const [from, node] of nodes.entries()) {
          for (const [to, page] of pages.entries()) {
            if (from === to) continue;
            const content = `legacy ${node.name}->u${to} <b>`;
            expect(await publish(node, `u${to}`, content)).to.equal('ok');
            expect(await page.waitFor('new_msg', (m) => m === `legacy ${node.name}-&gt;u${to} &lt;b&gt;`)).to.have.length(1);

            const data = { from: node.name, to: `u${to}` };
            const { status, json } = await v1Push(node.apiUrl, { to: `u${to}`, data });
            expect(status).to.equal(200);
            const answer = json as PushAnswer;
            expect(answer).to.include({ stored: 0 });
            expect(answer.online).to.deep.equal([`u${to}`]);
            const [got, meta] = await page.waitFor('message', (m) => JSON.stringify(m) === JSON.stringify(data));
            expect(got).to.deep.equal(data);
            expect((meta as MessageMeta).id).to.equal(answer.id);
          }
        }
      });

      it('a broadcast reaches the pages of every node exactly once', async () => {
        const nodes = await startNodeProcesses(names, redis.url);
        // two pages on the first node (one per client version), one on each other node
        const pages = await Promise.all([
          pageOn(nodes[0]!, 'b0', 'v2'),
          ...nodes.map((n, i) => pageOn(n, `b${i + 1}`, 'v4')),
        ]);

        expect(await publish(nodes[0]!, '', 'to everyone')).to.equal('ok');
        await Promise.all(pages.map((p) => p.waitFor('new_msg', (m) => m === 'to everyone')));
        const last = nodes.at(-1)!;
        const { status } = await v1Push(last.apiUrl, { data: { all: true } });
        expect(status).to.equal(200);
        await Promise.all(pages.map((p) => p.waitFor('message', (m) => JSON.stringify(m) === '{"all":true}')));

        // barriers from nodes other than each broadcast's own
        await barrier(last, pages, 'barrier 1');
        await barrier(nodes[0]!, pages, 'barrier 2');
        for (const page of pages) {
          expect(copiesOf(page, 'to everyone'), `legacy broadcast copies: ${JSON.stringify(messages(page))}`).to.equal(1);
          expect(copiesOf(page, { all: true }), `v1 broadcast copies: ${JSON.stringify(messages(page))}`).to.equal(1);
        }
      });

      it('online counts and ok/offline are cluster-wide', async () => {
        const nodes = await startNodeProcesses(names, redis.url, WITH_SECRET);
        const first = nodes[0]!;
        const last = nodes.at(-1)!;
        // uid x on the first two nodes, uid y on the last only: 2 users, 3 pages
        const x0 = await pageOn(first, 'x', 'v2');
        const x1 = await pageOn(nodes[1]!, 'x', 'v4');
        const y = await pageOn(last, 'y', 'v4');
        await Promise.all([x0, x1, y].map((c) => showsCounts(c, 2, 3)));

        for (const node of nodes) {
          // offline only when the uid has no page anywhere
          expect(await publish(node, 'nobody', 'lost'), `nobody at ${node.name}`).to.equal('offline');
          expect(await publish(node, 'x', 'hi x'), `x at ${node.name}`).to.equal('ok');
          expect(await publish(node, 'y', 'hi y'), `y at ${node.name}`).to.equal('ok');
          const { json } = await v1Push(node.apiUrl, { to: ['x', 'y', 'nobody'], data: 1 });
          expect(json).to.deep.include({ online: ['x', 'y'], offline: ['nobody'] });
        }
        // y's only page is on the last node: the first node answers ok for it
        expect(await publish(first, 'y', 'y is elsewhere')).to.equal('ok');
        await y.waitFor('new_msg', (m) => m === 'y is elsewhere');

        // y's page closes: offline everywhere, and the counts drop on every node
        y.close();
        await until(async () => (await publish(first, 'y', 'gone?')) === 'offline', 'y offline at the first node');
        for (const node of nodes) expect(await publish(node, 'y', 'gone')).to.equal('offline');
        await Promise.all([x0, x1].map((c) => showsCounts(c, 1, 2)));
      });
    });
  }

  it('a SIGKILLed node’s pages are gone cluster-wide within 10 s, and its uids announced offline once', async () => {
    const receiver = await startWebhookReceiver();
    const env = { WEBHOOK_URL: receiver.url, WEBHOOK_GRACE_MS: '200' };
    const [a, b] = (await startNodeProcesses(['A', 'B'], redis.url, env)) as [NodeProcess, NodeProcess];
    const watcher = await pageOn(a, 'watcher');
    const victim = await pageOn(b, 'victim', 'v2');
    await showsCounts(watcher, 2, 2);
    expect(await publish(a, 'victim', 'before')).to.equal('ok');
    await victim.waitFor('new_msg', (m) => m === 'before');
    // B announces its page before it dies; a kill before that POST left would lose it
    await receiver.waitFor((r) => r.some((x) => x.body.includes('"user.online"') && x.body.includes('"victim"')), 5000);

    const killedAt = Date.now();
    const exit = await b.kill();
    expect(exit.signal).to.equal('SIGKILL');
    let answers = 0;
    await until(
      async () => {
        answers++;
        return (await publish(a, 'victim', 'after')) === 'offline';
      },
      'a push at A to the killed node’s uid to answer offline',
      CONVERGE_MS,
      100,
    );
    const convergedMs = Date.now() - killedAt;
    console.log(`      cluster: a SIGKILLed node's uid answered offline at another node after ${convergedMs} ms (${answers} pushes)`);
    expect(convergedMs).to.be.below(CONVERGE_MS);
    await showsCounts(watcher, 1, 1, 2000);
    // the survivor's heartbeat reaped it, and said so once
    expect(occurrences(a.output(), /stopped heartbeating; its pages were removed/)).to.equal(1);
    // the victim's last page died with B: A, which reaped B, announces it offline
    const requests = await receiver.waitFor((r) => r.some((x) => x.body.includes('"user.offline"')), 5000);
    const events = requests.map((r) => JSON.parse(r.body) as { type: string; uid: string }).map((e) => `${e.type} ${e.uid}`);
    expect(events.filter((e) => e.startsWith('user.offline'))).to.deep.equal(['user.offline victim']);
    expect([...events].sort()).to.deep.equal(['user.offline victim', 'user.online victim', 'user.online watcher']);
  });

  it('a node stopped with SIGTERM removes its pages at once', async () => {
    const [a, b] = (await startNodeProcesses(['A', 'B'], redis.url)) as [NodeProcess, NodeProcess];
    const watcher = await pageOn(a, 'watcher');
    const leaving = await pageOn(b, 'leaving');
    await showsCounts(watcher, 2, 2);
    expect(await publish(a, 'leaving', 'before')).to.equal('ok');

    const exit = await b.stop();
    expect(exit).to.deep.equal({ code: 0, signal: null });
    await leaving.waitFor('disconnect');
    const answers: string[] = [];
    await until(
      async () => {
        answers.push(await publish(a, 'leaving', 'after'));
        return answers.at(-1) === 'offline';
      },
      'offline right after the graceful stop',
      2000,
    );
    // the node left the presence before it exited: the first push after the exit knows
    expect(answers, 'answers after the exit').to.deep.equal(['offline']);
    await showsCounts(watcher, 1, 1, 2000);
  });

  it('sends each webhook transition once in the cluster, from whichever node sees it', async () => {
    const receiver = await startWebhookReceiver();
    const env = { WEBHOOK_URL: receiver.url, WEBHOOK_GRACE_MS: '200' };
    const [a, b] = (await startNodeProcesses(['A', 'B'], redis.url, env)) as [NodeProcess, NodeProcess];
    const atA = await connectClient('v4', a.ioUrl);
    await atA.login('roamer'); // first page anywhere: user.online, from A
    await receiver.waitFor(1);
    const atB = await connectClient('v2', b.ioUrl);
    await atB.login('roamer'); // a second page: nothing
    atA.close(); // not the last page: nothing
    await until(async () => (await legacyPush(a.apiUrl, { type: 'publish', to: 'roamer', content: 'x' })).body === 'ok', 'B to hold the page');
    atB.close(); // the last page, at B: user.offline from B, though A announced the online
    const requests = await receiver.waitFor(2, 10_000);
    const events = requests.map((r) => JSON.parse(r.body) as { type: string; uid: string });
    expect(events.map((e) => [e.type, e.uid])).to.deep.equal([
      ['user.online', 'roamer'],
      ['user.offline', 'roamer'],
    ]);
    // and nothing more comes: a later transition of another uid is the next request
    const other = await connectClient('v4', b.ioUrl);
    await other.login('other');
    const next = await receiver.waitFor(3, 10_000);
    expect(JSON.parse(next[2]!.body)).to.deep.include({ type: 'user.online', uid: 'other' });
  });

  it('WORKERS=2 serves long-polling and websocket clients of both versions, and stops on SIGTERM', async () => {
    const primary = await startNodeProcess('W', redis.url, { WORKERS: '2' });
    expect(primary.stdout()).to.include('workers 2');
    const [io, api] = [primary.ioUrl, primary.apiUrl];
    const clients: TestClient[] = [];
    for (const [i, [version, transports]] of ([['v2', ['polling']], ['v4', ['polling']], ['v2', ['websocket']], ['v4', ['websocket']], ['v2', undefined], ['v4', undefined]] as const).entries()) {
      const c = await connectClient(version, io, transports ? [...transports] : undefined);
      await c.login(`w${i}`);
      clients.push(c);
    }
    for (const [i, c] of clients.entries()) {
      expect((await legacyPush(api, { type: 'publish', to: `w${i}`, content: `to w${i}` })).body).to.equal('ok');
      expect((await c.waitFor('new_msg'))[0]).to.equal(`to w${i}`);
    }
    const exit = await primary.stop();
    expect(exit.code, primary.output().slice(-2000)).to.equal(0);
  });

  it('a stored message pushed at one node is delivered once at a login on another, and an ack there removes it', async () => {
    const [a, b] = (await startNodeProcesses(['A', 'B'], redis.url, WITH_SECRET)) as [NodeProcess, NodeProcess];
    const { status, json } = await v1Push(a.apiUrl, { to: 'late', data: { order: 17 }, ttl: 60 });
    expect(status).to.equal(200);
    const answer = json as PushAnswer;
    expect(answer).to.deep.include({ online: [], offline: ['late'], stored: 1 });

    const atB = await connectClient('v4', b.ioUrl);
    const reply = await atB.request<LoginReply>('login', 'late');
    expect(reply).to.deep.equal({ ok: true, uid: 'late', pending: 1 });
    const args = await atB.waitFor('message', (m) => JSON.stringify(m) === '{"order":17}');
    expect(args).to.have.length(3); // data, meta and the ack callback
    const [, meta, ack] = args;
    expect(meta).to.deep.include({ id: answer.id, stored: true, redelivery: true });
    expect(ack).to.be.a('function');
    (ack as () => void)();
    // the ack travels to B, which removes it from the shared store: A sees it gone
    await until(async () => (await storedFor(a.apiUrl, 'late')).length === 0, 'the acked message gone from the store');

    // delivered once: a marker pushed after it at A comes, and the message did not come again
    expect(await publish(a, 'late', 'marker 1')).to.equal('ok');
    await atB.waitFor('new_msg', (m) => m === 'marker 1');
    expect(copiesOf(atB, { order: 17 })).to.equal(1);

    const atA = await connectClient('v4', a.ioUrl);
    expect(await atA.request<LoginReply>('login', 'late')).to.deep.equal({ ok: true, uid: 'late', pending: 0 });
    expect(await publish(b, 'late', 'marker 2')).to.equal('ok');
    await atA.waitFor('new_msg', (m) => m === 'marker 2');
    expect(messages(atA)).to.deep.equal(['marker 2']);
  });

  it('a stored message pushed at one node to a page on another is removed when that page acks', async () => {
    // the live path: the ack goes back from B's socket to A's pending emit through the adapter
    const [a, b] = (await startNodeProcesses(['A', 'B'], redis.url, WITH_SECRET)) as [NodeProcess, NodeProcess];
    const atB = await pageOn(b, 'live');
    const { json } = await v1Push(a.apiUrl, { to: 'live', data: 'keep until acked', ttl: 60 });
    const answer = json as PushAnswer;
    expect(answer).to.deep.include({ online: ['live'], offline: [], stored: 1 });
    const [, meta, ack] = await atB.waitFor('message', (m) => m === 'keep until acked');
    expect(meta).to.deep.include({ id: answer.id, stored: true });
    expect(meta).not.to.have.property('redelivery');
    (ack as () => void)();
    await until(async () => (await storedFor(b.apiUrl, 'live')).length === 0, 'the acked live message gone from the store');

    const again = await connectClient('v4', a.ioUrl);
    expect(await again.request<LoginReply>('login', 'live')).to.deep.equal({ ok: true, uid: 'live', pending: 0 });
  });

  it('a scheduled push accepted by a node that is then SIGKILLed fires once, from another node', async () => {
    const [a, b, c] = (await startNodeProcesses(['A', 'B', 'C'], redis.url, WITH_SECRET)) as [NodeProcess, NodeProcess, NodeProcess];
    const page = await pageOn(b, 'sched');
    const { status, json } = await v1Push(a.apiUrl, { to: 'sched', data: 'scheduled once', delay: 1.5 });
    expect(status).to.equal(202);
    const { id, at } = json as { id: string; at: string };
    const due = Date.parse(at);
    await a.kill();
    // the claim is "accepted, then the node died before it was due"
    expect(Date.now(), 'A was killed before the push was due').to.be.below(due);
    const waiting = await v1(c.apiUrl, '/api/v1/scheduled');
    expect((waiting.json as { scheduled: { id: string }[] }).scheduled.map((s) => s.id)).to.deep.equal([id]);

    const [, meta] = await page.waitFor('message', (m) => m === 'scheduled once', 6000);
    expect((meta as MessageMeta).id).to.equal(id);
    expect(Date.now()).to.be.at.least(due);
    // taken from the store once; then a marker from C shows nothing else was on its way
    await until(
      async () => ((await v1(b.apiUrl, '/api/v1/scheduled')).json as { scheduled: unknown[] }).scheduled.length === 0,
      'the scheduled push taken from the store',
    );
    expect(await publish(c, 'sched', 'marker')).to.equal('ok');
    await page.waitFor('new_msg', (m) => m === 'marker');
    expect(page.received('message').map(([m]) => m)).to.deep.equal(['scheduled once']);
    expect(page.received('new_msg').map(([m]) => m)).to.deep.equal(['marker']);
  });

  it('survives a restart of a Redis with AOF: local delivery goes on, stores refuse with 503, and all comes back after, stored messages, idempotency keys and scheduled pushes too', async () => {
    // its own Redis, persisting as the README asks (appendonly yes, appendfsync everysec);
    // registered before the nodes, so closed after them
    const redis = await startRedis({ persist: true });
    onCleanup(() => redis.close());
    const nodes = await startNodeProcesses(['A', 'B'], redis.url, WITH_SECRET);
    const [a, b] = nodes as [NodeProcess, NodeProcess];
    for (const node of nodes) expect(node.output()).not.to.match(/persistence is off|could not check its persistence/);
    const local = await pageOn(a, 'local');
    const remote = await pageOn(b, 'remote', 'v2');
    await Promise.all([local, remote].map((c) => showsCounts(c, 2, 2)));
    // kept before the outage, for uids that log in after it, through both nodes
    const kept = [
      { node: a, to: 'kept-before', data: 'before the outage 1' },
      { node: b, to: 'kept-before', data: 'before the outage 2' },
      { node: a, to: 'kept-before-2', data: 'before the outage 3' },
    ];
    const keptIds: string[] = [];
    for (const { node, to, data } of kept) {
      const { status, json } = await v1Push(node.apiUrl, { to, data, ttl: 600 });
      expect(status).to.equal(200);
      expect((json as PushAnswer).stored).to.equal(1);
      keptIds.push((json as PushAnswer).id);
    }
    // an idempotency key taken before the outage
    const keyed = await v1Push(a.apiUrl, { to: 'kept-before-2', data: 'keyed', ttl: 600, id: 'order-4711' });
    expect(keyed.status).to.equal(200);
    // and a scheduled push, due long after the test
    const scheduled = await v1Push(b.apiUrl, { to: 'kept-before', data: 'later', delay: 3600 });
    expect(scheduled.status).to.equal(202);
    expect(await storedFor(b.apiUrl, 'kept-before')).to.have.length(2);

    // A SIGKILL of Redis, as a crash. Redis writes its AOF before it answers, and a written
    // file outlives the process; waited on anyway, since on a slow disk everysec may hold a
    // write back while an fsync runs (a power loss could cost what was not yet fsynced: up to
    // about 1 s, which a process kill cannot show)
    // due while Redis is down: it fires once, after Redis is back
    // with a ttl: a push without one goes live only to the pages reachable when it fires, and
    // right after Redis is back the other node may still be subscribing again
    const dueDuring = await v1Push(b.apiUrl, { to: 'local', data: 'due during the outage', delay: 1.5, ttl: 600 });
    expect(dueDuring.status).to.equal(202);
    const due = Date.parse((dueDuring.json as { at: string }).at);
    await redis.aofWritten();
    await redis.stop();
    expect(Date.now(), 'Redis was stopped before the scheduled push was due').to.be.below(due);
    // each node noticed (its commands fail from now) and its heartbeat failed at least once,
    // so the outage spans a heartbeat; waited on, not slept
    await Promise.all(nodes.map((n) => n.waitForOutput(/connection lost/, 5000)));
    await Promise.all(nodes.map((n) => n.waitForOutput(/presence: heartbeat of node .* failed/, 5000)));

    // a push at the node that holds the page: delivered, and ok from the node's own pages
    expect(await publish(a, 'local', 'during the outage')).to.equal('ok');
    await local.waitFor('new_msg', (m) => m === 'during the outage');
    expect(await publish(b, 'remote', 'during the outage, at B')).to.equal('ok');
    await remote.waitFor('new_msg', (m) => m === 'during the outage, at B');
    // the store cannot store: 503 with a JSON error, and nothing claims it was kept
    const refused = await v1Push(a.apiUrl, { to: 'kept-during', data: 'during', ttl: 600 });
    expect(refused.status).to.equal(503);
    expect(refused.type).to.match(/^application\/json/);
    expect(refused.json).to.have.nested.property('error.code', 'unavailable');
    expect((refused.json as { error: { message: string } }).error.message).to.include('nothing was stored');
    for (const node of nodes) expect(node.running(), `${node.name} still running during the outage`).to.equal(true);

    await until(() => Date.now() > due, 'the scheduled push to fall due during the outage');
    expect(copiesOf(local, 'due during the outage'), 'fired while Redis was down').to.equal(0);
    await redis.start(); // same port, same AOF: it answers once the AOF is loaded
    await Promise.all(nodes.map((n) => n.waitForOutput(/connected again/, 10_000)));

    // cross-node delivery again: pushes at A until one reaches B's page
    let probe = 0;
    await until(
      async () => {
        await publish(a, 'remote', `probe ${++probe}`);
        return messages(remote).some((m) => typeof m === 'string' && m.startsWith('probe '));
      },
      'a push at A to reach the page on B after Redis came back',
      10_000,
      200,
    );
    // presence rebuilt from each node's mirror: each uid is online at the other node
    await until(
      async () => (await publish(a, 'remote', 'presence?')) === 'ok' && (await publish(b, 'local', 'presence?')) === 'ok',
      'both uids online at both nodes again',
      CONVERGE_MS,
      100,
    );
    // counts: a new page makes 3 only if both older pages were written back
    const newcomer = await pageOn(b, 'newcomer');
    await Promise.all([local, remote, newcomer].map((c) => showsCounts(c, 3, 3)));

    // stored before the restart: all there, listed by either node and delivered at a login on
    // the node that did not store them (and at the one that did), each once
    expect((await storedFor(a.apiUrl, 'kept-before')).map((m) => m.id)).to.deep.equal(keptIds.slice(0, 2));
    const late = await connectClient('v4', b.ioUrl);
    expect(await late.request<LoginReply>('login', 'kept-before')).to.deep.equal({ ok: true, uid: 'kept-before', pending: 2 });
    const late2 = await connectClient('v2', a.ioUrl);
    expect(await late2.request<LoginReply>('login', 'kept-before-2')).to.deep.equal({ ok: true, uid: 'kept-before-2', pending: 2 });
    await late.waitFor('message', (m) => m === 'before the outage 2');
    await late2.waitFor('message', (m) => m === 'keyed');
    const delivered = [...late.received('message'), ...late2.received('message')];
    const lost = kept.filter(({ data }) => !delivered.some(([m]) => m === data));
    console.log(`      cluster: stored messages pushed before the Redis restart (AOF): ${lost.length} of ${kept.length} lost`);
    expect(lost).to.deep.equal([]);
    expect(late.received('message').map(([m]) => m)).to.deep.equal(['before the outage 1', 'before the outage 2']);
    expect(late2.received('message').map(([m]) => m)).to.deep.equal(['before the outage 3', 'keyed']);
    // the idempotency key too: the same id again is a duplicate, not a second delivery
    const again = await v1Push(b.apiUrl, { to: 'kept-before-2', data: 'keyed', ttl: 600, id: 'order-4711' });
    expect(again.status).to.equal(200);
    expect(again.json).to.deep.include({ id: (keyed.json as PushAnswer).id, duplicate: true });
    // the push that fell due during the outage came once: a marker after it shows no second copy
    await local.waitFor('message', (m) => m === 'due during the outage');
    expect(await publish(b, 'local', 'after the due push')).to.equal('ok');
    await local.waitFor('new_msg', (m) => m === 'after the due push');
    // made once: one id, stored once (a page may be sent it twice with that id, live and by the
    // catch-up after the outage; the SDK keeps the first)
    const dueCopies = local.received('message').filter(([m]) => m === 'due during the outage');
    expect(new Set(dueCopies.map(([, meta]) => (meta as { id: string }).id)).size).to.equal(1);
    expect((await storedFor(a.apiUrl, 'local')).filter((m) => m.data === 'due during the outage')).to.have.length(1);
    // the scheduled push is still waiting, at either node
    // the one made leaves the list once its node confirms it (claim, fire, confirm)
    const listedIds = async () => ((await v1(a.apiUrl, '/api/v1/scheduled')).json as { scheduled: { id: string }[] }).scheduled.map((x) => x.id);
    await until(async () => (await listedIds()).length === 1, 'the made push confirmed');
    expect(await listedIds()).to.deep.equal([(scheduled.json as { id: string }).id]);

    // kept after the restart: stored and delivered again
    const after = await v1Push(a.apiUrl, { to: 'kept-after', data: 'after the outage', ttl: 600 });
    expect(after.status).to.equal(200);
    expect((after.json as PushAnswer).stored).to.equal(1);
    const afterPage = await connectClient('v4', b.ioUrl);
    expect(await afterPage.request<LoginReply>('login', 'kept-after')).to.deep.equal({ ok: true, uid: 'kept-after', pending: 1 });
    await afterPage.waitFor('message', (m) => m === 'after the outage');

    // no node exited, and each logged the connection's outage once each way, not per retry
    for (const node of nodes) {
      const out = node.output();
      expect(node.running(), `${node.name} running`).to.equal(true);
      expect(occurrences(out, /connection lost/), `${node.name} 'connection lost' lines:\n${out}`).to.equal(1);
      expect(occurrences(out, /connected again/), `${node.name} 'connected again' lines:\n${out}`).to.equal(1);
      expect(occurrences(out, /unhandled|uncaught/i), `${node.name} output:\n${out}`).to.equal(0);
    }
  });

  it('logs a Redis outage as one line per change in each part, without stack traces', async () => {
    // one node: every part that talks to Redis (connection, presence heartbeat, store sweep,
    // scheduler) runs on it, and the scheduler retries every 200 ms, so a per-retry line shows
    const [node] = (await startNodeProcesses(['A'], redis.url)) as [NodeProcess];
    await pageOn(node, 'someone');
    await redis.stop();
    await node.waitForOutput(/connection lost/, 5000);
    // a failed heartbeat (every 2 s) means the outage lasted through many scheduler ticks
    await node.waitForOutput(/presence: heartbeat of node .* failed/, 5000);
    await redis.start();
    await node.waitForOutput(/connected again/, 10_000);
    await node.waitForOutput(/presence: heartbeat of node .* works again/, 5000);

    const out = node.output();
    expect(node.running()).to.equal(true);
    // this Redis keeps nothing on disk: said once, at start
    expect(occurrences(out, /persistence is off \(appendonly no, save ""\)/), out).to.equal(1);
    expect(repeatedLines(out), `lines logged more than once:\n${out}`).to.deep.equal([]);
    // an outage is an expected, handled condition: a stack trace reads as a crash to operators
    expect(crashLines(out), `unhandled errors or stack traces in the output:\n${out}`).to.deep.equal([]);
  });
});
