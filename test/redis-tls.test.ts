// TLS to Redis: Sentinel mode with REDIS_TLS (the master) and REDIS_SENTINEL_TLS (the
// sentinels), and REDIS_URL's rediss://, all checked against one CA setting, REDIS_TLS_CA.
// Real redis-server processes speaking TLS only, with certificates the test makes (openssl):
// a CA, a server certificate it signed for 127.0.0.1, and a second CA that signed nothing.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { ConfigError, loadConfig } from '../src/config.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { makeCertificates, OPENSSL, type TestCertificates } from './support/certificates.ts';
import { connectClient, type TestClient } from './support/clients.ts';
import { HAS_CLUSTER_BINARIES, startRedisCluster } from './support/redis-cluster.ts';
import { answersPing, REDIS_SERVER, startRedis } from './support/redis-server.ts';
import { MASTER_NAME, startSentinels, type TestSentinels } from './support/redis-sentinel.ts';
import { legacyPush, startServer, type TestServer } from './support/server.ts';
import { spawnStart, type StartProcess } from './support/start-process.ts';
import { until } from './support/until.ts';

const PUSH_SECRET = 'redis-tls-test-secret-0123';
const MASTER_PASSWORD = 'master-pass-5309';
const SENTINEL_PASSWORD = 'sentinel-pass-5309';

async function publish(apiUrl: string, to: string, content: string): Promise<void> {
  const { status, body } = await legacyPush(apiUrl, { type: 'publish', to, content, secret: PUSH_SECRET });
  expect([status, body]).to.deep.equal([200, 'ok']);
}

async function storedPush(apiUrl: string, to: string, data: string): Promise<number> {
  const res = await fetch(`${apiUrl}/api/v1/push`, {
    method: 'POST',
    headers: { authorization: `Bearer ${PUSH_SECRET}`, 'content-type': 'application/json' },
    body: JSON.stringify({ to, data, ttl: 600 }),
    signal: AbortSignal.timeout(15_000),
  });
  await res.arrayBuffer();
  return res.status;
}

async function pageOn(ioUrl: string, uid: string, version: 'v2' | 'v4'): Promise<TestClient> {
  const client = await connectClient(version, ioUrl);
  await client.login(uid);
  return client;
}

/** Pushes at `from` until one reaches `page` (a cross-node push goes through Redis). */
async function reaches(from: string, page: TestClient, uid: string, what: string): Promise<void> {
  let n = 0;
  await until(
    async () => {
      await publish(from, uid, `${what} ${++n}`);
      return page.received('new_msg').some(([m]) => String(m).startsWith(`${what} `));
    },
    `a push (${what}) to reach the page of ${uid}`,
    15_000,
    100,
  );
}

/** A start.ts that must not start: its exit code and its stderr, which must be one line. */
async function refusedStart(env: Record<string, string>): Promise<string> {
  const run: StartProcess = spawnStart([], { IO_PORT: '0', API_PORT: '0', WEB_PORT: 'off', PUSH_SECRET, ...env });
  expect((await run.exited).code, run.output()).to.equal(1);
  const stderr = run.stderr().trim();
  expect(stderr.split('\n'), stderr).to.have.length(1);
  for (const secret of [MASTER_PASSWORD, SENTINEL_PASSWORD, PUSH_SECRET]) expect(run.output()).not.to.include(secret);
  return stderr;
}

