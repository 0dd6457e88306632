// A Sentinel-managed Redis for a test: a primary, a replica of it (both with an AOF) and three
// sentinels (`redis-server --sentinel`), all real processes on free ports of 127.0.0.1, each
// sentinel with a generated sentinel.conf in a temp dir of its own. Small timeouts, so a
// killed primary is replaced within seconds. close() kills everything and removes the dirs.
// Options make the primary and replica speak TLS only, the sentinels too (or plain text to
// their clients, TLS among themselves and to the data nodes), and require passwords.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from 'redis';
import { REDIS_SERVER, freePort, startRedis, type RedisTlsFiles, type TestRedis } from './redis-server.ts';
import { until } from './until.ts';

/** The master name the sentinels monitor. */
export const MASTER_NAME = 'pushmaster';

/** The sentinels' down-after-milliseconds: how long a silent primary takes to count as down. */
export const DOWN_AFTER_MS = 1000;

export interface TestSentinels {
  primary: TestRedis;
  replica: TestRedis;
  /** The sentinels' addresses, `127.0.0.1:port`, as REDIS_SENTINELS lists them. */
  sentinels: string[];
  /** REDIS_SENTINELS's value: the sentinels, comma-separated. */
  list: string;
  /** `host:port` of the master as the first sentinel that answers names it. */
  master(): Promise<string>;
  /** One command to a Redis (primary or replica) by port; for INFO, WAIT and the like. */
  command(port: number, args: string[]): Promise<unknown>;
  /**
   * Resolves once the replica has received everything the primary had written when called
   * (INFO replication: the replica's acked offset reaches the primary's master_repl_offset).
   */
  replicated(): Promise<void>;
  /** Kills one sentinel (SIGKILL), by its index. */
  killSentinel(index: number): Promise<void>;
  close(): Promise<void>;
}

/** How long the sentinels may take to find each other and the replica. */
const SETTLE_MS = 15_000;

export interface SentinelOptions {
  /** The primary and the replica speak TLS only, with these files. */
  tls?: RedisTlsFiles;
  /**
   * With `tls`: the sentinels speak TLS only to their clients too. Without it they answer
   * clients in plain text, and speak TLS to each other and to the data nodes.
   */
  sentinelTls?: boolean;
  /** The requirepass of the primary and the replica. */
  password?: string;
  /** The sentinels' requirepass. */
  sentinelPassword?: string;
}

