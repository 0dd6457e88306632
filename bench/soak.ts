// `npm run soak`: end-to-end accounting while servers die under the clients. N pages (the
// SDK on socket.io-client 4.x, in worker processes) take a steady stream of v1 pushes with a
// ttl; servers (and in the cluster mode Redis) are SIGKILLed and restarted mid-stream on the
// same ports and data. Every push answered 200 with its id must reach its page: at least
// once, and exactly once after the SDK's de-duplication. Settings: SOAK_* (bench/README.md).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildServer } from '../scripts/build.ts';
import { startNodeFlags } from '../scripts/start-flags.ts';
import { Child, nextMessage, PROJECT_ROOT, stopChildrenOnExit } from './children.ts';
import { orThrow } from './deadline.ts';
import { describeMachine, openFilesLimit, peakRssKb } from './proc.ts';
import { Pusher } from './pusher.ts';
import type { PageEvent, SoakCommand, SoakReply } from './soak-ipc.ts';
import { seededRandom } from './stats.ts';
import { freePort } from './ports.ts';

const HOST = '127.0.0.1'; // loopback only: nothing here listens on or reaches another host
const SERVER_SCRIPT = join(PROJECT_ROOT, 'dist', 'start.js');
const WORKER_SCRIPT = fileURLToPath(new URL('./soak-worker.ts', import.meta.url));
const RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));
const PORTS_LINE = /socket\.io http:\/\/[^\s|]*:(\d+) \| push API http:\/\/[^\s|]*:(\d+)/;
const START_TIMEOUT_MS = 30_000;
/** A restarted server or Redis must have all its pages logged in again within this. */
const BACK_TIMEOUT_MS = 90_000;
/** Pushes in flight at once; a tick that finds this many waiting skips its pushes (counted). */
const MAX_IN_FLIGHT = 256;
const HTTP_CONNECTIONS = 32;
const TTL_SECONDS = 600;

type Mode = 'embedded' | 'redis';

interface Options {
  clients: number;
  seconds: number;
  rate: number;
  modes: Mode[];
  clientProcesses: number;
  connectWindow: number;
  gapMs: number;
  drainSeconds: number;
  offlinePercent: number;
  offlineMs: number;
  /** The STORE value of the embedded mode: `embedded` (the default engine) unless overridden. */
  store: string;
}

function loadOptions(env: NodeJS.ProcessEnv): Options {
  const problems: string[] = [];
  const integer = (name: string, fallback: number, min = 1): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min) problems.push(`${name} must be an integer >= ${min}, got "${raw}"`);
    return Number.isInteger(value) && value >= min ? value : fallback;
  };
  const modes = (env.SOAK_MODES || 'embedded,redis').split(',').map((s) => s.trim());
  if (modes.length === 0 || modes.some((m) => m !== 'embedded' && m !== 'redis')) {
    problems.push(`SOAK_MODES must list embedded and/or redis, got "${env.SOAK_MODES}"`);
  }
  const store = env.SOAK_STORE || 'embedded';
  if (!/^[a-z]+$/.test(store)) problems.push(`SOAK_STORE must be a store name such as embedded or memory, got "${store}"`);
  const options: Options = {
    clients: integer('SOAK_CLIENTS', 2000),
    seconds: integer('SOAK_SECONDS', 45, 6),
    rate: integer('SOAK_RATE', 200),
    modes: modes as Mode[],
    clientProcesses: integer('SOAK_CLIENT_PROCS', 2),
    connectWindow: integer('SOAK_CONNECT_WINDOW', 200),
    gapMs: integer('SOAK_GAP_MS', 2000, 0),
    drainSeconds: integer('SOAK_DRAIN_SECONDS', 60),
    offlinePercent: integer('SOAK_OFFLINE_PERCENT', 10, 0),
    offlineMs: integer('SOAK_OFFLINE_MS', 3000),
    store,
  };
  if (options.offlinePercent > 50) problems.push(`SOAK_OFFLINE_PERCENT must be 0-50, got ${options.offlinePercent}`);
  if (problems.length > 0) throw new Error(`bad settings: ${problems.join('; ')}`);
  return options;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}


// ---- redis-server, test-owned (never the shared 6379) ----------------------------------

const redisProcesses = new Set<ChildProcess>();
/** The soak's temp dirs (data dirs, the AOF): removed at the end, also on Ctrl-C. */
const tempDirs = new Set<string>();

