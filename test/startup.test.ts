// Config, startup errors, graceful shutdown and close(): the real start.ts as a child process.
import { expect } from 'chai';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { ConfigError, loadConfig } from '../src/config.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { connectClient, withDeadline } from './support/clients.ts';
import { legacyPush, startServer } from './support/server.ts';
import { spawnStart, type StartProcess } from './support/start-process.ts';
import { SETTINGS } from '../src/settings.ts';
import { MemoryPresence } from '../src/presence.ts';

/** The exit code of `run`, once it has exited. */
async function exitCode(run: StartProcess): Promise<number | null> {
  return (await run.exited).code;
}

function occupyPort(): Promise<NetServer> {
  return new Promise((resolve) => {
    const s = createNetServer().listen(0, '127.0.0.1', () => resolve(s));
    onCleanup(() => new Promise((r) => s.close(r)));
  });
}

/** `n` distinct ports that were free a moment ago (all bound at once, then released). */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: n }, () => occupyPort()));
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createNetServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

describe('config', () => {
  it('has defaults that match the original ports', () => {
    const c = loadConfig({});
    expect(c).to.include({ host: '0.0.0.0', ioPort: 2120, apiPort: 2121, webPort: 2123, corsOrigins: '*' });
    // stored messages on disk without Redis: a restart keeps them
    expect(c).to.include({ store: 'embedded', dataDir: './data', redisUrl: null });
  });

  it('reads environment variables, and a flag wins over its variable', () => {
    const c = loadConfig({ IO_PORT: '3000', API_PORT: '3001', WEB_PORT: 'off' }, ['--io-port', '4000', '--cors-origins', 'https://a.example, http://b.example:8080']);
    expect(c.ioPort).to.equal(4000);
    expect(c.apiPort).to.equal(3001);
    expect(c.webPort).to.equal(null);
    expect(c.corsOrigins).to.deep.equal(['https://a.example', 'http://b.example:8080']);
  });

  it('names every bad value at once', () => {
    let error: unknown;
    try {
      loadConfig({ API_PORT: '21a1', WEB_PORT: '70000', MAX_BODY_BYTES: '0', CORS_ORIGINS: 'example.com/x' }, ['--nope']);
    } catch (err) {
      error = err;
    }
    expect(error).to.be.instanceOf(ConfigError);
    expect((error as ConfigError).problems).to.deep.equal([
      "command line: Unknown option '--nope'",
      'API_PORT must be an integer 0-65535, got "21a1"',
      'WEB_PORT must be an integer 0-65535, got "70000"',
      'CORS_ORIGINS must be * or origins like https://example.com (scheme and host, no path), got "example.com/x"',
      'MAX_BODY_BYTES must be an integer 1-67108864, got "0"',
    ]);
  });
});

describe('config for WORKERS', () => {
  it('needs REDIS_URL above one worker, and no TLS of its own', () => {
    expect(() => loadConfig({ WORKERS: '2' })).to.throw(ConfigError, 'WORKERS above 1 needs REDIS_URL');
    expect(() => loadConfig({ WORKERS: '2', REDIS_URL: 'redis://x', TLS_CERT: 'a', TLS_KEY: 'b' })).to.throw(ConfigError, 'put a TLS proxy in front');
    expect(loadConfig({ WORKERS: '2', REDIS_URL: 'redis://127.0.0.1:6379' }).workers).to.equal(2);
    expect(() => loadConfig({ REDIS_URL: 'http://x' })).to.throw(ConfigError, 'REDIS_URL must be a redis:// or rediss:// URL');
    const sentinels = { REDIS_SENTINELS: '10.0.0.5:26379', REDIS_SENTINEL_MASTER: 'pushmaster' };
    expect(loadConfig({ WORKERS: '2', ...sentinels }).workers).to.equal(2);
  });
});

