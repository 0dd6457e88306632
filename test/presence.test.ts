// Presence: the contract against memory and Redis, then what only a cluster has: several
// nodes on one Redis, a node that dies without a goodbye, and a Redis that restarts empty.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { silentLogger, type Logger } from '../src/log.ts';
import { MemoryPresence } from '../src/presence.ts';
import { RedisPresence } from '../src/cluster/redis-presence.ts';
import { presenceContract } from './contracts/presence.contract.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { sharedRedis, startRedis } from './support/redis-server.ts';
import { recordingLogger } from './support/logger.ts';
import { holdsFor, until } from './support/until.ts';
import { closeRedis, connectRedis, type RedisClient } from '../src/cluster/redis-client.ts';

const ROOT = new URL('..', import.meta.url).pathname;

/** Short enough for tests; the defaults are 6000 / 2000. */
const LEASE_MS = 600;
const HEARTBEAT_MS = 200;

presenceContract('memory', async () => new MemoryPresence());

describe('RedisPresence', () => {
  const shared = sharedRedis();
  let tests = 0;
  /** Every test its own keys on the shared redis-server. */
  const freshPrefix = () => `presence-test-${++tests}:`;

  afterEach(cleanupAll);

  function node(id: string, prefix: string, options: { client?: RedisClient; log?: Logger } = {}): RedisPresence {
    const presence = new RedisPresence(options.client ?? shared.client(), id, options.log ?? silentLogger, {
      prefix,
      leaseMs: LEASE_MS,
      heartbeatMs: HEARTBEAT_MS,
    });
    onCleanup(() => presence.close());
    return presence;
  }

  presenceContract('redis', async () => new RedisPresence(shared.client(), 'node-a', silentLogger, { prefix: freshPrefix() }));

  it('answers first and last page, online and counts for the whole cluster', async () => {
    const prefix = freshPrefix();
    const a = node('a', prefix);
    const b = node('b', prefix);
    expect(await a.addPage('u')).to.equal(true);
    expect(await b.addPage('u')).to.equal(false); // u has a page on a already
    expect(await b.isOnline('u')).to.equal(true);
    expect(await b.addPage('v')).to.equal(true);
    expect(await a.isOnline('v')).to.equal(true);
    for (const p of [a, b]) expect(await p.counts()).to.deep.equal({ users: 2, pages: 3 });
    expect(await a.removePage('u')).to.equal(false); // still on b
    expect(await a.isOnline('u')).to.equal(true);
    expect(await b.removePage('u')).to.equal(true);
    expect(await a.isOnline('u')).to.equal(false);
    expect(await a.removePage('v')).to.equal(false); // v's page is b's to remove
    expect(await a.counts()).to.deep.equal({ users: 1, pages: 1 });
  });

  it('keeps a live node past its lease: the heartbeat renews it', async () => {
    const prefix = freshPrefix();
    const a = node('a', prefix);
    const b = node('b', prefix);
    await a.addPage('u');
    await holdsFor(async () => (await b.isOnline('u')) && (await b.counts()).pages === 1, "a's page as b sees it", 4 * LEASE_MS);
  });

  it('removes the pages of a node at once when it closes', async () => {
    const prefix = freshPrefix();
    const a = node('a', prefix);
    const b = node('b', prefix);
    await a.addPage('u');
    await b.addPage('u');
    await b.addPage('v');
    await b.close();
    expect(await a.counts()).to.deep.equal({ users: 1, pages: 1 });
    expect(await a.isOnline('v')).to.equal(false);
    expect(await a.removePage('u')).to.equal(true);
  });

  it('drops the pages of a killed node within its lease, once, whichever nodes reap it', async function () {
    this.timeout(30_000);
    const prefix = freshPrefix();
    const log = recordingLogger();
    const a = node('a', prefix, { log });
    const b = node('b', prefix, { log }); // a and b both reap; the pages must go once
    await a.addPage('x');

    // a real node process: registers, adds pages, heartbeats, and is then SIGKILLed
    const src = (file: string) => JSON.stringify(new URL(`../src/${file}`, import.meta.url).href);
    const program = `
      import { silentLogger } from ${src('log.ts')};
      import { RedisPresence } from ${src('cluster/redis-presence.ts')};
      import { connectRedis } from ${src('cluster/redis-client.ts')};
      const client = await connectRedis(process.env.REDIS_URL, silentLogger);
      const presence = new RedisPresence(client, 'doomed', silentLogger,
        { prefix: process.env.PREFIX, leaseMs: ${LEASE_MS}, heartbeatMs: ${HEARTBEAT_MS} });
      await presence.addPage('x');
      await presence.addPage('x');
      await presence.addPage('y');
      console.log('ready');
      setInterval(() => {}, 60_000); // lives until killed
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', program], {
      cwd: ROOT,
      env: { ...process.env, REDIS_URL: shared.server().url, PREFIX: prefix },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = once(child, 'exit');
    onCleanup(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    await until(() => stdout.includes('ready') || child.exitCode !== null, 'the node process to start', 15_000);
    expect(stdout.trim(), stderr).to.equal('ready');

    expect(await a.counts()).to.deep.equal({ users: 2, pages: 4 });
    // alive, it outlives its lease
    await holdsFor(async () => (await a.counts()).pages === 4, "the node process's pages", 2 * LEASE_MS);

    child.kill('SIGKILL');
    await exited;
    await until(
      async () => (await a.counts()).pages === 1,
      "the killed node's pages to go",
      LEASE_MS + HEARTBEAT_MS + 1000,
    );
    expect(await a.counts()).to.deep.equal({ users: 1, pages: 1 }); // x still has a's page
    expect(await b.isOnline('x')).to.equal(true);
    expect(await b.isOnline('y')).to.equal(false);
    expect(log.lines.filter((l) => l.includes('node doomed stopped heartbeating'))).to.have.length(1);
    // and they stay right: no later beat subtracts them again
    await holdsFor(async () => (await b.counts()).pages === 1, 'the counts after the reap', 2 * HEARTBEAT_MS);
    expect(await a.removePage('x')).to.equal(true);
  });

  it('writes every node\'s pages back after Redis restarts empty, logging the outage once', async function () {
    this.timeout(30_000);
    const own = await startRedis(); // restarted below: not the shared one
    onCleanup(() => own.stop());
    const prefix = freshPrefix();
    const logA = recordingLogger();
    const logB = recordingLogger();
    const clientA = await connectRedis(own.url, logA);
    onCleanup(() => closeRedis(clientA));
    const clientB = await connectRedis(own.url, logB);
    onCleanup(() => closeRedis(clientB));
    const a = node('a', prefix, { client: clientA, log: logA });
    const b = node('b', prefix, { client: clientB, log: logB });
    await a.addPage('u');
    await a.addPage('v');
    await b.addPage('u');
    await b.addPage('w');
    expect(await a.counts()).to.deep.equal({ users: 3, pages: 4 });

    await own.stop();
    // while it is away, calls answer at once (no queueing for the outage) from what the node
    // knows: the last cluster totals, and its own pages for isOnline
    const started = Date.now();
    expect(await a.counts()).to.deep.equal({ users: 3, pages: 4 });
    expect(await a.isOnline('v')).to.equal(true); // a's own page
    expect(await a.isOnline('w')).to.equal(false); // only on b: unknown to a now
    expect(Date.now() - started).to.be.below(3000);
    await until(
      () => [logA, logB].every((log) => log.lines.some((l) => l.includes('heartbeat') && l.includes('failed'))),
      'both heartbeats to fail',
    );
    // a page that comes and goes during the outage: Redis never hears of it, the mirror does
    await a.addPage('z').catch(() => false);
    await a.addPage('u').catch(() => false);
    await a.removePage('u').catch(() => false);

    await own.start();
    await until(
      async () => JSON.stringify(await a.counts().catch(() => null)) === JSON.stringify({ users: 4, pages: 5 }),
      'the pages to be written back',
      10_000,
    );
    for (const uid of ['u', 'v', 'w', 'z']) expect(await b.isOnline(uid)).to.equal(true);
    expect(await a.removePage('u')).to.equal(false); // b's page of u was written back too
    expect(await b.removePage('u')).to.equal(true);

    for (const log of [logA, logB]) {
      const count = (pattern: RegExp) => log.lines.filter((l) => pattern.test(l)).length;
      expect(count(/connection lost/), log.lines.join('\n')).to.equal(1);
      expect(count(/connected again/), log.lines.join('\n')).to.equal(1);
      expect(count(/heartbeat .* failed/), log.lines.join('\n')).to.equal(1);
      expect(count(/heartbeat .* works again/), log.lines.join('\n')).to.equal(1);
      expect(count(/^error/), log.lines.join('\n')).to.equal(0);
    }
  });

  it('writes 150 000 uids of one node back after Redis restarts empty, with the totals right', async function () {
    this.timeout(30_000);
    const own = await startRedis();
    onCleanup(() => own.stop());
    const prefix = freshPrefix();
    const clientA = await connectRedis(own.url, silentLogger);
    onCleanup(() => closeRedis(clientA));
    const clientB = await connectRedis(own.url, silentLogger);
    onCleanup(() => closeRedis(clientB));
    const options = { prefix, leaseMs: 5000, heartbeatMs: HEARTBEAT_MS };
    const a = new RedisPresence(clientA, 'a', silentLogger, options);
    onCleanup(() => a.close());
    const b = new RedisPresence(clientB, 'b', silentLogger, options);
    onCleanup(() => b.close());
    await b.addPage('u0');
    await b.addPage('only-b');

    // the pages arrive while Redis is away: only a's mirror holds them, so the heartbeat after
    // the restart (empty) must write all of them at once
    await own.stop();
    await until(() => !clientA.isReady, 'client a to see Redis gone');
    const UIDS = 150_000;
    await Promise.all(Array.from({ length: UIDS }, (_, i) => a.addPage(`u${i}`)));
    await own.start();

    const expected = JSON.stringify({ users: UIDS + 1, pages: UIDS + 2 }); // u0 is on both
    await until(
      async () => JSON.stringify(await b.counts().catch(() => null)) === expected,
      `the counts to be ${expected}`,
      20_000,
      100,
    );
    expect(await clientB.hLen(`${prefix}presence:node:a`)).to.equal(UIDS);
    expect(await clientB.exists(`${prefix}presence:node:a:next`)).to.equal(0); // no staging left
    expect(await b.pagesOf('u0')).to.equal(2);
    expect(await b.pagesOf(`u${UIDS - 1}`)).to.equal(1);
    // still counted right afterwards: the last page of a uid on a goes, b's stays
    expect(await a.removePage('u0')).to.equal(false);
    expect(await b.removePage('u0')).to.equal(true);
    expect(await b.counts()).to.deep.equal({ users: UIDS, pages: UIDS });
  });
});
