// A Redis that stops answering without closing its connections (SIGSTOP: a frozen process or
// VM). Pushes that need it answer 503 instead of hanging, /readyz says so, everything works
// again once it answers, and a node told to stop still stops.
import { expect } from 'chai';
import { connect, type Socket } from 'node:net';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { withDeadline } from './support/clients.ts';
import { startNodeProcess } from './support/start-process.ts';
import { REDIS_SERVER, startRedis, type TestRedis } from './support/redis-server.ts';
import { startServer } from './support/server.ts';
import { until } from './support/until.ts';

/** Far above any timeout in play: only a hang reaches it. */
const HANG_MS = 15_000;

async function pushStored(apiUrl: string, uid: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${apiUrl}/api/v1/push`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ to: uid, data: 'kept', ttl: 60 }),
    signal: AbortSignal.timeout(HANG_MS),
  });
  return { status: res.status, text: await res.text() };
}

async function readyStatus(apiUrl: string): Promise<number> {
  const res = await fetch(`${apiUrl}/readyz`, { signal: AbortSignal.timeout(HANG_MS) });
  await res.arrayBuffer();
  return res.status;
}

describe('a Redis that stops answering', function () {
  this.timeout(30_000);
  let redis: TestRedis;

  beforeEach(async function () {
    if (!REDIS_SERVER) return this.skip();
    redis = await startRedis();
    onCleanup(() => redis.stop()); // stop() resumes a paused server first
  });
  afterEach(cleanupAll);

  it('answers a push that must be stored with 503 and /readyz with 503, and recovers when it answers again', async () => {
    const server = await startServer({ redisUrl: redis.url, redisCommandTimeoutMs: 500 });
    onCleanup(() => redis.resume()); // before the server closes: a failed test leaves it paused
    expect((await pushStored(server.apiUrl, 'before')).status).to.equal(200);
    expect(await readyStatus(server.apiUrl)).to.equal(200);

    redis.pause();
    const during = await pushStored(server.apiUrl, 'during');
    expect(during.status).to.equal(503);
    expect(during.text).to.match(/redis .* unavailable/);
    expect(await readyStatus(server.apiUrl)).to.equal(503);

    redis.resume();
    await until(async () => (await readyStatus(server.apiUrl)) === 200, '/readyz to answer 200 again', 10_000);
    expect((await pushStored(server.apiUrl, 'after')).status).to.equal(200);
  });

  it('ends a node on SIGTERM within SHUTDOWN_TIMEOUT_MS and a margin even when closing hangs', async () => {
    // a command timeout far away: leaving Redis hangs, and only the deadline ends the process
    const node = await startNodeProcess('a', redis.url, { SHUTDOWN_TIMEOUT_MS: '1', REDIS_COMMAND_TIMEOUT_MS: '600000' });
    redis.pause();
    const exit = await withDeadline(node.stop(), 'the node to exit after SIGTERM', HANG_MS);
    expect(exit.code).to.equal(1);
    expect(node.output()).to.match(/shutdown did not finish within \d+ ms: exiting/);
  });

  it('exits at once on a second SIGTERM during a slow shutdown', async () => {
    const node = await startNodeProcess('a', redis.url, { SHUTDOWN_TIMEOUT_MS: '60000', REDIS_COMMAND_TIMEOUT_MS: '600000' });
    // a request that never finishes keeps the API port open for SHUTDOWN_TIMEOUT_MS
    const slow: Socket = connect(Number(new URL(node.apiUrl).port), '127.0.0.1');
    slow.on('error', () => {}); // the node may cut it as it exits
    onCleanup(() => slow.destroy());
    await new Promise((resolve) => slow.once('connect', resolve));
    slow.write('POST /api/v1/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{');
    redis.pause();
    void node.stop();
    await node.waitForOutput(/SIGTERM: shutting down/);
    expect(node.running()).to.equal(true);
    const exit = await withDeadline(node.stop(), 'the node to exit after a second SIGTERM', 5000);
    expect(exit.code).to.equal(1);
    expect(node.output()).to.include('SIGTERM again: exiting without finishing the shutdown');
  });
});
