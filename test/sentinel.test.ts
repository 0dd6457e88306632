// A cluster on a Sentinel-managed Redis: real start.ts nodes, a real primary, replica and three
// sentinels (test/support/redis-sentinel.ts). The primary is killed (SIGKILL); Sentinel
// promotes the replica, and the nodes follow without a restart: cross-node pushes resume and
// what was stored before the kill (and replicated) is delivered after it.
import { expect } from 'chai';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { connectClient, countsHtml, type ClientVersion, type TestClient } from './support/clients.ts';
import { freePort, REDIS_SERVER } from './support/redis-server.ts';
import { MASTER_NAME, startSentinels, type TestSentinels } from './support/redis-sentinel.ts';
import { legacyPush } from './support/server.ts';
import { spawnStart, type StartProcess } from './support/start-process.ts';
import { until } from './support/until.ts';

const PUSH_SECRET = 'sentinel-test-secret-0123';

interface Node extends StartProcess {
  ioUrl: string;
  apiUrl: string;
}

/** A node joined through the sentinels, on ephemeral ports. */
async function startNode(name: string, sentinels: string, env: Record<string, string> = {}): Promise<Node> {
  const node = spawnStart(
    [],
    {
      IO_PORT: '0',
      API_PORT: '0',
      WEB_PORT: 'off',
      REDIS_SENTINELS: sentinels,
      REDIS_SENTINEL_MASTER: MASTER_NAME,
      ONLINE_COUNT_INTERVAL_MS: '100',
      PUSH_SECRET,
      ...env,
    },
    name,
  );
  const { ioUrl, apiUrl } = await node.started();
  return { ...node, ioUrl, apiUrl };
}

async function v1Push(apiUrl: string, body: Record<string, unknown>): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${apiUrl}/api/v1/push`, {
    method: 'POST',
    headers: { authorization: `Bearer ${PUSH_SECRET}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  return { status: res.status, json: await res.json() };
}

async function publish(node: Node, to: string, content: string): Promise<string> {
  const { status, body } = await legacyPush(node.apiUrl, { type: 'publish', to, content, secret: PUSH_SECRET });
  expect(status).to.equal(200);
  return body;
}

async function pageOn(node: Node, uid: string, version: ClientVersion): Promise<TestClient> {
  const client = await connectClient(version, node.ioUrl);
  await client.login(uid);
  return client;
}

function legacyMessages(client: TestClient): string[] {
  return client.received('new_msg').map(([m]) => m as string);
}

function showsCounts(client: TestClient, users: number, pages: number): Promise<void> {
  const want = countsHtml(users, pages);
  return until(() => client.received('update_online_count').at(-1)?.[0] === want, `${client.version} client to show ${want}`, 10_000);
}