describe('TLS to Redis', function () {
  this.timeout(90_000);
  let certs: TestCertificates;

  before(function () {
    if (!REDIS_SERVER || !OPENSSL) return this.skip();
    certs = makeCertificates();
  });
  after(() => certs?.close());
  afterEach(cleanupAll);

  describe('Sentinel, sentinels and data nodes on TLS only, with passwords', () => {
    let redis: TestSentinels;
    let env: Record<string, string>;

    beforeEach(async () => {
      redis = await startSentinels({ tls: certs, sentinelTls: true, password: MASTER_PASSWORD, sentinelPassword: SENTINEL_PASSWORD });
      onCleanup(() => redis.close()); // registered before the nodes, so closed after them
      env = {
        REDIS_SENTINELS: redis.list,
        REDIS_SENTINEL_MASTER: MASTER_NAME,
        REDIS_PASSWORD: MASTER_PASSWORD,
        REDIS_SENTINEL_PASSWORD: SENTINEL_PASSWORD,
        REDIS_TLS: 'on',
        REDIS_SENTINEL_TLS: 'on',
        REDIS_TLS_CA: certs.ca,
      };
    });

    it('connects, logins and pushes work across nodes, stored messages are delivered, and a manual failover is followed over TLS', async () => {
      // no plain-text port: every Redis of the set answers PING over TLS only
      const ca = readFileSync(certs.ca);
      for (const port of [redis.primary.port, redis.replica.port, ...redis.sentinels.map((s) => Number(s.split(':')[1]))]) {
        expect(await answersPing(port), `plain-text PING to ${port}`).to.equal(false);
        expect(await answersPing(port, ca), `TLS PING to ${port}`).to.equal(true);
      }
      // A through start.ts with the settings as an operator gives them, B in this process
      const a = spawnStart([], { IO_PORT: '0', API_PORT: '0', WEB_PORT: 'off', ONLINE_COUNT_INTERVAL_MS: '100', PUSH_SECRET, ...env }, 'A');
      const { ioUrl, apiUrl } = await a.started();
      expect(a.stdout()).to.include('engine redis-sentinel');
      const b: TestServer = await startServer({
        pushSecret: PUSH_SECRET,
        redisSentinels: redis.sentinels.map((s) => ({ host: '127.0.0.1', port: Number(s.split(':')[1]) })),
        redisSentinelMaster: MASTER_NAME,
        redisPassword: MASTER_PASSWORD,
        redisSentinelPassword: SENTINEL_PASSWORD,
        redisTls: true,
        redisSentinelTls: true,
        redisTlsCa: certs.ca,
      });
      const onA = await pageOn(ioUrl, 'on-a', 'v2');
      const onB = await pageOn(b.ioUrl, 'on-b', 'v4');
      await reaches(apiUrl, onB, 'on-b', 'A to B');
      await reaches(b.apiUrl, onA, 'on-a', 'B to A');
      expect(await storedPush(apiUrl, 'kept', 'before')).to.equal(200);
      await redis.replicated();

      // the +switch-master subscription and the new master's clients are TLS connections too
      const startedAt = Date.now();
      expect(String(await redis.command(Number(redis.sentinels[1]!.split(':')[1]), ['SENTINEL', 'FAILOVER', MASTER_NAME]))).to.equal('OK');
      await a.waitForOutput(new RegExp(`the sentinels name a new master 127\\.0\\.0\\.1:${redis.replica.port}`), 15_000);
      console.log(`      sentinel over TLS: SENTINEL FAILOVER -> node A follows the new master: ${Date.now() - startedAt} ms`);
      // once the old master is a replica it refuses writes: a stored push answered 200 then is on the new one
      await until(
        async () => String(await redis.command(redis.primary.port, ['ROLE'])).startsWith('slave'),
        'the old primary to be a replica',
        20_000,
        100,
      );
      for (const [node, data] of [[apiUrl, 'after A'], [b.apiUrl, 'after B']] as const) {
        await until(async () => (await storedPush(node, 'kept', data)) === 200, `a stored push (${data}) after the failover`, 15_000, 100);
      }
      await reaches(apiUrl, onB, 'on-b', 'A to B after');
      await reaches(b.apiUrl, onA, 'on-a', 'B to A after');
      expect(await redis.master()).to.equal(`127.0.0.1:${redis.replica.port}`);

      const late = await connectClient('v4', ioUrl);
      expect(await late.request('login', 'kept')).to.include({ ok: true, pending: 3 });
      await until(() => late.received('message').length === 3, 'the 3 stored messages', 5000);
      expect(late.received('message').map(([m]) => m)).to.deep.equal(['before', 'after A', 'after B']);
      for (const secret of [MASTER_PASSWORD, SENTINEL_PASSWORD, PUSH_SECRET]) expect(a.output()).not.to.include(secret);
    });

    it('stops the start with one line, without a password, in plain text to TLS ports or with a CA that did not sign them', async () => {
      // the sentinels in plain text: they close the connection
      expect(await refusedStart({ ...env, REDIS_SENTINEL_TLS: 'off' })).to.match(
        /^push server: cannot start: REDIS_SENTINELS: no sentinel answers \((Socket closed unexpectedly|ECONNRESET)\)$/,
      );
      // the sentinels over TLS, the master in plain text
      expect(await refusedStart({ ...env, REDIS_TLS: 'off' })).to.match(
        new RegExp(`^push server: cannot start: REDIS_SENTINEL_MASTER "${MASTER_NAME}" at 127\\.0\\.0\\.1:${redis.primary.port}: cannot connect \\((Socket closed unexpectedly|ECONNRESET)\\)$`),
      );
      // a CA that signed neither: the first connection, to a sentinel, fails its check
      expect(await refusedStart({ ...env, REDIS_TLS_CA: certs.otherCa })).to.match(
        /^push server: cannot start: REDIS_SENTINELS: no sentinel answers \(TLS certificate refused: [A-Z_]+, checked against REDIS_TLS_CA\)$/,
      );
      // no CA at all: the system's CAs do not know the test's
      expect(await refusedStart({ ...env, REDIS_TLS_CA: '' })).to.match(
        /^push server: cannot start: REDIS_SENTINELS: no sentinel answers \(TLS certificate refused: [A-Z_]+, checked against the system's CAs \(REDIS_TLS_CA names others\)\)$/,
      );
    });
  });

  it('Sentinel with TLS on the data nodes only: REDIS_TLS without REDIS_SENTINEL_TLS', async () => {
    const redis = await startSentinels({ tls: certs, sentinelTls: false });
    onCleanup(() => redis.close());
    const sentinelPort = Number(redis.sentinels[0]!.split(':')[1]);
    expect(await answersPing(sentinelPort), 'a sentinel in plain text').to.equal(true);
    expect(await answersPing(redis.primary.port), 'the master in plain text').to.equal(false);
    const settings = { REDIS_SENTINELS: redis.list, REDIS_SENTINEL_MASTER: MASTER_NAME, REDIS_TLS_CA: certs.ca };
    const node = spawnStart([], { IO_PORT: '0', API_PORT: '0', WEB_PORT: 'off', PUSH_SECRET, ...settings, REDIS_TLS: 'on' });
    const { ioUrl, apiUrl } = await node.started();
    const page = await pageOn(ioUrl, 'split', 'v4');
    await publish(apiUrl, 'split', 'over TLS to the master');
    await page.waitFor('new_msg', (m) => m === 'over TLS to the master');
    expect(await storedPush(apiUrl, 'split-kept', 'kept')).to.equal(200);
    expect(await (await connectClient('v2', ioUrl)).request('login', 'split-kept')).to.include({ ok: true, pending: 1 });
    // TLS asked of plain-text sentinels: none answers within the command timeout
    expect(await refusedStart({ ...settings, REDIS_TLS: 'on', REDIS_SENTINEL_TLS: 'on', REDIS_COMMAND_TIMEOUT_MS: '300' })).to.match(
      /^push server: cannot start: REDIS_SENTINELS: no sentinel answers \(.+\)$/,
    );
  });

  it('REDIS_URL rediss:// checks the certificate against the same REDIS_TLS_CA', async () => {
    const redis = await startRedis({ tls: certs, args: ['--requirepass', MASTER_PASSWORD] });
    onCleanup(() => redis.stop());
    const url = `rediss://:${MASTER_PASSWORD}@127.0.0.1:${redis.port}`;
    const server = await startServer({ pushSecret: PUSH_SECRET, redisUrl: url, redisTlsCa: certs.ca });
    expect(server.engine).to.equal('redis');
    const page = await pageOn(server.ioUrl, 'url', 'v2');
    await publish(server.apiUrl, 'url', 'over rediss');
    await page.waitFor('new_msg', (m) => m === 'over rediss');
    expect(await storedPush(server.apiUrl, 'url-kept', 'kept')).to.equal(200);

    const shown = `rediss://***@127.0.0.1:${redis.port}`;
    expect(await refusedStart({ REDIS_URL: url, REDIS_TLS_CA: certs.otherCa })).to.match(
      new RegExp(`^push server: cannot start: REDIS_URL ${shown.replace(/[.*]/g, '\\$&')}: cannot connect \\(TLS certificate refused: [A-Z_]+, checked against REDIS_TLS_CA\\)$`),
    );
    expect(await refusedStart({ REDIS_URL: url.replace('rediss:', 'redis:') })).to.match(
      new RegExp(`^push server: cannot start: REDIS_URL redis://\\*\\*\\*@127\\.0\\.0\\.1:${redis.port}: cannot connect \\((Socket closed unexpectedly|ECONNRESET)\\)$`),
    );
  });

  it('REDIS_CLUSTER rediss:// seeds: every node the cluster names over TLS, checked against REDIS_TLS_CA', async function () {
    if (!HAS_CLUSTER_BINARIES) return this.skip();
    const cluster = await startRedisCluster({ tls: certs });
    onCleanup(() => cluster.close());
    const seeds = cluster.seeds.slice(0, 2).map((s) => `rediss://${s}`).join(',');
    const server = await startServer({ pushSecret: PUSH_SECRET, redisCluster: seeds.split(','), redisTlsCa: certs.ca });
    expect(server.engine).to.equal('redis-cluster');
    const page = await pageOn(server.ioUrl, 'cluster', 'v4');
    await publish(server.apiUrl, 'cluster', 'over TLS to the cluster');
    await page.waitFor('new_msg', (m) => m === 'over TLS to the cluster');
    // stored on the slot of its uid, whichever master that is; confirmed by its replica (WAIT)
    expect(await storedPush(server.apiUrl, 'cluster-kept', 'kept')).to.equal(200);
    expect(await (await connectClient('v2', server.ioUrl)).request('login', 'cluster-kept')).to.include({ ok: true, pending: 1 });
    // node-redis's own error says only "All the root nodes are unavailable"; the seed's says why
    expect(await refusedStart({ REDIS_CLUSTER: seeds, REDIS_TLS_CA: certs.otherCa })).to.match(
      /^push server: cannot start: REDIS_CLUSTER cluster rediss:\/\/127\.0\.0\.1:\d+ \(\+1 seeds\): cannot connect \(TLS certificate refused: [A-Z_]+, checked against REDIS_TLS_CA\)$/,
    );
  });

  it('refuses TLS settings that do nothing, and a CA file that cannot be read or holds no certificate, with one line', async () => {
    expect(() => loadConfig({ REDIS_TLS: 'on' })).to.throw(ConfigError, 'REDIS_TLS goes with REDIS_SENTINELS (REDIS_URL and REDIS_CLUSTER ask for TLS by rediss://)');
    expect(() => loadConfig({ REDIS_SENTINEL_TLS: 'on', REDIS_URL: 'rediss://h:1' })).to.throw(ConfigError, 'REDIS_SENTINEL_TLS goes with REDIS_SENTINELS');
    expect(() => loadConfig({ REDIS_TLS: 'yes' })).to.throw(ConfigError, 'REDIS_TLS must be on or off, got "yes"');
    // a CA and no TLS: a switch forgotten, which would have connected in plain text
    for (const env of [{ REDIS_URL: 'redis://h:1' }, { REDIS_SENTINELS: 'h:1', REDIS_SENTINEL_MASTER: 'm' }, { REDIS_CLUSTER: 'h:1,h:2' }, {}]) {
      expect(() => loadConfig({ ...env, REDIS_TLS_CA: certs.ca }), JSON.stringify(env)).to.throw(ConfigError, 'REDIS_TLS_CA goes with a TLS connection to Redis');
    }
    for (const env of [{ REDIS_URL: 'rediss://h:1' }, { REDIS_CLUSTER: 'h:1,rediss://h:2' }, { REDIS_SENTINELS: 'h:1', REDIS_SENTINEL_MASTER: 'm', REDIS_TLS: 'on' }, { REDIS_SENTINELS: 'h:1', REDIS_SENTINEL_MASTER: 'm', REDIS_SENTINEL_TLS: 'on' }]) {
      expect(loadConfig({ ...env, REDIS_TLS_CA: certs.ca }).redisTlsCa, JSON.stringify(env)).to.equal(certs.ca);
    }
    // checked before any connection: no Redis is needed to see it
    const url = 'rediss://:secret-pass-5309@127.0.0.1:1';
    const startWith = async (redisTlsCa: string): Promise<string> => {
      try {
        await startServer({ redisUrl: url, redisTlsCa });
      } catch (err) {
        return (err as Error).message;
      }
      throw new Error('it started');
    };
    expect(await startWith('/nonexistent/ca.pem')).to.equal('REDIS_TLS_CA /nonexistent/ca.pem: cannot read (ENOENT)');
    expect(await startWith(certs.key)).to.equal(`REDIS_TLS_CA ${certs.key}: no PEM certificate in it`);
  });
});
