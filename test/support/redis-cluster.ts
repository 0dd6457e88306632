// A real Redis Cluster for a test file: 3 masters and 3 replicas on free ports of 127.0.0.1,
// each a redis-server with cluster mode and an AOF in a temp dir of the cluster's own, joined
// by `redis-cli --cluster create`. Started and stopped by the test; where redis-server or
// redis-cli is missing, the test skips loudly (a failure under PUSH_TEST_STRICT=1). With `tls`
// every node speaks TLS only, to clients and on the cluster bus.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { findBinary } from './requirements.ts';
import { until } from './until.ts';
import { freePort, REDIS_SERVER, redisTlsArgs, type RedisTlsFiles } from './redis-server.ts';

export const REDIS_CLI = findBinary('redis-cli', ['/usr/bin/redis-cli', '/usr/local/bin/redis-cli']);

const run = promisify(execFile);

/** How long the cluster may take to come up (6 processes, slots assigned, state ok everywhere). */
const START_MS = 30_000;

export interface ClusterNode {
  port: number;
  /** SIGKILL, as a crash; resolves once the process has exited. Idempotent. */
  kill(): Promise<void>;
  /** SIGSTOP: it stops answering while its connections stay open. close() kills it anyway. */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
}

export interface TestRedisCluster {
  /** host:port of every node, for REDIS_CLUSTER. */
  seeds: string[];
  nodes: ClusterNode[];
  /** The node that is master of `key`'s slot now, as the live nodes say. */
  masterOf(key: string): Promise<ClusterNode>;
  /** A replica of `master`, as the live nodes say. */
  replicaOf(master: ClusterNode): Promise<ClusterNode>;
  /** `redis-cli -p port ...args` on a live node: its reply as text. */
  cli(port: number, ...args: string[]): Promise<string>;
  /** Kills every node and removes the data dir. Idempotent. */
  close(): Promise<void>;
}


/** True when both binaries are there (else the notice was printed, or STRICT threw). */
export const HAS_CLUSTER_BINARIES = REDIS_SERVER !== null && REDIS_CLI !== null;

/**
 * Starts 3 masters and 3 replicas with cluster-node-timeout `nodeTimeoutMs`, and resolves once
 * every node says cluster_state:ok and knows 6 nodes, and every replica is in sync. Cluster ports are port + 10000: free ports
 * are picked below 55535 so that one exists.
 */