describe('a cluster on a Sentinel-managed Redis', function () {
  this.timeout(60_000);
  let redis: TestSentinels;

  beforeEach(async function () {
    if (!REDIS_SERVER) return this.skip();
    redis = await startSentinels();
    onCleanup(() => redis.close()); // registered before the nodes, so closed after them
  });
  afterEach(cleanupAll);

  it('follows a failover: the primary killed, the replica promoted, cross-node pushes resume and no stored message is lost', async () => {
    // the first sentinel listed is down: a node asks the next
    const gone = await freePort();
    const list = `127.0.0.1:${gone},${redis.list}`;
    const [a, b] = await Promise.all([startNode('A', list), startNode('B', list)]);
    // the start line names how the node joined (an operator debugging a failover reads it)
    expect(a.stdout()).to.include('engine redis-sentinel');
    const local = await pageOn(a, 'local', 'v4');
    const remote = await pageOn(b, 'remote', 'v2');
    await Promise.all([local, remote].map((c) => showsCounts(c, 2, 2)));
    expect(await publish(a, 'remote', 'before, A to B')).to.equal('ok');
    await remote.waitFor('new_msg', (m) => m === 'before, A to B');

    // stored with a ttl through both nodes for a uid with no page, then replicated
    const kept: string[] = [];
    for (let i = 0; i < 6; i++) {
      const data = `kept ${i}`;
      const { status, json } = await v1Push((i % 2 ? b : a).apiUrl, { to: 'kept', data, ttl: 600 });
      expect(status).to.equal(200);
      expect(json).to.include({ stored: 1 });
      kept.push(data);
    }
    await redis.replicated();
    // one sentinel goes too: two of three still make a majority to fail over
    await redis.killSentinel(0);

    const killedAt = Date.now();
    await redis.primary.stop();
    await Promise.all([a, b].map((n) => n.waitForOutput(/connection lost/, 5000)));
    // during the failover, as during any Redis outage: a push that must be stored answers 503,
    // and a push to a page on the same node is still delivered
    const refused = await v1Push(a.apiUrl, { to: 'kept', data: 'during', ttl: 600 });
    expect(refused.status).to.equal(503);
    expect(refused.json).to.have.nested.property('error.code', 'unavailable');
    expect(await publish(a, 'local', 'during, A to A')).to.equal('ok');
    await local.waitFor('new_msg', (m) => m === 'during, A to A');

    // pushes at A until one reaches the page on B: the failover is over for the pushes
    let probe = 0;
    await until(
      async () => {
        await publish(a, 'remote', `probe ${++probe}`);
        return legacyMessages(remote).some((m) => m.startsWith('probe '));
      },
      'a push at A to reach the page on B after the failover',
      30_000,
      50,
    );
    const failoverMs = Date.now() - killedAt;
    console.log(`      sentinel: kill of the primary -> cross-node pushes again: ${failoverMs} ms`);
    expect(await redis.master()).to.equal(`127.0.0.1:${redis.replica.port}`);
    for (const node of [a, b]) {
      expect(node.running()).to.equal(true);
      expect(node.output()).to.include(`the sentinels name a new master 127.0.0.1:${redis.replica.port}`);
    }
    // the other way too, and stored pushes are accepted again
    await until(
      async () => {
        await publish(b, 'local', 'after, B to A');
        return legacyMessages(local).includes('after, B to A');
      },
      'a push at B to reach the page on A',
      10_000,
      100,
    );
    const after = await v1Push(b.apiUrl, { to: 'kept', data: 'after', ttl: 600 });
    expect(after.status).to.equal(200);

    // everything stored before the kill is there, on the promoted replica, and delivered once
    const late = await connectClient('v4', a.ioUrl);
    const reply = await late.request<{ ok: boolean; pending: number }>('login', 'kept');
    expect(reply).to.include({ ok: true, pending: kept.length + 1 });
    await late.waitFor('message', (m) => m === 'after');
    const delivered = late.received('message').map(([m]) => m);
    const lost = kept.filter((data) => !delivered.includes(data));
    console.log(`      sentinel: stored messages pushed before the failover: ${lost.length} of ${kept.length} lost`);
    expect(delivered).to.deep.equal([...kept, 'after']);
    // no password or secret in anything the nodes wrote
    for (const node of [a, b]) expect(node.output()).not.to.include(PUSH_SECRET);
  });

  it('follows a manual failover (SENTINEL FAILOVER): the old master, demoted to a replica, is left', async () => {
    const [a, b] = await Promise.all([startNode('A', redis.list), startNode('B', redis.list)]);
    const local = await pageOn(a, 'local', 'v2');
    const remote = await pageOn(b, 'remote', 'v4');
    await Promise.all([local, remote].map((c) => showsCounts(c, 2, 2)));
    const before = await v1Push(a.apiUrl, { to: 'kept', data: 'before', ttl: 600 });
    expect(before.status).to.equal(200);
    await redis.replicated();

    const startedAt = Date.now();
    expect(String(await redis.command(Number(redis.sentinels[1]!.split(':')[1]), ['SENTINEL', 'FAILOVER', MASTER_NAME]))).to.equal('OK');
    const switched = `the sentinels name a new master 127.0.0.1:${redis.replica.port}`;
    await Promise.all([a, b].map((n) => n.waitForOutput(new RegExp(switched), 10_000)));
    console.log(`      sentinel: SENTINEL FAILOVER -> both nodes on the new master: ${Date.now() - startedAt} ms`);
    // a push in the moment the clients move may answer 503 (told to retry, never lost): retried
    // as a backend does, with its id, so that a retry of one that was stored is not stored twice
    let after = { status: 0, json: null as unknown };
    await until(
      async () => (after = await v1Push(b.apiUrl, { id: 'after-failover', to: 'kept', data: 'after', ttl: 600 })).status !== 503,
      'a stored push at B to be answered after the failover',
      10_000,
      100,
    );
    expect(after.status, JSON.stringify(after.json)).to.equal(200);
    // the old primary lives on, and Sentinel makes it a replica of the new master (which
    // resyncs it: what only it held is gone), disconnecting its clients
    await until(
      async () => String(await redis.command(redis.primary.port, ['ROLE'])).startsWith('slave'),
      'the old primary to be a replica',
      20_000,
      100,
    );
    expect(await redis.master()).to.equal(`127.0.0.1:${redis.replica.port}`);
    for (const [from, page, to] of [[a, remote, 'remote'], [b, local, 'local']] as const) {
      await until(
        async () => {
          await publish(from, to, `to ${to}`);
          return legacyMessages(page).includes(`to ${to}`);
        },
        `a push at ${from.name} to reach the page of ${to}`,
        10_000,
        100,
      );
    }
    expect((await v1Push(a.apiUrl, { to: 'kept', data: 'last', ttl: 600 })).status).to.equal(200);
    const late = await connectClient('v4', a.ioUrl);
    expect(await late.request('login', 'kept')).to.include({ ok: true, pending: 3 });
    await late.waitFor('message', (m) => m === 'last');
    expect(late.received('message').map(([m]) => m)).to.deep.equal(['before', 'after', 'last']);
    for (const node of [a, b]) expect(node.output()).not.to.match(/READONLY/);
  });

  it('stops the start with one line when no sentinel answers or none knows the master', async () => {
    const gone = await freePort();
    const quiet = spawnStart([], {
      IO_PORT: '0',
      API_PORT: '0',
      WEB_PORT: 'off',
      REDIS_SENTINELS: `127.0.0.1:${gone}`,
      REDIS_SENTINEL_MASTER: MASTER_NAME,
      REDIS_PASSWORD: 'master-pass-4711',
      REDIS_SENTINEL_PASSWORD: 'sentinel-pass-4711',
    });
    expect((await quiet.exited).code).to.equal(1);
    expect(quiet.stderr().trim()).to.equal('push server: cannot start: REDIS_SENTINELS: no sentinel answers (ECONNREFUSED)');
    const unknown = spawnStart([], { IO_PORT: '0', API_PORT: '0', WEB_PORT: 'off', REDIS_SENTINELS: redis.list, REDIS_SENTINEL_MASTER: 'nope' });
    expect((await unknown.exited).code).to.equal(1);
    expect(unknown.stderr().trim()).to.equal(
      'push server: cannot start: REDIS_SENTINEL_MASTER "nope": no sentinel of REDIS_SENTINELS monitors that name',
    );
    for (const run of [quiet, unknown]) expect(run.output()).not.to.include('4711');
  });
});
