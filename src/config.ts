// One typed config, read from environment variables and the matching command-line flags
// (`IO_PORT` <-> `--io-port`), checked once at start. Every bad value is named with its
// setting; all problems are reported together.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { z } from 'zod';
import { SETTINGS, shownValue } from './settings.ts';

type Settings = typeof SETTINGS;
export type Config = { [K in keyof Settings]: z.output<Settings[K]['schema']> };

/** Thrown for bad settings; `problems` holds one line per bad value. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('; '));
    this.name = 'ConfigError';
  }
}

const keys = Object.keys(SETTINGS) as (keyof Settings)[];

/** `IO_PORT` -> `io-port` */
export function flagName(env: string): string {
  return env.toLowerCase().replace(/_/g, '-');
}

/** True when the command line asks for the help text. */
export function wantsHelp(argv: readonly string[]): boolean {
  return argv.includes('--help') || argv.includes('-h');
}

/** True when the command line asks for the version. */
export function wantsVersion(argv: readonly string[]): boolean {
  return argv.includes('--version');
}

/**
 * The version in package.json. This module sits one folder below the package root both as
 * source (src/) and bundled (dist/), so the same relative URL finds it from either.
 */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  if (typeof pkg.version !== 'string') throw new Error('package.json has no version');
  return pkg.version;
}

export function helpText(): string {
  const lines = [
    'Usage: push-server [options]   (in a clone: npm start -- [options])',
    '',
    'Every option is also an environment variable; a flag wins over the variable.',
    '',
  ];
  for (const key of keys) {
    const s = SETTINGS[key];
    lines.push(`  --${flagName(s.env)} <value>   ${s.env}, default ${s.default}`);
    lines.push(`      ${s.doc}`);
  }
  lines.push('  -h, --help   show this text');
  lines.push('  --version    print the version');
  return lines.join('\n');
}

/**
 * Builds the config from environment variables and command-line flags (flags win),
 * with defaults for what is unset. Throws ConfigError listing every bad value.
 */
