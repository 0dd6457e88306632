// What a node says at start about the Redis it joins: whether a Redis restart (or a full
// Redis) would lose stored messages, scheduled pushes and idempotency keys. Each case is a
// test-owned redis-server configured as an operator might have it.
import { expect } from 'chai';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { recordingLogger } from './support/logger.ts';
import { REDIS_SERVER, startRedis, type RedisOptions } from './support/redis-server.ts';
import { connectCluster } from '../src/cluster/components.ts';

/** The warnings a node logs while it joins a Redis started with `options`. */
async function warningsJoining(options: RedisOptions): Promise<string[]> {
  const redis = await startRedis(options);
  onCleanup(() => redis.close());
  const log = recordingLogger();
  const cluster = await connectCluster(redis.url, log);
  onCleanup(() => cluster.close());
  return log.entries.filter((e) => e.level === 'warn').map((e) => e.message);
}

describe('the Redis persistence check at start', function () {
  this.timeout(15_000);
  beforeEach(function () {
    if (!REDIS_SERVER) return this.skip();
  });
  afterEach(cleanupAll);

  it('warns once when the Redis has neither AOF nor RDB', async () => {
    const warnings = await warningsJoining({}); // the test Redis's default: --save '' --appendonly no
    expect(warnings).to.have.length(1);
    expect(warnings[0]).to.match(/^redis redis:\/\/127\.0\.0\.1:\d+: persistence is off \(appendonly no, save ""\): stored messages, .* lost when Redis restarts; set appendonly yes/);
  });

  it('says nothing about a Redis with AOF on', async () => {
    expect(await warningsJoining({ persist: true })).to.deep.equal([]);
  });

  it('says nothing about a Redis with RDB snapshots only (no AOF)', async () => {
    expect(await warningsJoining({ args: ['--save', '60 1'] })).to.deep.equal([]);
  });

  it('says once that it could not check when the Redis refuses CONFIG (a managed Redis)', async () => {
    const warnings = await warningsJoining({ args: ['--rename-command', 'CONFIG', ''] });
    expect(warnings).to.have.length(1);
    expect(warnings[0]).to.match(/^redis redis:\/\/127\.0\.0\.1:\d+: could not check its persistence \(CONFIG GET refused: ERR unknown command/);
    expect(warnings[0]).to.include('survive a Redis restart only with appendonly yes');
  });

  it('warns when a full Redis would evict keys (maxmemory with a policy other than noeviction)', async () => {
    const warnings = await warningsJoining({ persist: true, args: ['--maxmemory', '100mb', '--maxmemory-policy', 'volatile-lru'] });
    expect(warnings).to.have.length(1);
    expect(warnings[0]).to.match(/maxmemory-policy volatile-lru with maxmemory 104857600: a full Redis evicts stored messages.*; set maxmemory-policy noeviction$/);
    // noeviction, or no maxmemory at all: nothing to say
    expect(await warningsJoining({ persist: true, args: ['--maxmemory', '100mb', '--maxmemory-policy', 'noeviction'] })).to.deep.equal([]);
    expect(await warningsJoining({ persist: true, args: ['--maxmemory-policy', 'allkeys-lru'] })).to.deep.equal([]);
  });
});