class SoakRedis {
  private proc: ChildProcess | undefined;
  /** Largest VmHWM seen, over its restarts. */
  private peak = 0;
  constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  get url(): string {
    return `redis://${HOST}:${this.port}`;
  }

  async start(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', HOST, '--dir', this.dir, '--appendonly', 'yes'];
    args.push('--appendfsync', 'everysec', '--save', '', '--protected-mode', 'yes', '--daemonize', 'no');
    const proc = spawn('redis-server', args, { stdio: 'ignore' });
    this.proc = proc;
    redisProcesses.add(proc);
    proc.once('exit', () => redisProcesses.delete(proc));
    await orThrow(this.waitForPong(), START_TIMEOUT_MS, `redis-server on ${this.port}`);
  }

  /** PING until +PONG: while it loads its AOF, Redis answers -LOADING. */
  private async waitForPong(): Promise<void> {
    for (;;) {
      if (this.proc?.exitCode !== null || this.proc.signalCode !== null) throw new Error('redis-server exited at start');
      const answer = await new Promise<string>((resolve) => {
        const socket = connect(this.port, HOST);
        let text = '';
        socket.on('connect', () => socket.write('PING\r\n'));
        socket.on('data', (chunk) => {
          text += chunk.toString();
          if (text.includes('\r\n')) socket.destroy();
        });
        socket.on('close', () => resolve(text));
        socket.on('error', () => resolve(''));
      });
      if (answer.startsWith('+PONG')) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    this.peakKb();
    proc.kill('SIGKILL');
    await once(proc, 'exit');
  }

  peakKb(): number {
    if (this.proc?.pid !== undefined && this.proc.exitCode === null) this.peak = Math.max(this.peak, peakRssKb(this.proc.pid));
    return this.peak;
  }
}

// ---- our server nodes -----------------------------------------------------------------

class Node {
  private child: Child | undefined;
  /** Largest VmHWM seen of any process of this node, over its restarts. */
  peakKb = 0;

  constructor(
    readonly name: string,
    readonly ioPort: number,
    readonly apiPort: number,
    private readonly env: Record<string, string>,
  ) {}

  async start(): Promise<void> {
    const listen = { HOST, IO_PORT: String(this.ioPort), API_PORT: String(this.apiPort), WEB_PORT: 'off' };
    // every page comes from 127.0.0.1: the per-address connection cap would refuse most of them
    const env = { ...process.env, MAX_CONNECTIONS_PER_IP: '0', ...this.env, ...listen };
    this.child = new Child(this.name, SERVER_SCRIPT, env, false, startNodeFlags()); // as `npm start` runs it
    await this.child.waitForLine(PORTS_LINE, START_TIMEOUT_MS);
  }

  sample(): void {
    if (this.child?.running) this.peakKb = Math.max(this.peakKb, peakRssKb(this.child.pid));
  }

  async kill(): Promise<void> {
    this.sample(); // the last chance to read its peak
    await this.child?.stop('SIGKILL');
  }

  /** SIGTERM at the end, as a deploy stops it; says so when it did not exit cleanly. */
  async stop(): Promise<string | null> {
    if (!this.child?.running) return this.child ? `${this.name} had died (${this.child.exitStatus()}): ${this.child.output().slice(-1500)}` : null;
    this.sample();
    await this.child.stop('SIGTERM', 10_000);
    return this.child.exitStatus() === 'code 0' ? null : `${this.name} did not exit cleanly on SIGTERM (${this.child.exitStatus()})`;
  }

  get running(): boolean {
    return this.child?.running ?? false;
  }

  output(): string {
    return this.child?.output() ?? '';
  }
}

// ---- the client workers ---------------------------------------------------------------

type Reply<T extends SoakReply['type']> = Extract<SoakReply, { type: T }>;

class Pages {
  private constructor(readonly workers: Child[]) {}

  static async start(count: number): Promise<Pages> {
    const pages = new Pages([]);
    for (let i = 0; i < count; i++) pages.workers.push(new Child(`soak worker ${i}`, WORKER_SCRIPT, process.env, true));
    await Promise.all(pages.workers.map((w) => nextMessage<SoakReply, 'ready'>(w, 'ready', START_TIMEOUT_MS)));
    return pages;
  }