export function loadConfig(
  env: Readonly<Record<string, string | undefined>>,
  argv: readonly string[] = [],
): Config {
  const problems: string[] = [];
  const options = Object.fromEntries(
    keys.map((key) => [flagName(SETTINGS[key].env), { type: 'string' as const }]),
  );
  let flags: Record<string, string | boolean | undefined> = {};
  try {
    flags = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    problems.push(`command line: ${(err as Error).message.split('. ')[0]}`);
  }

  const out: Record<string, unknown> = {};
  for (const key of keys) {
    const s = SETTINGS[key];
    const flag = flags[flagName(s.env)];
    const raw = typeof flag === 'string' ? flag : (env[s.env] ?? s.default);
    const result = s.schema.safeParse(raw);
    if (result.success) {
      out[key] = result.data;
    } else {
      const source = typeof flag === 'string' ? `--${flagName(s.env)}` : s.env;
      const message = result.error.issues[0]?.message ?? 'is invalid';
      problems.push(`${source} ${message}, got ${shownValue(s.schema, raw)}`);
    }
  }
  if ((out.tlsCert === null) !== (out.tlsKey === null) && 'tlsCert' in out && 'tlsKey' in out) {
    problems.push('TLS_CERT and TLS_KEY go together: set both or neither');
  }
  const clustered = Array.isArray(out.redisCluster) && out.redisCluster.length > 0;
  if (clustered && typeof out.redisUrl === 'string') {
    problems.push('REDIS_URL and REDIS_CLUSTER exclude each other: set REDIS_URL for one Redis, or REDIS_CLUSTER for a Redis Cluster');
  }
  const sentinelled = Array.isArray(out.redisSentinels) && out.redisSentinels.length > 0;
  if (clustered && sentinelled) problems.push('REDIS_CLUSTER and REDIS_SENTINELS exclude each other: set one');
  problems.push(...sentinelProblems(out));
  if (typeof out.workers === 'number' && out.workers > 1) {
    if (out.redisUrl === null && !clustered && !sentinelled) {
      problems.push('WORKERS above 1 needs REDIS_URL, REDIS_CLUSTER or REDIS_SENTINELS: the workers share rooms, presence and messages through it');
    }
    if (out.tlsCert !== null && out.tlsCert !== undefined) problems.push('WORKERS above 1 cannot terminate TLS itself: put a TLS proxy in front');
  }
  if (typeof out.redeliveryWindowBytes === 'number' && typeof out.maxSocketBufferBytes === 'number' && out.redeliveryWindowBytes >= out.maxSocketBufferBytes) {
    // a redelivery window that fills the buffer would get its own page cut off
    problems.push('REDELIVERY_WINDOW_BYTES must be below MAX_SOCKET_BUFFER_BYTES');
  }
  if (typeof out.headersTimeoutMs === 'number' && typeof out.requestTimeoutMs === 'number' && out.headersTimeoutMs > out.requestTimeoutMs) {
    problems.push('HEADERS_TIMEOUT_MS must not be above REQUEST_TIMEOUT_MS: the headers are part of the request');
  }
  if (out.webhookClientMessages === true && Array.isArray(out.webhookUrl) && out.webhookUrl.length === 0) {
    problems.push('WEBHOOK_CLIENT_MESSAGES=on needs WEBHOOK_URL: the client.message events go there');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return out as Config;
}

/** What is wrong in how the Redis settings go together (each alone was checked by its schema). */
function sentinelProblems(out: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const sentinels = Array.isArray(out.redisSentinels) && out.redisSentinels.length > 0;
  const master = typeof out.redisSentinelMaster === 'string';
  const url = typeof out.redisUrl === 'string';
  if (sentinels && url) problems.push('REDIS_URL and REDIS_SENTINELS exclude each other: set one');
  if (sentinels && !master && out.redisSentinelMaster !== undefined) problems.push('REDIS_SENTINELS needs REDIS_SENTINEL_MASTER: the master name the sentinels monitor');
  if (master && !sentinels && out.redisSentinels !== undefined) problems.push('REDIS_SENTINEL_MASTER needs REDIS_SENTINELS: the sentinels to ask for it');
  for (const [key, env] of [['redisPassword', 'REDIS_PASSWORD'], ['redisSentinelPassword', 'REDIS_SENTINEL_PASSWORD']] as const) {
    if (typeof out[key] === 'string' && !sentinels && out.redisSentinels !== undefined) {
      problems.push(`${env} goes with REDIS_SENTINELS${key === 'redisPassword' ? ' (REDIS_URL carries its own: redis://:password@host)' : ''}`);
    }
  }
  for (const [key, env] of [['redisTls', 'REDIS_TLS'], ['redisSentinelTls', 'REDIS_SENTINEL_TLS']] as const) {
    if (out[key] === true && !sentinels && out.redisSentinels !== undefined) {
      problems.push(`${env} goes with REDIS_SENTINELS (REDIS_URL and REDIS_CLUSTER ask for TLS by rediss://)`);
    }
  }
  // a CA nothing uses: most likely a TLS switch forgotten, which would connect in plain text
  const rediss = [out.redisUrl, ...(Array.isArray(out.redisCluster) ? out.redisCluster : [])].some((u) => typeof u === 'string' && u.startsWith('rediss://'));
  const tls = rediss || (sentinels && (out.redisTls === true || out.redisSentinelTls === true));
  if (typeof out.redisTlsCa === 'string' && !tls && 'redisUrl' in out && 'redisCluster' in out && 'redisSentinels' in out && 'redisTls' in out && 'redisSentinelTls' in out) {
    problems.push('REDIS_TLS_CA goes with a TLS connection to Redis: a rediss:// REDIS_URL or REDIS_CLUSTER, or REDIS_TLS=on / REDIS_SENTINEL_TLS=on with REDIS_SENTINELS');
  }
  return problems;
}

/** True when the node joins a cluster through Redis: by REDIS_URL, a Redis Cluster or its sentinels. */
export function usesRedis(config: Pick<Config, 'redisUrl' | 'redisCluster' | 'redisSentinels'>): boolean {
  return config.redisUrl !== null || config.redisCluster.length > 0 || config.redisSentinels.length > 0;
}

/** The defaults with some values replaced: for tests and embedding. */
export function configWith(overrides: Partial<Config> = {}): Config {
  return { ...loadConfig({}), ...overrides };
}