describe('config for Redis Sentinel', () => {
  const problems = (env: Record<string, string>): string[] => {
    try {
      loadConfig(env);
    } catch (err) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
    return [];
  };

  it('reads the sentinels, the master name and the passwords', () => {
    const c = loadConfig({
      REDIS_SENTINELS: ' 10.0.0.5:26379, sentinel-2.internal:26380,[::1]:26381 ',
      REDIS_SENTINEL_MASTER: 'pushmaster',
      REDIS_PASSWORD: 'short pw',
      REDIS_SENTINEL_PASSWORD: 's3',
    });
    expect(c.redisSentinels).to.deep.equal([
      { host: '10.0.0.5', port: 26379 },
      { host: 'sentinel-2.internal', port: 26380 },
      { host: '::1', port: 26381 },
    ]);
    expect(c).to.include({ redisSentinelMaster: 'pushmaster', redisPassword: 'short pw', redisSentinelPassword: 's3', redisUrl: null });
    expect(loadConfig({})).to.deep.include({ redisSentinels: [], redisSentinelMaster: null, redisPassword: null, redisSentinelPassword: null });
  });

  it('refuses each setting alone, both ways of joining at once, and bad addresses, in one line each', () => {
    expect(problems({ REDIS_SENTINELS: '10.0.0.5:26379' })).to.deep.equal([
      'REDIS_SENTINELS needs REDIS_SENTINEL_MASTER: the master name the sentinels monitor',
    ]);
    expect(problems({ REDIS_SENTINEL_MASTER: 'pushmaster' })).to.deep.equal([
      'REDIS_SENTINEL_MASTER needs REDIS_SENTINELS: the sentinels to ask for it',
    ]);
    expect(problems({ REDIS_URL: 'redis://10.0.0.5', REDIS_SENTINELS: '10.0.0.5:26379', REDIS_SENTINEL_MASTER: 'm' })).to.deep.equal([
      'REDIS_URL and REDIS_SENTINELS exclude each other: set one',
    ]);
    expect(problems({ REDIS_CLUSTER: '10.0.0.5:7000', REDIS_SENTINELS: '10.0.0.5:26379', REDIS_SENTINEL_MASTER: 'm' })).to.deep.equal([
      'REDIS_CLUSTER and REDIS_SENTINELS exclude each other: set one',
    ]);
    expect(problems({ REDIS_URL: 'redis://10.0.0.5', REDIS_PASSWORD: 'pw', REDIS_SENTINEL_PASSWORD: 'pw2' })).to.deep.equal([
      'REDIS_PASSWORD goes with REDIS_SENTINELS (REDIS_URL carries its own: redis://:password@host)',
      'REDIS_SENTINEL_PASSWORD goes with REDIS_SENTINELS',
    ]);
    expect(problems({ REDIS_SENTINELS: '10.0.0.5:26379,10.0.0.6', REDIS_SENTINEL_MASTER: 'two words' })).to.deep.equal([
      'REDIS_SENTINELS must be sentinel addresses host:port separated by commas (like 10.0.0.5:26379,10.0.0.6:26379); entry 2 is not one, got "10.0.0.5:26379,10.0.0.6"',
      'REDIS_SENTINEL_MASTER must be the master name the sentinels monitor: 1-200 printable characters, no spaces, got "two words"',
    ]);
    expect(problems({ REDIS_SENTINELS: '10.0.0.5:0', REDIS_SENTINEL_MASTER: 'm' })[0]).to.include('entry 1 is not one');
    // a URL pasted in (REDIS_URL's form) never shows its password
    const pasted = problems({ REDIS_SENTINELS: 'redis://:s3cret-pw@10.0.0.5:26379', REDIS_SENTINEL_MASTER: 'm' }).join(' ');
    expect(pasted).to.include('entry 1 is not one');
    expect(pasted).not.to.include('s3cret-pw');
  });

  it('shows a refused password by its length only', () => {
    const env = { REDIS_SENTINELS: '10.0.0.5:26379', REDIS_SENTINEL_MASTER: 'm', REDIS_PASSWORD: 'pw-4711\n', REDIS_SENTINEL_PASSWORD: 'sp-4711\r' };
    expect(problems(env)).to.deep.equal([
      'REDIS_PASSWORD must not hold control characters or line breaks, got 8 characters',
      'REDIS_SENTINEL_PASSWORD must not hold control characters or line breaks, got 8 characters',
    ]);
  });
});