  begin(urls: string[], clients: number, window: number): void {
    const perWindow = Math.max(1, Math.floor(window / this.workers.length));
    this.workers.forEach((worker, i) => {
      const uids: number[] = [];
      for (let uid = 1; uid <= clients; uid++) if (uid % this.workers.length === i) uids.push(uid);
      const command: SoakCommand = { type: 'start', urls, uids, window: perWindow };
      worker.process.send(command);
    });
  }

  async status(): Promise<Omit<Reply<'status'>, 'type'>> {
    const replies = await this.askAll('status');
    const sum = (f: (r: Reply<'status'>) => number) => replies.reduce((total, r) => total + f(r), 0);
    return {
      loggedIn: sum((r) => r.loggedIn),
      awake: sum((r) => r.awake),
      total: sum((r) => r.total),
      marked: sum((r) => r.marked),
      back: sum((r) => r.back),
    };
  }

  tell(command: Extract<SoakCommand, { type: 'churn' | 'mark' }>): void {
    for (const worker of this.workers) worker.process.send(command);
  }

  report(): Promise<Reply<'report'>[]> {
    return this.askAll('report');
  }

  /** The recent events of these pages, from whichever worker holds each. */
  async history(uids: number[]): Promise<Map<number, PageEvent[]>> {
    const replies = await Promise.all(
      this.workers.map((worker) => {
        const answer = nextMessage<SoakReply, 'history'>(worker, 'history', 20_000);
        worker.process.send({ type: 'history', uids } satisfies SoakCommand);
        return answer;
      }),
    );
    return new Map(replies.flatMap((r) => r.pages.map((p): [number, PageEvent[]] => [p.uid, p.events])));
  }

  private askAll<T extends 'status' | 'report'>(type: T): Promise<Reply<T>[]> {
    return Promise.all(
      this.workers.map((worker) => {
        const answer = nextMessage<SoakReply, typeof type>(worker, type, 20_000);
        worker.process.send({ type } satisfies SoakCommand);
        return answer;
      }),
    );
  }

  async stop(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.stop('SIGKILL')));
  }
}

/**
 * Resolves ms until `done` holds for the pages' status (polled every 100 ms), or null when
 * `timeoutMs` ran out first; `last` is the count `done` looked at.
 */
async function until(
  pages: Pages,
  done: (s: Awaited<ReturnType<Pages['status']>>) => [boolean, number],
  timeoutMs: number,
): Promise<{ ms: number | null; last: number }> {
  const began = performance.now();
  let last = 0;
  while (performance.now() - began < timeoutMs) {
    const [ok, count] = done(await pages.status());
    last = count;
    if (ok) return { ms: performance.now() - began, last };
    await new Promise((r) => setTimeout(r, 100));
  }
  return { ms: null, last };
}

// ---- the push stream ------------------------------------------------------------------

class Stream {
  readonly accepted = new Map<number, number>(); // seq -> uid
  /** seq -> ms into the stream when it was answered, to place a lost push against the kills. */
  readonly answeredAt = new Map<number, number>();
  private began = 0;
  readonly refused = new Map<string, number>(); // reason -> count
  attempted = 0;
  skipped = 0;
  private inFlight = 0;
  private seq = 0;
  private readonly settled = new Set<Promise<void>>();
  private readonly random = seededRandom(12);

  constructor(
    private readonly pushers: Pusher[],
    private readonly clients: number,
  ) {}

