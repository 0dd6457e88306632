// A real redis-server per test file (or per test) on a free port of 127.0.0.1, never the
// shared 6379. By default it keeps no data on disk, so a stop + start is a Redis that lost
// everything: the cluster tests use that to simulate an outage. With `persist` it keeps an
// AOF (appendfsync everysec) in a temp dir of its own, and a stop + start loads it back.
// With `tls` it speaks TLS only (no plain-text port), and replicates over TLS.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findBinary } from './requirements.ts';
import { until } from './until.ts';
import { silentLogger } from '../../src/log.ts';
import { closeRedis, connectRedis, type RedisClient } from '../../src/cluster/redis-client.ts';

export const REDIS_SERVER = findBinary('redis-server', ['/usr/bin/redis-server', '/usr/local/bin/redis-server']);

/** How long a starting redis-server may take to answer PING. */
const START_MS = 10_000;

export interface TestRedis {
  url: string;
  port: number;
  /** Kills the server (SIGKILL, as a crash); resolves once it has exited. Idempotent. */
  stop(): Promise<void>;
  /**
   * Starts it again on the same port; resolves once it answers PING. Empty, unless started
   * with `persist`: then with what its AOF held (the AOF is loaded before it answers PING).
   */
  start(): Promise<void>;
  /**
   * Resolves once everything this Redis has answered is written to its AOF file (INFO
   * persistence `aof_buffer_length:0`), so a SIGKILL of the process cannot lose it: the
   * written file outlives the process in the OS page cache. Redis writes before it replies,
   * except on a slow disk, where appendfsync everysec may hold writes back for up to 2 s while
   * an fsync runs; waiting here keeps a test's claim true there too. Rejects without `persist`.
   */
  aofWritten(): Promise<void>;
  /** stop(), then removes the data dir of a `persist` Redis. Idempotent. */
  close(): Promise<void>;
  /**
   * SIGSTOP: the process stops answering while its connections stay open, as a frozen Redis.
   * stop() resumes it first, so a failing test never leaves it frozen.
   */
  pause(): void;
  /** SIGCONT after pause(). Idempotent. */
  resume(): void;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** PEM files of a Redis that speaks TLS: its certificate and key, and the CA that signed them. */
export interface RedisTlsFiles {
  cert: string;
  key: string;
  ca: string;
}

/** redis-server's arguments for TLS only (`--port 0`) on `port`; clients need no certificate. */
export function redisTlsArgs(port: number, files: RedisTlsFiles): string[] {
  return [
    '--port', '0', '--tls-port', String(port),
    '--tls-cert-file', files.cert, '--tls-key-file', files.key, '--tls-ca-cert-file', files.ca,
    '--tls-auth-clients', 'no', '--tls-replication', 'yes',
  ];
}

/**
 * True when a redis-server on `port` answers PING with PONG (or NOAUTH: up, with a password),
 * over TLS checked against `ca` when given.
 */
export function answersPing(port: number, ca?: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = ca ? tlsConnect({ host: '127.0.0.1', port, ca }) : connect(port, '127.0.0.1');
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once(ca ? 'secureConnect' : 'connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG') || reply.startsWith('-NOAUTH'));
    });
  });
}

export interface RedisOptions {
  /** AOF on, appendfsync everysec, in a temp dir of its own that close() removes. */
  persist?: boolean;
  /** More redis-server arguments, e.g. ['--rename-command', 'CONFIG', ''] (a managed Redis). */
  args?: string[];
  /** TLS only, with these files; `url` is then rediss://. */
  tls?: RedisTlsFiles;
}

/**
 * Starts a redis-server on a free port. The caller stops it (after(), or onCleanup): with
 * close() when it was started with `persist`, so its data dir goes too.
 */
export async function startRedis(options: RedisOptions = {}): Promise<TestRedis> {
  if (!REDIS_SERVER) throw new Error('redis-server is missing');
  const binary = REDIS_SERVER;
  const port = await freePort();
  const dir = options.persist ? mkdtempSync(join(tmpdir(), 'push-redis-')) : null;
  const persistence = dir
    ? ['--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec', '--dir', dir]
    : ['--save', '', '--appendonly', 'no'];
  let child: ChildProcess | null = null;
  let exited: Promise<unknown> = Promise.resolve();
  let output = '';
  const tls = options.tls;
  const ca = tls ? readFileSync(tls.ca) : undefined;
  const listen = tls ? redisTlsArgs(port, tls) : ['--port', String(port)];

  const start = async (): Promise<void> => {
    if (child) return;
    output = '';
    const proc = spawn(
      binary,
      [...listen, '--bind', '127.0.0.1', ...persistence, '--logfile', '', ...(options.args ?? [])],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = proc;
    let failed: Error | null = null;
    // `once` also takes a spawn 'error' (it rejects); kept so the wait below can give up
    exited = once(proc, 'exit').catch((err: Error) => (failed = err));
    // kept for the error message when it does not come up; the pipes must be drained anyway
    const keep = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000));
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    const gone = () => failed !== null || proc.exitCode !== null || proc.signalCode !== null;
    try {
      await until(async () => gone() || (await answersPing(port, ca)), `redis-server on port ${port} to answer PING`, START_MS);
      if (gone()) throw new Error('it exited');
    } catch (err) {
      await stop();
      throw new Error(`redis-server on port ${port} did not come up (${(err as Error).message}):\n${failed ? String(failed) : output}`);
    }
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    if (!proc) return;
    child = null;
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGCONT'); // a stopped process dies of SIGKILL too; this spares any doubt
      proc.kill('SIGKILL');
    }
    await exited;
  };

  const signal = (sig: 'SIGSTOP' | 'SIGCONT') => {
    if (!child) throw new Error(`redis-server on port ${port} is not running`);
    child.kill(sig);
  };

  const url = `${tls ? 'rediss' : 'redis'}://127.0.0.1:${port}`;
  const aofWritten = async (): Promise<void> => {
    if (!dir) throw new Error('aofWritten() needs a Redis started with persist');
    if (tls) throw new Error('aofWritten() is for a plain-text Redis');
    const client = await connectRedis(url, silentLogger);
    try {
      await until(async () => /^aof_buffer_length:0\r?$/m.test(await client.info('persistence')), `redis-server on port ${port} to write its AOF`);
    } finally {
      await closeRedis(client);
    }
  };

  const close = async (): Promise<void> => {
    await stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  };

  try {
    await start();
  } catch (err) {
    if (dir) rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url,
    port,
    stop,
    start,
    aofWritten,
    close,
    pause: () => signal('SIGSTOP'),
    resume: () => {
      if (child) signal('SIGCONT');
    },
  };
}

/**
 * One redis-server and one connected client for a describe block: started before its tests
 * (skipped, loudly, where redis-server is missing), stopped after them. Tests share it and
 * keep apart by key prefix.
 */
export function sharedRedis(): { server(): TestRedis; client(): RedisClient } {
  let server: TestRedis | undefined;
  let client: RedisClient | undefined;
  before(async function () {
    if (!REDIS_SERVER) return this.skip();
    server = await startRedis();
    client = await connectRedis(server.url, silentLogger);
  });
  after(async () => {
    if (client) await closeRedis(client);
    await server?.stop();
  });
  return { server: () => server!, client: () => client! };
}
