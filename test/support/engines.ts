// The feature suites on every engine: a server whose presence and stored/scheduled pushes
// live in memory (one node), one whose stored/scheduled pushes live on disk (STORE=embedded,
// in a data dir of its own), and one whose live in Redis (REDIS_URL: a cluster of one) on a
// redis-server the suite starts. The contract suites (test/contracts/) check each component
// alone; this checks the server wired to them, through its sockets and HTTP.
import { expect } from 'chai';
import type { Config } from '../../src/config.ts';
import type { Components } from '../../src/server.ts';
import { sharedRedis } from './redis-server.ts';
import { startServer, type TestServer } from './server.ts';

export type Engine = 'memory' | 'embedded' | 'redis';

/** startServer on one engine: the same overrides and components, plus REDIS_URL for redis. */
export type StartOn = (overrides?: Partial<Config>, components?: Components) => Promise<TestServer>;

/**
 * Declares `body` once per engine, in a describe named `title (engine)`. The Redis one starts
 * its redis-server before its tests (skipped, loudly, where redis-server is missing) and empties
 * it before each test, so tests keep apart as they do on fresh memory servers.
 */
export function forEachEngine(title: string, body: (start: StartOn, engine: Engine) => void): void {
  describe(`${title} (memory)`, () => {
    body(async (overrides, components) => {
      const server = await startServer({ store: 'memory', ...overrides }, components);
      expect(server.engine).to.equal('memory');
      return server;
    }, 'memory');
  });
  describe(`${title} (embedded)`, () => {
    body(async (overrides, components) => {
      // startServer gives it a DATA_DIR of its own, removed after it closes
      const server = await startServer({ store: 'embedded', ...overrides }, components);
      expect(server.engine).to.equal(components?.store ? 'memory' : 'embedded');
      return server;
    }, 'embedded');
  });
  describe(`${title} (redis)`, () => {
    const redis = sharedRedis();
    beforeEach(async () => {
      await redis.client().flushAll();
    });
    body(async (overrides = {}, components) => {
      const server = await startServer({ redisUrl: redis.server().url, ...overrides }, components);
      expect(server.engine).to.equal('redis');
      return server;
    }, 'redis');
  });
}