export async function startRedisCluster(options: { nodeTimeoutMs?: number; tls?: RedisTlsFiles } = {}): Promise<TestRedisCluster> {
  if (!REDIS_SERVER || !REDIS_CLI) throw new Error('redis-server or redis-cli is missing');
  const server = REDIS_SERVER;
  const cli = REDIS_CLI;
  const dir = mkdtempSync(join(tmpdir(), 'push-redis-cluster-'));
  const children: { port: number; proc: ChildProcess; exited: Promise<unknown> }[] = [];
  const ports: number[] = [];
  while (ports.length < 6) {
    const port = await freePort();
    if (port < 55535 && !ports.includes(port)) ports.push(port);
  }
  const tls = options.tls;
  const tlsCli = tls ? ['--tls', '--cacert', tls.ca] : [];
  const redisCli = async (port: number, ...args: string[]): Promise<string> =>
    (await run(cli, [...tlsCli, '-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 5000 })).stdout;

  const close = async (): Promise<void> => {
    await Promise.all(children.map(({ proc, exited }) => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL'); // a stopped process dies of it too
      return exited;
    }));
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    for (const port of ports) {
      const proc = spawn(
        server,
        [
          ...(tls ? [...redisTlsArgs(port, tls), '--tls-cluster', 'yes'] : ['--port', String(port)]), '--bind', '127.0.0.1',
          '--cluster-enabled', 'yes',
          '--cluster-config-file', join(dir, `nodes-${port}.conf`),
          '--cluster-node-timeout', String(options.nodeTimeoutMs ?? 1000),
          '--appendonly', 'yes', '--appendfilename', `appendonly-${port}.aof`,
          '--appenddirname', `aof-${port}`, '--dbfilename', `dump-${port}.rdb`, '--save', '',
          '--dir', dir, '--logfile', join(dir, `log-${port}.txt`),
        ],
        { stdio: ['ignore', 'ignore', 'ignore'] },
      );
      children.push({ port, proc, exited: once(proc, 'exit').catch(() => {}) });
    }
    await until(
      async () => (await Promise.all(ports.map((p) => redisCli(p, 'ping').then((r) => r.trim() === 'PONG', () => false)))).every(Boolean),
      'the 6 redis-servers to answer PING',
      START_MS,
      50,
    );
    await run(
      cli,
      [...tlsCli, '--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'],
      { timeout: START_MS },
    );
    await until(
      async () =>
        (
          await Promise.all(
            ports.map(async (p) => {
              const info = await redisCli(p, 'cluster', 'info').catch(() => '');
              return /cluster_state:ok/.test(info) && /cluster_known_nodes:6/.test(info);
            }),
          )
        ).every(Boolean),
      'cluster_state:ok on all 6 nodes',
      START_MS,
      50,
    );
    // a replica that has not finished its first sync cannot be promoted: a master killed
    // before then would leave its slots without one
    await until(
      async () =>
        (
          await Promise.all(
            ports.map(async (p) => {
              const info = await redisCli(p, 'info', 'replication').catch(() => '');
              return /role:master/.test(info) || /master_link_status:up/.test(info);
            }),
          )
        ).every(Boolean),
      'every replica in sync with its master',
      START_MS,
      50,
    );
  } catch (err) {
    await close();
    throw err;
  }

  const nodes: ClusterNode[] = children.map(({ port, proc, exited }) => ({
    port,
    kill: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
    pause: () => proc.kill('SIGSTOP'),
    resume: () => proc.kill('SIGCONT'),
  }));
  const alive = () => children.filter(({ proc }) => proc.exitCode === null && proc.signalCode === null).map((c) => c.port);
  return {
    seeds: ports.map((p) => `127.0.0.1:${p}`),
    nodes,
    cli: redisCli,
    masterOf: async (key) => {
      const port = alive()[0];
      if (port === undefined) throw new Error('no node is running');
      const slot = Number((await redisCli(port, 'cluster', 'keyslot', key)).trim());
      // CLUSTER NODES: id addr@cport flags master ping pong epoch state slot-ranges...
      for (const line of (await redisCli(port, 'cluster', 'nodes')).split('\n')) {
        const fields = line.trim().split(' ');
        if (!fields[2]?.split(',').includes('master') || fields[2].includes('fail')) continue;
        const owns = fields.slice(8).some((range) => {
          const [from, to = from] = range.split('-').map(Number);
          return from !== undefined && to !== undefined && slot >= from && slot <= to;
        });
        if (owns) {
          const nodePort = Number(fields[1]!.split('@')[0]!.split(':')[1]);
          const node = nodes.find((n) => n.port === nodePort);
          if (node) return node;
        }
      }
      throw new Error(`no live master owns the slot of ${key}`);
    },
    replicaOf: async (master) => {
      const port = alive().find((p) => p !== master.port);
      if (port === undefined) throw new Error('no other node is running');
      const lines = (await redisCli(port, 'cluster', 'nodes')).split('\n').map((l) => l.trim().split(' '));
      const id = lines.find((f) => f[1]?.split('@')[0] === `127.0.0.1:${master.port}`)?.[0];
      const replica = lines.find((f) => f[3] === id && f[2]?.split(',').includes('slave'));
      const node = nodes.find((n) => `127.0.0.1:${n.port}` === replica?.[1]?.split('@')[0]);
      if (!id || !node) throw new Error(`no replica of 127.0.0.1:${master.port}`);
      return node;
    },
    close,
  };
}
