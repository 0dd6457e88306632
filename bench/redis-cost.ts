// `npm run bench:redis`: what one push costs Redis, per kind of push, in a cluster of nodes on
// this machine. Counts, not timings: commands (INFO commandstats) and bytes (INFO stats
// total_net_input_bytes / total_net_output_bytes) per push, the idle background of the nodes
// (heartbeats, sweeps, online counts, pings) measured over a window without pushes and taken
// out. Writes bench/results/redis-cost-latest.{md,json}. Settings: REDIS_COST_* (bench/README.md).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { io as ioV4, type Socket } from 'socket.io-client';
import { buildServer } from '../scripts/build.ts';
import { startNodeFlags } from '../scripts/start-flags.ts';
import { Child, PROJECT_ROOT, stopChildrenOnExit } from './children.ts';
import { orThrow } from './deadline.ts';
import { cpuMs, describeMachine } from './proc.ts';
import { Pusher, runLanes } from './pusher.ts';
import { StatsConnection, type Window } from './redis-stats.ts';
import { seededRandom } from './stats.ts';
import { freePort } from './ports.ts';

const HOST = '127.0.0.1'; // loopback only
const SERVER_SCRIPT = join(PROJECT_ROOT, 'dist', 'start.js');
const RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));
const PORTS_LINE = /socket\.io http:\/\/[^\s|]*:(\d+) \| push API http:\/\/[^\s|]*:(\d+)/;
const START_TIMEOUT_MS = 30_000;
/** Longest wait for one kind's deliveries (and acks) after its last push was answered. */
const SETTLE_TIMEOUT_MS = 60_000;
const LANES = 8;
const TOPIC = 'bench';
/** The data of every push: the same size for each kind, so the bytes compare. */
const DATA = 'x'.repeat(100);

const KINDS = {
  legacy: 'legacy GET `?type=publish&to=<uid>` to one online uid',
  'legacy-broadcast': 'legacy GET `?type=publish&to=` (every socket)',
  v1: 'v1 `{to: uid, data}` (no ttl)',
  'v1-ttl': 'v1 `{to: uid, data, ttl: 60}`: stored, emitted with an ack, acked by the page',
  'v1-ttl-id': 'as v1-ttl, with an `id` (idempotency key)',
  broadcast: 'v1 `{data}` (every socket)',
  topic: `v1 \`{topic, data}\` (a fifth of the pages subscribed)`,
  'legacy-remote': 'legacy, all through node 1 to uids on node 2, five times as many: nodes 3 and up hold no target, so their CPU is what a node pays for a push of another node (needs 3 nodes)',
} as const;
type Kind = keyof typeof KINDS;

interface Options {
  nodes: number[];
  pagesPerNode: number;
  pushes: number;
  idleSeconds: number;
  kinds: Kind[];
  benchmark: boolean;
}

function loadOptions(env: NodeJS.ProcessEnv): Options {
  const problems: string[] = [];
  const integer = (name: string, fallback: number, min: number, max: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const value = Number(raw);
    if (Number.isInteger(value) && value >= min && value <= max) return value;
    problems.push(`${name} must be an integer ${min}-${max}, got "${raw}"`);
    return fallback;
  };
  const nodes = (env.REDIS_COST_NODES || '3').split(',').map((s) => Number(s.trim()));
  if (nodes.some((n) => !Number.isInteger(n) || n < 1 || n > 8)) problems.push(`REDIS_COST_NODES must list integers 1-8, got "${env.REDIS_COST_NODES}"`);
  const kinds = (env.REDIS_COST_KINDS || Object.keys(KINDS).join(',')).split(',').map((s) => s.trim());
  const unknown = kinds.filter((k) => !(k in KINDS));
  if (unknown.length > 0) problems.push(`REDIS_COST_KINDS: unknown ${unknown.join(', ')}; known: ${Object.keys(KINDS).join(', ')}`);
  const benchmark = env.REDIS_COST_BENCHMARK ?? '1';
  if (benchmark !== '0' && benchmark !== '1') problems.push(`REDIS_COST_BENCHMARK must be 0 or 1, got "${benchmark}"`);
  const options: Options = {
    nodes,
    pagesPerNode: integer('REDIS_COST_PAGES', 50, 5, 2000),
    pushes: integer('REDIS_COST_PUSHES', 1000, 10, 100_000),
    idleSeconds: integer('REDIS_COST_IDLE_SECONDS', 10, 2, 600),
    kinds: kinds as Kind[],
    benchmark: benchmark === '1',
  };
  if (problems.length > 0) throw new Error(`bad settings: ${problems.join('; ')}`);
  return options;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}