describe('start.ts', function () {
  this.timeout(30_000);
  afterEach(cleanupAll);

  it('--help lists every setting with its flag', async () => {
    const run = spawnStart(['--help']);
    expect(await exitCode(run)).to.equal(0);
    for (const s of Object.values(SETTINGS)) {
      expect(run.stdout()).to.include(s.env);
      expect(run.stdout()).to.include(`--${s.env.toLowerCase().replace(/_/g, '-')}`);
    }
  });

  it('stops with one clear line when a port is in use', async () => {
    const taken = await occupyPort();
    const port = (taken.address() as { port: number }).port;
    const run = spawnStart([], { IO_PORT: '0', API_PORT: String(port), WEB_PORT: 'off' });
    expect(await exitCode(run)).to.equal(1);
    expect(run.stderr().trim()).to.equal(`push server: cannot start: API_PORT ${port} on 127.0.0.1: port is already in use`);
  });

  it('LOG_FORMAT=json writes one JSON object a line', async () => {
    const run = spawnStart([], { IO_PORT: '0', API_PORT: '0', WEB_PORT: 'off', LOG_FORMAT: 'json' });
    await run.waitForOutput(/"msg":"push server: socket\.io/);
    expect((await run.stop()).code).to.equal(0);
    const lines = run.stdout().trim().split('\n').map((l) => JSON.parse(l) as { level: number; msg: string; pid: number });
    expect(lines[0]).to.include({ level: 30 });
    expect(lines[0]!.msg).to.match(/^push server: socket\.io http/);
    expect(lines.map((l) => l.msg)).to.include.members([
      'PUSH_SECRET is not set: anyone who reaches the push API can push to any user',
      'LOGIN_SECRET is not set: any page can log in as any uid, read its pushes and ack its stored messages away',
      'stopped',
    ]);
  });

  it('LOG_FORMAT=text starts every line with its time in ISO 8601', async () => {
    const before = Date.now();
    const run = spawnStart([], { IO_PORT: '0', API_PORT: '0', WEB_PORT: 'off' });
    await run.started();
    expect((await run.stop()).code).to.equal(0);
    const lines = run.output().trim().split('\n');
    expect(lines.some((l) => l.includes('warning: PUSH_SECRET is not set'))).to.equal(true);
    expect(lines.some((l) => / push server: socket\.io http/.test(l))).to.equal(true);
    for (const line of lines) {
      const time = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z) \S/.exec(line);
      expect(time, line).to.not.equal(null);
      expect(Date.parse(time![1]!)).to.be.within(before - 1000, Date.now() + 1000);
    }
  });

  it('warns about LOGIN_SECRET only while it is unset', async () => {
    const run = spawnStart([], { IO_PORT: '0', API_PORT: '0', WEB_PORT: 'off', LOGIN_SECRET: 'login-secret-0123456789' });
    await run.started();
    expect((await run.stop()).code).to.equal(0);
    expect(run.stdout()).to.include('login auth on');
    expect(run.stdout() + run.stderr()).not.to.include('LOGIN_SECRET is not set');
  });

  it('never prints a secret or a Redis password when it cannot start', async () => {
    const bad = spawnStart([], { REDIS_URL: 'http://:redis-pass-4711@127.0.0.1:1', PUSH_SECRET: 'push-4711', ADMIN_TOKEN: 'admin-4711' });
    expect(await exitCode(bad)).to.equal(1);
    expect(bad.stderr().trim()).to.equal(
      'push server: bad configuration: PUSH_SECRET must be at least 16 characters (or empty for none), got 9 characters; ' +
        'REDIS_URL must be a redis:// or rediss:// URL (or empty for one node), got "http://***@127.0.0.1:1"; ' +
        'ADMIN_TOKEN must be at least 16 characters (or empty for none), got 10 characters (see --help)',
    );
    // a well-formed URL whose Redis does not answer
    const taken = await occupyPort();
    const closed = (taken.address() as { port: number }).port;
    await new Promise((r) => taken.close(r));
    const down = spawnStart([], { IO_PORT: '0', API_PORT: '0', WEB_PORT: 'off', REDIS_URL: `redis://:redis-pass-4711@127.0.0.1:${closed}` });
    expect(await exitCode(down)).to.equal(1);
    expect(down.stderr()).to.match(/^push server: cannot start: REDIS_URL redis:\/\/\*\*\*@127\.0\.0\.1:\d+: cannot connect/);
    for (const run of [bad, down]) expect(run.stdout() + run.stderr()).not.to.include('4711');
  });

  it('gives each test process a DATA_DIR of its own: two run side by side, neither in the project', async () => {
    const settings = { IO_PORT: '0', API_PORT: '0', WEB_PORT: 'off' };
    const runs = [spawnStart([], settings, 'a'), spawnStart([], settings, 'b')];
    await Promise.all(runs.map((run) => run.started()));
    const dirs = runs.map((run) => /\| engine embedded in (\S+) \|/.exec(run.stdout())?.[1]);
    expect(dirs[0]).to.be.a('string').and.not.equal(dirs[1]);
    for (const dir of dirs) expect(dir!.startsWith(tmpdir())).to.equal(true, `${dir} under ${tmpdir()}`);
  });

  it('stops with one clear line on a bad value', async () => {
    const run = spawnStart(['--io-port', 'abc']);
    expect(await exitCode(run)).to.equal(1);
    expect(run.stderr().trim()).to.equal('push server: bad configuration: --io-port must be an integer 0-65535, got "abc" (see --help)');
  });

  it('prints its URLs, serves, and exits 0 on SIGTERM, disconnecting clients', async () => {
    const run = spawnStart([], { IO_PORT: '0', API_PORT: '0', WEB_PORT: '0' });
    const { ioUrl, apiUrl, webUrl } = await run.started();
    const page = await fetch(`${webUrl}/`);
    expect(await page.text()).to.include('Push server demo');
    const client = await connectClient('v2', ioUrl);
    await client.login('u1');
    expect(await legacyPush(apiUrl, { type: 'publish', to: 'u1', content: 'hi' }))
      .to.deep.equal({ status: 200, body: 'ok' });
    expect(await client.waitFor('new_msg')).to.deep.equal(['hi']);

    expect((await withDeadline(run.stop(), 'exit after SIGTERM', 5000)).code).to.equal(0);
    await client.waitFor('disconnect');
    for (const url of [ioUrl, apiUrl, webUrl!]) expect(await canListen(Number(new URL(url).port))).to.equal(true);
  });
});