  /** Sends `rate` pushes a second, evenly, until `stop()` says so; resolves when all are answered. */
  async run(rate: number, stop: () => boolean): Promise<void> {
    const began = performance.now();
    this.began = began;
    while (!stop()) {
      const due = Math.floor(((performance.now() - began) / 1000) * rate);
      while (this.attempted + this.skipped < due) {
        if (this.inFlight >= MAX_IN_FLIGHT) this.skipped += 1;
        else this.push();
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    await Promise.all(this.settled);
  }

  private push(): void {
    const seq = ++this.seq;
    const uid = 1 + Math.floor(this.random() * this.clients);
    const id = `soak-${seq}`;
    const pusher = this.pushers[seq % this.pushers.length]!;
    this.attempted += 1;
    this.inFlight += 1;
    const done = pusher
      .postJson('/api/v1/push', { to: String(uid), data: { seq }, ttl: TTL_SECONDS, id })
      .then(
        (answer) => {
          let answeredId: unknown;
          try {
            answeredId = (JSON.parse(answer.body) as { id?: unknown }).id;
          } catch {
            answeredId = undefined;
          }
          if (answer.status === 200 && answeredId === id) {
            this.accepted.set(seq, uid);
            this.answeredAt.set(seq, performance.now() - this.began);
          }
          else this.count(`HTTP ${answer.status}`);
        },
        (err: unknown) => this.count((err as { code?: string }).code ?? (err instanceof Error ? err.name : 'error')),
      )
      .finally(() => {
        this.inFlight -= 1;
        this.settled.delete(done);
      });
    this.settled.add(done);
  }

  private count(reason: string): void {
    this.refused.set(reason, (this.refused.get(reason) ?? 0) + 1);
  }
}

// ---- one mode -------------------------------------------------------------------------

interface Restart {
  what: string;
  /** s into the stream when it was killed. */
  atSeconds: number;
  /** s from the kill until it answered again (SIGKILL, gap, start). */
  downSeconds: number;
  /** s from its restart until every page was logged in again; null: not within the deadline. */
  backSeconds: number | null;
  /** s from the kill until every page was logged in again. */
  backFromKillSeconds: number | null;
  /** pages logged in when the wait ended (all of them unless it timed out). */
  loggedIn: number;
  /**
   * Pushes answered 200 in the second before the kill: with 0 lost, none of them was lost to
   * it (for Redis: what it answered was in its AOF file, written before the reply).
   */
  acceptedLastSecond: number;
}

interface ModeResult {
  mode: Mode;
  setup: string;
  clients: number;
  streamSeconds: number;
  attempted: number;
  accepted: number;
  notAccepted: Record<string, number>;
  skipped: number;
  receivedUnique: number;
  receivedNotAccepted: number;
  duplicates: number;
  handlerRepeats: number;
  lost: number;
  /**
   * The first lost pushes: to which uid (on which node), through which node's API, answered
   * when (s into the stream), and what the page did around then (s into the stream).
   */
  lostSample: { seq: number; uid: number; page: string; via: string; atSeconds: number; pageEvents: string }[];
  drainSeconds: number | null;
  connectSeconds: number | null;
  restarts: Restart[];
  logins: number;
  loginFailures: number;
  peakRssMiB: Record<string, number>;
  notes: string[];
}

async function runMode(mode: Mode, options: Options): Promise<ModeResult> {
  const notes: string[] = [];
  const restarts: Restart[] = [];
  const temp = mkdtempSync(join(tmpdir(), `soak-${mode}-`));
  const nodes: Node[] = [];
  let redis: SoakRedis | undefined;
  let pages: Pages | undefined;
  const pushers: Pusher[] = [];
  const result: ModeResult = {
    mode,
    setup: '',
    clients: options.clients,
    streamSeconds: options.seconds,
    attempted: 0,
    accepted: 0,
    notAccepted: {},
    skipped: 0,
    receivedUnique: 0,
    receivedNotAccepted: 0,
    duplicates: 0,
    handlerRepeats: 0,
    lost: 0,
    lostSample: [],
    drainSeconds: null,
    connectSeconds: null,
    restarts,
    logins: 0,
    loginFailures: 0,
    peakRssMiB: {},
    notes,
  };
  tempDirs.add(temp);
  const sampler = setInterval(() => {
    nodes.forEach((n) => n.sample());
    redis?.peakKb();
  }, 1000);
  try {
    if (mode === 'embedded') {
      const env = { STORE: options.store, DATA_DIR: join(temp, 'data') };
      nodes.push(new Node('node', await freePort(HOST), await freePort(HOST), env));
      result.setup = `one node, STORE=${options.store} DATA_DIR=<temp>; node SIGKILLed and restarted twice`;
    } else {
      redis = new SoakRedis(await freePort(HOST), temp);
      await redis.start();
      for (const name of ['node A', 'node B']) nodes.push(new Node(name, await freePort(HOST), await freePort(HOST), { REDIS_URL: redis.url }));
      result.setup = 'two nodes on redis-server --appendonly yes --appendfsync everysec; node A SIGKILLed and restarted, then Redis';
    }
    await Promise.all(nodes.map((n) => n.start()));
    pages = await Pages.start(options.clientProcesses);
    const connectBegan = performance.now();
    pages.begin(
      nodes.map((n) => `http://${HOST}:${n.ioPort}`),
      options.clients,
      options.connectWindow,
    );
    const connected = await until(pages, (s) => [s.loggedIn >= options.clients, s.loggedIn], BACK_TIMEOUT_MS);
    if (connected.ms === null) throw new Error(`only ${connected.last} of ${options.clients} pages logged in within ${BACK_TIMEOUT_MS} ms`);
    result.connectSeconds = (performance.now() - connectBegan) / 1000;
    console.error(`[${mode}] ${options.clients} pages logged in in ${result.connectSeconds.toFixed(1)} s; streaming ${options.seconds} s at ${options.rate}/s`);

    for (const n of nodes) pushers.push(new Pusher(HOST, n.apiPort, HTTP_CONNECTIONS, undefined));
    const stream = new Stream(pushers, options.clients);
    if (options.offlinePercent > 0) pages.tell({ type: 'churn', percent: options.offlinePercent, offlineMs: options.offlineMs });
    const began = performance.now();
    const beganWall = Date.now();
    // It ends at SOAK_SECONDS, but never sooner than a sixth of it after the last page is back.
    let endAt = Infinity;
    const streaming = stream.run(options.rate, () => performance.now() >= endAt);

    // The kills: at a third and two thirds of the stream, each target down for SOAK_GAP_MS.
    const plan: { what: string; kill: () => Promise<void>; start: () => Promise<void> }[] =
      mode === 'embedded'
        ? [1, 2].map((k) => ({ what: `node (kill ${k})`, kill: () => nodes[0]!.kill(), start: () => nodes[0]!.start() }))
        : [
            { what: 'node A', kill: () => nodes[0]!.kill(), start: () => nodes[0]!.start() },
            { what: 'Redis', kill: () => redis!.kill(), start: () => redis!.start() },
          ];
    for (const [i, step] of plan.entries()) {
      const at = began + ((i + 1) * options.seconds * 1000) / 3;
      await new Promise((r) => setTimeout(r, Math.max(0, at - performance.now())));
      pages.tell({ type: 'mark' });
      const killedAt = performance.now();
      await step.kill();
      await new Promise((r) => setTimeout(r, options.gapMs));
      await step.start();
      const upAt = performance.now();
      const back = await until(pages, (s) => [s.back >= s.marked, s.back], BACK_TIMEOUT_MS);
      const restart: Restart = {
        what: step.what,
        atSeconds: (killedAt - began) / 1000,
        downSeconds: (upAt - killedAt) / 1000,
        backSeconds: back.ms === null ? null : back.ms / 1000,
        backFromKillSeconds: back.ms === null ? null : (upAt + back.ms - killedAt) / 1000,
        loggedIn: back.last,
        acceptedLastSecond: [...stream.answeredAt.values()].filter((ms) => ms >= killedAt - began - 1000 && ms <= killedAt - began).length,
      };
      restarts.push(restart);
      console.error(
        `[${mode}] ${step.what}: killed at ${restart.atSeconds.toFixed(1)} s, up after ${restart.downSeconds.toFixed(1)} s, ` +
          (back.ms === null ? `only ${back.last}/${options.clients} pages back` : `all pages back ${restart.backSeconds?.toFixed(1)} s later`),
      );
      if (back.ms === null) notes.push(`after the ${step.what} restart only ${back.last} of ${options.clients} pages logged in again within ${BACK_TIMEOUT_MS / 1000} s`);
    }
    endAt = Math.max(began + options.seconds * 1000, performance.now() + (options.seconds * 1000) / 6);
    await streaming;
    result.streamSeconds = (performance.now() - began) / 1000;
    result.attempted = stream.attempted;
    result.accepted = stream.accepted.size;
    result.notAccepted = Object.fromEntries(stream.refused);
    result.skipped = stream.skipped;
    console.error(`[${mode}] stream done: ${stream.accepted.size} of ${stream.attempted} pushes accepted; draining`);

    // Drain: every accepted push must arrive; kept ones may still be on their way, and the
    // pages offline on purpose come back within SOAK_OFFLINE_MS.
    pages.tell({ type: 'churn', percent: 0, offlineMs: 0 });
    const drainBegan = performance.now();
    let reports = await pages.report();
    let missing: number[] = [];
    for (;;) {
      const got = new Set(reports.flatMap((r) => r.received));
      missing = [...stream.accepted.keys()].filter((seq) => !got.has(seq));
      result.receivedUnique = stream.accepted.size - missing.length;
      result.receivedNotAccepted = [...got].filter((seq) => !stream.accepted.has(seq)).length;
      if (missing.length === 0) {
        result.drainSeconds = (performance.now() - drainBegan) / 1000;
        break;
      }
      if (performance.now() - drainBegan > options.drainSeconds * 1000) break;
      await new Promise((r) => setTimeout(r, 1000));
      reports = await pages.report();
    }
    result.lost = missing.length;
    const sample = missing.slice(0, 20);
    const histories = sample.length > 0 ? await pages.history(sample.map((seq) => stream.accepted.get(seq)!)) : new Map<number, PageEvent[]>();
    result.lostSample = sample.map((seq) => {
      const uid = stream.accepted.get(seq)!;
      const at = stream.answeredAt.get(seq)!;
      // what the page did from 10 s before the answer to 10 s after, in s into the stream
      const events = (histories.get(uid) ?? [])
        .map((e) => ({ s: (e.at - beganWall) / 1000, what: e.what }))
        .filter((e) => Math.abs(e.s - at / 1000) <= 10)
        .map((e) => `${e.what} ${e.s.toFixed(1)}`);
      return {
        seq,
        uid,
        page: nodes[uid % nodes.length]!.name,
        via: nodes[seq % pushers.length]!.name,
        atSeconds: Math.round(at) / 1000,
        pageEvents: events.join(', ') || 'nothing within 10 s',
      };
    });
    if (missing.length > 0) {
      const at = missing.map((seq) => stream.answeredAt.get(seq)! / 1000);
      notes.push(`lost pushes were answered between ${Math.min(...at).toFixed(1)} s and ${Math.max(...at).toFixed(1)} s into the stream (first ones in the JSON, lostSample)`);
      for (const l of result.lostSample.slice(0, 5)) {
        notes.push(`lost soak-${l.seq} to page ${l.uid} (on ${l.page}) via ${l.via}, answered ${l.atSeconds.toFixed(1)} s; the page: ${l.pageEvents}`);
      }
    }
    result.duplicates = reports.reduce((s, r) => s + r.duplicates, 0);
    result.handlerRepeats = reports.reduce((s, r) => s + r.handlerRepeats, 0);
    result.logins = reports.reduce((s, r) => s + r.logins, 0);
    result.loginFailures = reports.reduce((s, r) => s + r.loginFailures, 0);
    const unreadable = reports.reduce((s, r) => s + r.unreadable, 0);
    if (unreadable > 0) notes.push(`${unreadable} messages arrived without a seq`);
    if (result.handlerRepeats > 0) notes.push(`the SDK handed ${result.handlerRepeats} messages to the page twice`);
    if (missing.length > 0) notes.push(`${missing.length} accepted pushes never arrived within ${options.drainSeconds} s after the stream`);
  } catch (err) {
    notes.push(`run failed: ${describe(err)}`);
    result.lost = Math.max(result.lost, result.accepted - result.receivedUnique, 1);
  } finally {
    clearInterval(sampler);
    for (const p of pushers) p.close();
    await pages?.stop();
    for (const n of nodes) {
      const note = await n.stop();
      if (note) notes.push(note);
      result.peakRssMiB[n.name] = Math.round((n.peakKb / 1024) * 10) / 10;
    }
    if (redis) {
      result.peakRssMiB['redis-server'] = Math.round((redis.peakKb() / 1024) * 10) / 10;
      await redis.kill();
    }
    rmSync(temp, { recursive: true, force: true });
    tempDirs.delete(temp);
  }
  return result;
}

// ---- report ---------------------------------------------------------------------------

function markdown(results: ModeResult[], options: Options, date: string): string {
  const n = (v: number | null, digits = 0) => (v === null ? '–' : v.toFixed(digits));
  const rows: [string, (r: ModeResult) => string][] = [
    ['setup', (r) => r.setup],
    ['pages logged in at start (s)', (r) => n(r.connectSeconds, 1)],
    ['stream length (s)', (r) => r.streamSeconds.toFixed(0)],
    ['pushes sent', (r) => String(r.attempted)],
    ['pushes accepted (200 + id)', (r) => String(r.accepted)],
    ['not accepted (by answer)', (r) => Object.entries(r.notAccepted).map(([k, v]) => `${k}: ${v}`).join(', ') || '0'],
    ['received, unique', (r) => String(r.receivedUnique)],
    ['duplicates before de-dup', (r) => String(r.duplicates)],
    ['received but not accepted', (r) => String(r.receivedNotAccepted)],
    ['handed to the page twice (SDK)', (r) => String(r.handlerRepeats)],
    ['**lost**', (r) => `**${r.lost}**`],
    ['all received, s after the stream', (r) => n(r.drainSeconds, 1)],
    ...[0, 1].map((i): [string, (r: ModeResult) => string] => [
      `restart ${i + 1}: what, down s, all back s after restart (after kill); pushes accepted in the 1 s before the kill`,
      (r) => {
        const x = r.restarts[i];
        return x ? `${x.what}: ${x.downSeconds.toFixed(1)}, ${n(x.backSeconds, 1)} (${n(x.backFromKillSeconds, 1)}); ${x.acceptedLastSecond}` : '–';
      },
    ]),
    ['logins ok / refused', (r) => `${r.logins} / ${r.loginFailures}`],
    ['peak RSS (MiB)', (r) => Object.entries(r.peakRssMiB).map(([k, v]) => `${k} ${v}`).join(', ')],
  ];
  const m = describeMachine();
  const lines = [
    '## push-server soak: kills and restarts with end-to-end accounting',
    '',
    `- date: ${date}; machine: ${m.cpus} CPUs, ${m.cpuModel}, ${m.memoryGiB} GiB, node ${m.node}`,
    `- ${options.clients} pages (the SDK on socket.io-client 4.x, websocket, reconnection on) in ${options.clientProcesses} processes; ` +
      `${options.rate} v1 pushes/s with ttl ${TTL_SECONDS} and an id, each to a random page, for at least ${options.seconds} s; ` +
      `kills at 1/3 and 2/3 of the stream, each down ${options.gapMs / 1000} s; ` +
      `meanwhile about ${options.offlinePercent} % of the pages are offline at any moment, ${options.offlineMs / 1000} s at a time, so the store holds undelivered messages at each kill`,
    '',
    `| figure | ${results.map((r) => r.mode).join(' | ')} |`,
    `| --- | ${results.map(() => '---').join(' | ')} |`,
    ...rows.map(([label, f]) => `| ${label} | ${results.map(f).join(' | ')} |`),
  ];
  const notes = results.flatMap((r) => r.notes.map((note) => `- ${r.mode}: ${note.replace(/\s*\n\s*/g, ' / ')}`));
  if (notes.length > 0) lines.push('', 'Notes:', '', ...notes);
  return lines.join('\n') + '\n';
}

function save(results: ModeResult[], options: Options, date: string, text: string): string[] {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const files: [string, string][] = [
    ['soak-latest.md', text],
    ['soak-latest.json', JSON.stringify({ date, machine: describeMachine(), options, results }, null, 2) + '\n'],
  ];
  return files.map(([name, content]) => {
    const path = RESULTS_DIR + name;
    writeFileSync(`${path}.tmp`, content);
    renameSync(`${path}.tmp`, path);
    return path;
  });
}

async function main(): Promise<boolean> {
  const options = loadOptions(process.env);
  const files = openFilesLimit('self');
  if (files.hard < options.clients + 1000) {
    throw new Error(`open files hard limit is ${files.hard}, ${options.clients + 1000} needed: raise it or lower SOAK_CLIENTS`);
  }
  await buildServer(join(PROJECT_ROOT, 'start.ts'), SERVER_SCRIPT);
  const date = new Date().toISOString();
  const results: ModeResult[] = [];
  for (const mode of options.modes) results.push(await runMode(mode, options));
  const text = markdown(results, options, date);
  const written = save(results, options, date, text);
  console.log(`\n${text}`);
  console.log(`written: ${written.map((p) => p.slice(PROJECT_ROOT.length)).join(', ')}`);
  return results.every((r) => r.lost === 0 && !r.notes.some((note) => note.startsWith('run failed')));
}

// Every process the soak started dies with it: servers and pages (children), and Redis.
stopChildrenOnExit('soak', () => {
  for (const proc of redisProcesses) proc.kill('SIGKILL');
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

try {
  const clean = await main();
  if (!clean) console.error('soak: FAILED: accepted pushes were lost or a mode did not run (see the notes)');
  process.exitCode = clean ? 0 : 1;
} catch (err) {
  console.error(`soak: ${describe(err)}`);
  process.exitCode = 1;
}
// Workers and keep-alive sockets could hold the loop open after a failure: end here.
process.exit();