/** Polls `done` every 20 ms until it holds; throws naming `what` after `ms`. */
async function until(done: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await done())) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// ---- redis-server, bench-owned (never the shared 6379) ---------------------------------

let redisProcess: ChildProcess | undefined;
let redisDir: string | undefined;

/** As README recommends for a cluster: AOF on, fsync every second. */
async function startRedis(port: number): Promise<void> {
  redisDir = mkdtempSync(join(tmpdir(), 'redis-cost-'));
  const args = ['--port', String(port), '--bind', HOST, '--dir', redisDir, '--appendonly', 'yes', '--appendfsync', 'everysec'];
  args.push('--save', '', '--protected-mode', 'yes', '--daemonize', 'no');
  redisProcess = spawn('redis-server', args, { stdio: 'ignore' });
  redisProcess.once('error', () => {}); // a missing binary shows as the PING wait failing
  await until(async () => {
    if (redisProcess?.exitCode !== null) throw new Error('redis-server exited at start (is it installed?)');
    try {
      const probe = await StatsConnection.open(port, HOST);
      probe.close();
      return true;
    } catch {
      return false;
    }
  }, START_TIMEOUT_MS, `redis-server on ${port}`);
}

function redisVersion(): string {
  const out = spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout ?? '';
  return /v=(\S+)/.exec(out)?.[1] ?? 'unknown';
}

// ---- the nodes and their pages --------------------------------------------------------

interface RunningNode {
  child: Child;
  ioPort: number;
  apiPort: number;
}

async function startNodes(count: number, redisUrl: string): Promise<RunningNode[]> {
  const nodes: RunningNode[] = [];
  for (let i = 0; i < count; i++) {
    const listen = { HOST, IO_PORT: '0', API_PORT: '0', WEB_PORT: 'off' };
    // every page comes from 127.0.0.1: the per-address connection cap would refuse them
    const env = { ...process.env, MAX_CONNECTIONS_PER_IP: '0', REDIS_URL: redisUrl, ...listen };
    const child = new Child(`node ${i + 1}`, SERVER_SCRIPT, env, false, startNodeFlags());
    const match = await child.waitForLine(PORTS_LINE, START_TIMEOUT_MS);
    nodes.push({ child, ioPort: Number(match[1]), apiPort: Number(match[2]) });
  }
  return nodes;
}

/** Pages in this process: socket.io-client 4.x over WebSocket, one uid each, acking what asks for it. */
class Pages {
  readonly sockets: Socket[] = [];
  readonly uids: string[] = [];
  received = 0;
  acked = 0;
  subscribed = 0;

  async connect(nodes: RunningNode[], perNode: number): Promise<void> {
    const logins: Promise<unknown>[] = [];
    nodes.forEach((node, n) => {
      for (let i = 0; i < perNode; i++) {
        const uid = `n${n}-p${i}`;
        const socket = ioV4(`http://${HOST}:${node.ioPort}`, { transports: ['websocket'], reconnection: false });
        socket.on('new_msg', () => this.received++);
        socket.on('message', (_data: unknown, _meta: unknown, ack?: () => void) => {
          this.received++;
          if (typeof ack === 'function') {
            ack();
            this.acked++;
          }
        });
        this.sockets.push(socket);
        this.uids.push(uid);
        logins.push(
          orThrow(socket.emitWithAck('login', uid), START_TIMEOUT_MS, `login of ${uid}`).then(async (reply) => {
            if ((reply as { ok?: boolean }).ok !== true) throw new Error(`login of ${uid}: ${JSON.stringify(reply)}`);
            if (i % 5 === 0) {
              const answer = (await socket.emitWithAck('subscribe', [TOPIC])) as { ok?: boolean };
              if (answer.ok !== true) throw new Error(`subscribe of ${uid}: ${JSON.stringify(answer)}`);
              this.subscribed++;
            }
          }),
        );
      }
    });
    await Promise.all(logins);
  }

  close(): void {
    for (const socket of this.sockets) socket.close();
  }
}

// ---- one kind of push -----------------------------------------------------------------