/** Starts the primary, the replica and three sentinels; resolves once the sentinels see both. */
export async function startSentinels(options: SentinelOptions = {}): Promise<TestSentinels> {
  if (!REDIS_SERVER) throw new Error('redis-server is missing');
  const binary = REDIS_SERVER;
  const tls = options.tls;
  const ca = tls ? readFileSync(tls.ca) : undefined;
  const auth = options.password === undefined ? [] : ['--requirepass', options.password, '--masterauth', options.password];
  const sentinelPorts = new Set<number>();
  /** One command to the primary, the replica or a sentinel, with its TLS and password. */
  const oneCommand = async (port: number, args: string[]): Promise<unknown> => {
    const sentinel = sentinelPorts.has(port);
    const password = sentinel ? options.sentinelPassword : options.password;
    const client = createClient({
      socket: {
        host: '127.0.0.1',
        port,
        reconnectStrategy: false,
        connectTimeout: 1000,
        ...(ca && (!sentinel || options.sentinelTls) ? { tls: true as const, ca } : {}),
      },
      ...(password === undefined ? {} : { password }),
    });
    client.on('error', () => {}); // a refused connect rejects connect() too
    await client.connect();
    try {
      return await client.sendCommand(args);
    } finally {
      client.destroy();
    }
  };
  const primary = await startRedis({ persist: true, ...(tls ? { tls } : {}), args: auth });
  const sentinelProcs: { child: ChildProcess; exited: Promise<unknown>; dir: string; port: number }[] = [];
  let replica: TestRedis | undefined;
  const close = async () => {
    for (const s of sentinelProcs) {
      if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
      await s.exited;
      rmSync(s.dir, { recursive: true, force: true });
    }
    sentinelProcs.length = 0;
    await replica?.close();
    await primary.close();
  };
  try {
    replica = await startRedis({ persist: true, ...(tls ? { tls } : {}), args: [...auth, '--replicaof', '127.0.0.1', String(primary.port)] });
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      sentinelPorts.add(port);
      const dir = mkdtempSync(join(tmpdir(), 'push-sentinel-'));
      const conf = join(dir, 'sentinel.conf');
      // With TLS a sentinel speaks TLS to the data nodes and to the other sentinels
      // (tls-replication), and announces its TLS port to them; its clients get TLS only, or
      // plain text on a port of their own.
      const tlsLines = tls
        ? [
            // the port REDIS_SENTINELS lists is the one for clients
            ...(options.sentinelTls ? ['port 0', `tls-port ${port}`] : [`port ${port}`, `tls-port ${await freePort()}`]),
            `tls-cert-file ${tls.cert}`,
            `tls-key-file ${tls.key}`,
            `tls-ca-cert-file ${tls.ca}`,
            'tls-auth-clients no',
            'tls-replication yes',
          ]
        : [`port ${port}`];
      // sentinel rewrites this file as it learns the topology: one per sentinel, writable
      writeFileSync(
        conf,
        [
          ...tlsLines,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${primary.port} 2`,
          `sentinel down-after-milliseconds ${MASTER_NAME} ${DOWN_AFTER_MS}`,
          `sentinel failover-timeout ${MASTER_NAME} 10000`,
          `sentinel parallel-syncs ${MASTER_NAME} 1`,
          ...(options.password === undefined ? [] : [`sentinel auth-pass ${MASTER_NAME} ${options.password}`]),
          ...(options.sentinelPassword === undefined ? [] : [`requirepass ${options.sentinelPassword}`, `sentinel sentinel-pass ${options.sentinelPassword}`]),
          '',
        ].join('\n'),
      );
      const child = spawn(binary, [conf, '--sentinel'], { stdio: ['ignore', 'ignore', 'ignore'] });
      sentinelProcs.push({ child, exited: once(child, 'exit').catch(() => {}), dir, port });
    }
    // each sentinel knows the primary, the replica and the two other sentinels
    await until(async () => {
      for (const s of sentinelProcs) {
        try {
          const [master] = (await oneCommand(s.port, ['SENTINEL', 'MASTERS'])) as string[][];
          const fields = new Map<string, string>();
          for (let k = 0; k + 1 < (master?.length ?? 0); k += 2) fields.set(master![k]!, master![k + 1]!);
          if (fields.get('num-slaves') !== '1' || fields.get('num-other-sentinels') !== '2') return false;
        } catch {
          return false;
        }
      }
      return true;
    }, 'the sentinels to see the primary, its replica and each other', SETTLE_MS, 100);
  } catch (err) {
    await close();
    throw err;
  }
  const sentinels = sentinelProcs.map((s) => `127.0.0.1:${s.port}`);
  const offsetOf = (info: string, field: string) => Number(new RegExp(`^${field}:(\\d+)`, 'm').exec(info)?.[1] ?? -1);
  return {
    primary,
    replica: replica!,
    sentinels,
    list: sentinels.join(','),
    master: async () => {
      for (const s of sentinelProcs) {
        try {
          const reply = (await oneCommand(s.port, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME])) as string[] | null;
          if (reply) return `${reply[0]}:${reply[1]}`;
        } catch {
          // killed: ask the next
        }
      }
      throw new Error('no sentinel answers');
    },
    command: oneCommand,
    replicated: async () => {
      const target = offsetOf(String(await oneCommand(primary.port, ['INFO', 'replication'])), 'master_repl_offset');
      await until(
        async () => offsetOf(String(await oneCommand(replica!.port, ['INFO', 'replication'])), 'slave_repl_offset') >= target,
        'the replica to catch up with the primary',
      );
    },
    killSentinel: async (index) => {
      const s = sentinelProcs[index]!;
      if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
      await s.exited;
    },
    close,
  };
}