describe('createServer().close()', () => {
  afterEach(cleanupAll);

  it('frees every port and closes connected clients of both versions', async () => {
    const server = await startServer({ webPort: 0 });
    const clients = [
      await connectClient('v4', server.ioUrl),
      await connectClient('v2', server.ioUrl, ['polling']),
      await connectClient('v4', server.ioUrl, ['polling']),
    ];
    for (const [i, c] of clients.entries()) await c.login(`u${i}`);
    const keepAlive = await fetch(`${server.apiUrl}/?type=publish&to=u0&content=x`);
    expect(await keepAlive.text()).to.equal('ok');

    await withDeadline(server.close(), 'close()', 3000);
    for (const c of clients) await c.waitFor('disconnect');
    const { io, api, web } = server.ports;
    for (const port of [io, api, web!]) expect(await canListen(port)).to.equal(true, `port ${port} free`);
    await server.close(); // idempotent
  });

  it('leaves the components it was given open: whoever creates one closes it', async () => {
    const presence = new MemoryPresence();
    onCleanup(() => presence.close());
    await presence.addPage('kept');
    const server = await startServer({}, { presence });
    await server.close();
    // a closed MemoryPresence forgets its pages
    expect(await presence.isOnline('kept')).to.equal(true);
  });

  it('rejects with a StartupError and leaves nothing bound when a later port is taken', async () => {
    const [io, api] = (await freePorts(2)) as [number, number];
    const taken = await occupyPort();
    const port = (taken.address() as { port: number }).port;
    let error: unknown;
    try {
      await startServer({ ioPort: io, apiPort: api, webPort: port });
    } catch (err) {
      error = err;
    }
    expect((error as Error).name).to.equal('StartupError');
    expect((error as Error).message).to.equal(`WEB_PORT ${port} on 127.0.0.1: port is already in use`);
    // the ports it had bound before the failure are free again: a server starts on them
    const again = await startServer({ ioPort: io, apiPort: api });
    expect(again.ports).to.include({ io, api });
  });
});