/** Sends `count` pushes of `kind`, alternating between the nodes' APIs, `LANES` at a time. */
async function push(kind: Kind, count: number, pushers: Pusher[], pages: Pages, seed: number): Promise<void> {
  const random = seededRandom(seed);
  const remote = kind === 'legacy-remote';
  const pool = remote ? pages.uids.filter((uid) => uid.startsWith('n1-')) : pages.uids;
  const targets = Array.from({ length: count }, () => pool[Math.floor(random() * pool.length)]!);
  const run = Date.now();
  await runLanes(LANES, count, Number.POSITIVE_INFINITY, async (i) => {
    const pusher = pushers[remote ? 0 : i % pushers.length]!;
    const to = targets[i]!;
    if (kind === 'legacy' || kind === 'legacy-broadcast' || remote) {
      const word = await pusher.legacy(kind === 'legacy-broadcast' ? '' : to, DATA);
      if (word !== 'ok') throw new Error(`${kind} push ${i} answered ${word}`);
      return;
    }
    const body: Record<string, unknown> = { data: DATA };
    if (kind === 'v1' || kind === 'v1-ttl' || kind === 'v1-ttl-id') body.to = to;
    if (kind === 'v1-ttl' || kind === 'v1-ttl-id') body.ttl = 60;
    if (kind === 'v1-ttl-id') body.id = `cost-${run}-${i}`;
    if (kind === 'topic') body.topic = TOPIC;
    const answer = await pusher.postJson('/api/v1/push', body);
    if (answer.status !== 200) throw new Error(`${kind} push ${i} answered ${answer.status}: ${answer.body.slice(0, 200)}`);
  });
}

/** Deliveries one push of `kind` makes: a page per uid, every page, or the topic's. */
function deliveriesPerPush(kind: Kind, pages: Pages): number {
  if (kind === 'legacy-broadcast' || kind === 'broadcast') return pages.sockets.length;
  if (kind === 'topic') return pages.subscribed;
  return 1;
}

// ---- figures ----------------------------------------------------------------------------

interface KindResult {
  kind: Kind;
  pushes: number;
  deliveries: number;
  ms: number;
  /** Per push, the idle background of the same length taken out. */
  commands: number;
  calls: Record<string, number>;
  bytesIn: number;
  bytesOut: number;
  /** Of `commands`, the calls sent by the nodes (not made inside a Lua script of ours). */
  sent: number;
  /** CPU (user + system, 10 ms ticks) of each node per push, µs, its idle CPU taken out. */
  cpuUs: number[];
}

interface RoundResult {
  nodes: number;
  pages: number;
  subscribed: number;
  idle: { perSecond: Record<string, number>; bytesInPerSecond: number; bytesOutPerSecond: number; seconds: number; cpuMsPerSecond: number[] };
  kinds: KindResult[];
}

/** Commands our Lua scripts call: read from their sources, so the split follows the code. */
function scriptCommands(): Set<string> {
  const names = new Set<string>();
  for (const file of ['redis-store-scripts.ts', 'redis-presence-scripts.ts']) {
    const source = readFileSync(join(PROJECT_ROOT, 'src', 'cluster', file), 'utf8');
    for (const match of source.matchAll(/redis\.call\('(\w+)'/g)) names.add(match[1]!.toLowerCase());
  }
  return names;
}

function perSecond(window: Window, cpu: number[]): RoundResult['idle'] {
  const seconds = window.ms / 1000;
  const rates: Record<string, number> = {};
  for (const [name, calls] of Object.entries(window.calls)) rates[name] = calls / seconds;
  return {
    perSecond: rates,
    bytesInPerSecond: window.bytesIn / seconds,
    bytesOutPerSecond: window.bytesOut / seconds,
    seconds,
    cpuMsPerSecond: cpu.map((ms) => ms / seconds),
  };
}

function perPush(kind: Kind, window: Window, cpu: number[], idle: RoundResult['idle'], pushes: number, deliveries: number, inScripts: Set<string>): KindResult {
  const seconds = window.ms / 1000;
  const calls: Record<string, number> = {};
  const names = new Set([...Object.keys(window.calls), ...Object.keys(idle.perSecond)]);
  for (const name of names) {
    const value = ((window.calls[name] ?? 0) - (idle.perSecond[name] ?? 0) * seconds) / pushes;
    if (Math.abs(value) >= 0.005) calls[name] = value;
  }
  const sum = (filter: (name: string) => boolean) =>
    Object.entries(calls).reduce((total, [name, n]) => total + (filter(name) ? n : 0), 0);
  return {
    kind,
    pushes,
    deliveries,
    ms: window.ms,
    commands: sum(() => true),
    calls,
    bytesIn: (window.bytesIn - idle.bytesInPerSecond * seconds) / pushes,
    bytesOut: (window.bytesOut - idle.bytesOutPerSecond * seconds) / pushes,
    sent: sum((name) => !inScripts.has(name)),
    cpuUs: cpu.map((ms, i) => ((ms - idle.cpuMsPerSecond[i]! * seconds) * 1000) / pushes),
  };
}

// ---- a round: N nodes, their pages, every kind ------------------------------------------

async function round(nodeCount: number, options: Options, redisPort: number, stats: StatsConnection, inScripts: Set<string>): Promise<RoundResult> {
  const nodes = await startNodes(nodeCount, `redis://${HOST}:${redisPort}`);
  const pages = new Pages();
  const pushers = nodes.map((n) => new Pusher(HOST, n.apiPort, LANES, undefined));
  try {
    await pages.connect(nodes, options.pagesPerNode);
    const expectedPages = nodeCount * options.pagesPerNode;
    // every node's presence has written its pages, and the scripts are loaded: a few pushes of
    // each kind first, unmeasured
    for (const kind of options.kinds) if (kind !== 'legacy-remote' || nodeCount >= 3) await settle(kind, 20, pushers, pages, stats, 1);
    const users = async () => {
      const answer = await fetch(`http://${HOST}:${nodes[0]!.apiPort}/api/v1/online`);
      return ((await answer.json()) as { pages?: number }).pages === expectedPages;
    };
    await until(users, START_TIMEOUT_MS, `all ${expectedPages} pages online in Redis`);

    const cpu = () => nodes.map((n) => cpuMs(n.child.pid));
    const since = (start: number[]) => cpu().map((ms, i) => ms - start[i]!);
    let start = cpu();
    await stats.resetStats();
    await new Promise((r) => setTimeout(r, options.idleSeconds * 1000)); // the idle window is the measurement
    const idle = perSecond(await stats.window(), since(start));

    const kinds: KindResult[] = [];
    for (const [k, kind] of options.kinds.entries()) {
      if (kind === 'legacy-remote' && nodeCount < 3) continue;
      const count = kind === 'legacy-remote' ? options.pushes * 5 : options.pushes;
      const before = pages.received;
      start = cpu();
      await stats.resetStats();
      await settle(kind, count, pushers, pages, stats, 100 + k);
      const window = await stats.window();
      kinds.push(perPush(kind, window, since(start), idle, count, pages.received - before, inScripts));
      console.log(`  ${nodeCount} nodes, ${kind}: ${kinds.at(-1)!.commands.toFixed(2)} commands, ` +
        `${Math.round(kinds.at(-1)!.bytesIn)} B in, ${Math.round(kinds.at(-1)!.bytesOut)} B out per push`);
    }
    return { nodes: nodeCount, pages: expectedPages, subscribed: pages.subscribed, idle, kinds };
  } finally {
    pages.close();
    for (const pusher of pushers) pusher.close();
    await Promise.all(nodes.map((n) => n.child.stop('SIGTERM', 10_000)));
  }
}

/**
 * Pushes and waits until every delivery arrived and, for a stored kind, every page's ack has
 * emptied the store (ZCARD of its order set, through the stats connection, which counts it).
 */
async function settle(kind: Kind, count: number, pushers: Pusher[], pages: Pages, stats: StatsConnection, seed: number): Promise<void> {
  const expected = pages.received + count * deliveriesPerPush(kind, pages);
  await push(kind, count, pushers, pages, seed);
  await until(() => pages.received >= expected, SETTLE_TIMEOUT_MS, `${kind}: ${count} pushes delivered`);
  if (pages.received > expected) throw new Error(`${kind}: ${pages.received - expected} deliveries more than pushed`);
  if (kind === 'v1-ttl' || kind === 'v1-ttl-id') {
    await until(async () => (await stats.command('ZCARD', 'push:order')) === 0, SETTLE_TIMEOUT_MS, `${kind}: acks reached the store`);
  }
}

// ---- redis-benchmark: one redis-server's ops/s for the dominant commands ---------------

interface BenchmarkLine {
  command: string;
  pipeline: number;
  opsPerSecond: number;
}

function redisBenchmark(port: number): BenchmarkLine[] | string {
  const probe = spawnSync('redis-benchmark', ['--version'], { encoding: 'utf8' });
  if (probe.error) return `redis-benchmark not found (${probe.error.message})`;
  const runs: { command: string; pipeline: number; args: string[] }[] = [
    { command: `PUBLISH (${DATA.length + 80}-byte message)`, pipeline: 1, args: ['PUBLISH', 'bench-channel', 'x'.repeat(DATA.length + 80)] },
    { command: `PUBLISH (${DATA.length + 80}-byte message)`, pipeline: 16, args: ['PUBLISH', 'bench-channel', 'x'.repeat(DATA.length + 80)] },
    { command: 'HEXISTS', pipeline: 1, args: ['HEXISTS', 'push:presence:users', 'n0-p1'] },
    { command: 'HEXISTS', pipeline: 16, args: ['HEXISTS', 'push:presence:users', 'n0-p1'] },
  ];
  const lines: BenchmarkLine[] = [];
  for (const run of runs) {
    const args = ['-h', HOST, '-p', String(port), '-n', '200000', '-c', '50', '-P', String(run.pipeline), '-q', ...run.args];
    const out = spawnSync('redis-benchmark', args, { encoding: 'utf8', timeout: 120_000 });
    const match = /([\d.]+) requests per second/.exec(out.stdout ?? '');
    if (!match) return `redis-benchmark gave no figure: ${(out.stderr || out.stdout || '').slice(0, 300)}`;
    lines.push({ command: run.command, pipeline: run.pipeline, opsPerSecond: Number(match[1]) });
  }
  return lines;
}

// ---- report -----------------------------------------------------------------------------

const fixed = (n: number, digits = 2) => n.toFixed(digits);
const int = (n: number) => Math.round(n).toLocaleString('en-US');

function markdown(rounds: RoundResult[], options: Options, date: string, version: string, benchmark: BenchmarkLine[] | string | null, inScripts: Set<string>): string {
  const m = describeMachine();
  const lines = [
    '## push-server: Redis cost per push',
    '',
    `- date: ${date}; machine: ${m.cpus} CPUs, ${m.cpuModel}, ${m.memoryGiB} GiB, node ${m.node}; redis-server ${version} (AOF on, everysec)`,
    `- ${options.pagesPerNode} pages per node (socket.io-client 4.x, websocket, one uid each; every fifth subscribed to topic \`${TOPIC}\`); ` +
      `${options.pushes} pushes per kind with ${DATA.length}-byte data, ${LANES} at a time, alternating between the nodes' push APIs, each targeted push to a random page of any node`,
    `- each kind: CONFIG RESETSTAT, the pushes, wait until every delivery arrived (and, for stored kinds, every ack emptied the store), INFO; ` +
      `the bench's own commands and bytes are taken out exactly, then the idle background (a ${options.idleSeconds} s window with no pushes) times the window's length; divided by the pushes`,
    '- CPU: user + system time of each node process from /proc over the window, idle CPU taken out; 10 ms ticks and a machine shared ' +
      'with the pages and other work: a rough figure, unlike the counts',
    '- "commands" counts what commandstats counts: the calls our Lua scripts make count too. "sent" is the part the nodes send ' +
      '(round trips of a connection, each a unit of Redis\'s event loop); the rest run inside `EVALSHA`/`EVAL`. ' +
      `Split by name: a command our scripts call (${[...inScripts].sort().join(', ')}) counts as in-script`,
    '',
  ];
  for (const r of rounds) {
    lines.push(`### ${r.nodes} nodes, ${r.pages} pages (${r.subscribed} in the topic)`, '');
    lines.push('| kind | deliveries per push | commands per push | sent by the nodes | bytes into Redis | bytes out of Redis | CPU per push of each node, µs | calls per push |');
    lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
    for (const k of r.kinds) {
      const calls = Object.entries(k.calls)
        .filter(([, n]) => Math.abs(n) >= 0.05) // below: what is left of the background's jitter
        .sort((a, b) => b[1] - a[1])
        .map(([name, n]) => `${name} ${fixed(n)}`)
        .join(', ');
      const cpu = k.cpuUs.map((us) => String(Math.round(us))).join(' / ');
      lines.push(`| ${k.kind} | ${fixed(k.deliveries / k.pushes, 1)} | ${fixed(k.commands)} | ${fixed(k.sent)} | ${int(k.bytesIn)} | ${int(k.bytesOut)} | ${cpu} | ${calls} |`);
    }
    const idleCalls = Object.entries(r.idle.perSecond)
      .sort((a, b) => b[1] - a[1])
      .map(([name, n]) => `${name} ${fixed(n, 1)}`)
      .join(', ');
    const idleTotal = Object.values(r.idle.perSecond).reduce((a, b) => a + b, 0);
    lines.push('', `Idle background of the ${r.nodes} nodes (taken out above): ${fixed(idleTotal, 1)} commands/s ` +
      `(${idleCalls}), ${int(r.idle.bytesInPerSecond)} B/s in, ${int(r.idle.bytesOutPerSecond)} B/s out; ` +
      `node CPU ${r.idle.cpuMsPerSecond.map((ms) => fixed(ms / 10, 1)).join(' / ')} % of a core.`, '');
  }
  if (rounds.length >= 2) {
    const [a, b] = [rounds[0]!, rounds.at(-1)!];
    const span = b.nodes - a.nodes;
    lines.push(`### What one more node adds per push (from ${a.nodes} to ${b.nodes} nodes, linear)`, '');
    lines.push('| kind | commands | bytes into Redis | bytes out of Redis |', '| --- | ---: | ---: | ---: |');
    for (const kb of b.kinds) {
      const ka = a.kinds.find((k) => k.kind === kb.kind);
      if (!ka) continue;
      const slope = (f: (k: KindResult) => number) => (f(kb) - f(ka)) / span;
      lines.push(`| ${kb.kind} | ${fixed(slope((k) => k.commands))} | ${int(slope((k) => k.bytesIn))} | ${int(slope((k) => k.bytesOut))} |`);
    }
    lines.push('');
  }
  lines.push('Kinds:', '', ...options.kinds.map((k) => `- \`${k}\`: ${KINDS[k]}`), '');
  if (benchmark !== null) {
    lines.push('### One redis-server, `redis-benchmark` (50 clients, 200000 requests; shares the 2 cores with the bench)', '');
    if (typeof benchmark === 'string') lines.push(benchmark, '');
    else {
      lines.push('| command | pipeline | ops/s |', '| --- | ---: | ---: |');
      for (const b of benchmark) lines.push(`| ${b.command} | ${b.pipeline} | ${int(b.opsPerSecond)} |`);
      lines.push('');
    }
  }
  return lines.join('\n');
}

function save(text: string, json: unknown): string[] {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const files: [string, string][] = [
    ['redis-cost-latest.md', text],
    ['redis-cost-latest.json', JSON.stringify(json, null, 2) + '\n'],
  ];
  return files.map(([name, content]) => {
    const path = RESULTS_DIR + name;
    writeFileSync(`${path}.tmp`, content);
    renameSync(`${path}.tmp`, path);
    return path;
  });
}

async function main(): Promise<void> {
  const options = loadOptions(process.env);
  await buildServer(join(PROJECT_ROOT, 'start.ts'), SERVER_SCRIPT);
  const redisPort = await freePort(HOST);
  await startRedis(redisPort);
  const stats = await StatsConnection.open(redisPort, HOST);
  try {
    // the subtraction itself, checked: with no node connected, nothing may be left
    await stats.resetStats();
    await stats.command('ZCARD', 'push:order');
    const empty = await stats.window();
    if (empty.bytesIn !== 0 || empty.bytesOut !== 0 || Object.keys(empty.calls).length > 0) {
      throw new Error(`self-check: the bench's own traffic did not subtract to 0: ${JSON.stringify(empty)}`);
    }
    const inScripts = scriptCommands();
    const date = new Date().toISOString();
    const rounds: RoundResult[] = [];
    for (const nodes of options.nodes) rounds.push(await round(nodes, options, redisPort, stats, inScripts));
    const benchmark = options.benchmark ? redisBenchmark(redisPort) : null;
    const version = redisVersion();
    const text = markdown(rounds, options, date, version, benchmark, inScripts);
    const written = save(text, { date, machine: describeMachine(), redis: version, options, rounds, benchmark });
    console.log(`\n${text}`);
    console.log(`written: ${written.map((p) => p.slice(PROJECT_ROOT.length)).join(', ')}`);
  } finally {
    stats.close();
  }
}

// every process it started dies with it: the nodes (children) and Redis; the temp dir goes
stopChildrenOnExit('redis-cost', () => {
  redisProcess?.kill('SIGKILL');
  if (redisDir) rmSync(redisDir, { recursive: true, force: true });
});

try {
  await main();
} catch (err) {
  console.error(`redis-cost: ${describe(err)}`);
  process.exitCode = 1;
}
process.exit();
