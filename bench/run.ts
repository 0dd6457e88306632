// `npm run bench`: our server against the bare Socket.IO reference, same load, fresh
// processes for every run, runs interleaved (ours, ref, ours, ref) so a machine that drifts
// affects both alike. Settings: BENCH_* env vars (bench/options.ts, bench/README.md).
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildServer } from '../scripts/build.ts';
import { Child, PROJECT_ROOT, stopChildrenOnExit } from './children.ts';
import { curveSvg } from './curve.ts';
import { Fleet } from './fleet.ts';
import type { Figures } from './metrics.ts';
import { loadOptions, OptionsError, type Options, type Target } from './options.ts';
import { batchPhase, broadcastPhase, connectPhase, targetedPhase, type RunContext } from './phases.ts';
import { describeMachine, openFilesLimit, peakRssKb } from './proc.ts';
import { Pusher } from './pusher.ts';
import { markdown, publicOptions, save, type BenchReport, type RunResult } from './report.ts';

const HOST = '127.0.0.1'; // loopback only: the benchmark never listens on or reaches other hosts
const START_TIMEOUT_MS = 20_000;
/** Our server lets connections finish for SHUTDOWN_TIMEOUT_MS (5 s by default) on SIGTERM. */
const SHUTDOWN_GRACE_MS = 7000;
/** Both servers print `socket.io http://HOST:PORT | push API http://HOST:PORT`. */
const PORTS_LINE = /socket\.io http:\/\/[^\s|]*:(\d+) \| push API http:\/\/[^\s|]*:(\d+)/;

/**
 * Both servers run as plain JS built by scripts/build.ts, as production runs: a TypeScript
 * loader would add the same overhead to both and hide part of the difference.
 */
const SCRIPTS: Record<Target, string> = {
  ours: join(PROJECT_ROOT, 'dist', 'start.js'),
  full: join(PROJECT_ROOT, 'dist', 'start.js'),
  ref: join(PROJECT_ROOT, 'bench', '.build', 'reference-server.js'),
};

/**
 * `full`: our server with every feature on. The secrets are the bench's own (never a real
 * deployment's); the pushes carry PUSH_SECRET, the pages log in with LOGIN_SECRET's tokens,
 * every user.online / user.offline goes to the runner's webhook receiver, signed, and
 * /metrics is scraped every METRICS_SCRAPE_MS. The store is the default (embedded) in both.
 */
const FULL_SECRETS = { PUSH_SECRET: 'bench-push-secret', LOGIN_SECRET: 'bench-login-secret', WEBHOOK_SECRET: 'bench-webhook-secret' };
/** Prometheus scrapes every 15 s by default; 2 s makes sure each run of a few seconds has some. */
const METRICS_SCRAPE_MS = 2000;

/** The receiver of the `full` server's webhooks: answers 204 to each, and counts them. */
class WebhookReceiver {
  received = 0;
  private readonly server: Server = createServer((req, res) => {
    req.resume();
    req.once('end', () => {
      this.received++;
      res.writeHead(204).end();
    });
  });

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, HOST, resolve));
    const address = this.server.address();
    if (address === null || typeof address === 'string') throw new Error('webhook receiver has no port');
    return `http://${HOST}:${address.port}/hooks`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** GETs /metrics every METRICS_SCRAPE_MS until stopped, as Prometheus would; counts failures. */
function scrapeMetrics(apiPort: number): { stop(): { scrapes: number; failures: number } } {
  let scrapes = 0;
  let failures = 0;
  const timer = setInterval(() => {
    const req = request({ host: HOST, port: apiPort, path: '/metrics' }, (res) => {
      res.resume();
      if (res.statusCode === 200) scrapes++;
      else failures++;
    });
    req.once('error', () => failures++);
    req.end();
  }, METRICS_SCRAPE_MS);
  return {
    stop: () => {
      clearInterval(timer);
      return { scrapes, failures };
    },
  };
}

let webhooks: WebhookReceiver | undefined;
let webhookUrl = '';

async function buildServers(): Promise<void> {
  await buildServer(join(PROJECT_ROOT, 'start.ts'), SCRIPTS.ours);
  await buildServer(fileURLToPath(new URL('./reference-server.ts', import.meta.url)), SCRIPTS.ref);
}

/** Our server's data dirs: one per run, removed after it, and on Ctrl-C. */
const dataDirs = new Set<string>();

function removeDataDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  dataDirs.delete(dir);
}

function serverEnv(target: Target, options: Options, dataDir: string): NodeJS.ProcessEnv {
  // Loopback and ephemeral ports are set last, so BENCH_SERVER_ENV cannot move them.
  const listen = { HOST, IO_PORT: '0', API_PORT: '0', WEB_PORT: 'off' };
  // every simulated page comes from 127.0.0.1: the per-address connection cap (a production
  // default of 1000) would refuse most of them, so the bench lifts it unless told otherwise;
  // the default engine (embedded) gets a fresh DATA_DIR each run, never the project's ./data
  // that an `npm start` may hold, and no messages left by an earlier run
  const bench = { MAX_CONNECTIONS_PER_IP: '0', DATA_DIR: dataDir };
  if (target === 'ref') return { ...process.env, ...listen };
  const full = target === 'full' ? { ...FULL_SECRETS, WEBHOOK_URL: webhookUrl } : {};
  return { ...process.env, ...bench, ...options.serverEnv, ...full, ...listen };
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function runOnce(target: Target, clients: number, rep: number, options: Options): Promise<RunResult> {
  const figures: Figures = {};
  const notes: string[] = [];
  const startedAt = performance.now();
  let server: Child | undefined;
  let fleet: Fleet | undefined;
  let pusher: Pusher | undefined;
  let scraper: ReturnType<typeof scrapeMetrics> | undefined;
  let started = false;
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-data-'));
  dataDirs.add(dataDir);
  try {
    // ours with the node flags of `npm start` (or BENCH_NODE_FLAGS); the reference with none
    const nodeFlags = target === 'ref' ? [] : options.nodeFlags;
    server = new Child(`${target} server`, SCRIPTS[target], serverEnv(target, options, dataDir), false, nodeFlags);
    const [, ioPort, apiPort] = await server.waitForLine(PORTS_LINE, START_TIMEOUT_MS);
    started = true;
    fleet = await Fleet.start(options.clientProcesses, START_TIMEOUT_MS);
    const env = serverEnv(target, options, dataDir);
    pusher = new Pusher(HOST, Number(apiPort), options.connections, target === 'ref' ? undefined : env.PUSH_SECRET);
    if (target === 'full') scraper = scrapeMetrics(Number(apiPort));
    const hooksBefore = webhooks?.received ?? 0;
    const ctx: RunContext = {
      serverPid: server.pid,
      loginSecret: target === 'ref' ? undefined : env.LOGIN_SECRET,
      ioUrl: `http://${HOST}:${ioPort}`,
      pusher,
      fleet,
      uids: Array.from({ length: clients }, (_, i) => i + 1),
      options,
      notes,
      dropped: 0,
    };
    const loggedInPerWorker = await connectPhase(ctx, figures);
    if (loggedInPerWorker) {
      await targetedPhase(ctx, figures);
      await broadcastPhase(ctx, figures, loggedInPerWorker);
      await batchPhase(ctx, figures);
      if (typeof figures.batch_rate === 'number' && typeof figures.push_rate === 'number') {
        figures.batch_vs_legacy = figures.batch_rate / figures.push_rate;
      }
      if (typeof figures.batch_cpu_per_msg_ms === 'number' && typeof figures.cpu_per_push_ms === 'number' && figures.batch_cpu_per_msg_ms > 0) {
        figures.batch_cpu_gain = figures.cpu_per_push_ms / figures.batch_cpu_per_msg_ms;
      }
    }
    figures.peak_rss_mb = peakRssKb(server.pid) / 1024;
    if (target === 'full') {
      const { scrapes, failures } = scraper!.stop();
      scraper = undefined;
      notes.push(`features on: ${(webhooks?.received ?? 0) - hooksBefore} webhooks received, /metrics scraped ${scrapes} times${failures > 0 ? `, ${failures} scrapes failed` : ''}`);
    }
    if (ctx.dropped > 0) notes.push(`${ctx.dropped} clients lost their connection after logging in`);
  } catch (err) {
    notes.push(`run failed: ${describe(err)}`);
  } finally {
    scraper?.stop();
    pusher?.close();
    await fleet?.stop();
    if (server?.running) {
      await server.stop('SIGTERM', SHUTDOWN_GRACE_MS);
      // A clean SIGTERM exit is part of the server's contract; say when it did not happen.
      if (server.exitStatus() !== 'code 0') notes.push(`server did not exit cleanly on SIGTERM (${server.exitStatus()})`);
    } else if (server && started) {
      notes.push(`server died during the run (${server.exitStatus()}): ${server.output().slice(-300)}`);
    }
    if (!server?.running) removeDataDir(dataDir); // one still running (a stop that hung) keeps it until exit
  }
  return { target, clients, rep, seconds: (performance.now() - startedAt) / 1000, figures, notes };
}

function progress(run: RunResult, reps: number): string {
  const f = run.figures;
  const num = (v: unknown, digits = 0) => (typeof v === 'number' ? v.toFixed(digits) : String(v ?? '–'));
  return (
    `N=${run.clients} run ${run.rep}/${reps} ${run.target.padEnd(4)}: connect ${num(f.connect_s, 2)} s, ` +
    `${num(f.push_rate)} pushes/s (lost ${num(f.push_lost)}, p50 ${num(f.push_p50_ms)} ms), ` +
    `fan-out p50 ${num(f.fanout_p50_ms)} ms, batch ${num(f.batch_rate)}, peak ${num(f.peak_rss_mb)} MiB ` +
    `[${run.seconds.toFixed(1)} s]${run.notes.length > 0 ? `\n    ${run.notes.join('\n    ')}` : ''}`
  );
}

async function main(): Promise<void> {
  const options = loadOptions(process.env);
  const files = openFilesLimit('self');
  // Children raise their soft limit up to the hard one; a server needs a descriptor per client.
  const needed = Math.max(...options.clients) + 1000;
  if (files.hard < needed) {
    throw new Error(`open files hard limit is ${files.hard}, ${needed} needed for ${Math.max(...options.clients)} clients: raise it (ulimit -Hn, as root) or lower BENCH_CLIENTS`);
  }
  await buildServers();
  if (options.targets.includes('full')) {
    webhooks = new WebhookReceiver();
    webhookUrl = await webhooks.start();
  }
  const began = performance.now();
  const date = new Date().toISOString();
  const runs: RunResult[] = [];
  for (const clients of options.clients) {
    for (let rep = 1; rep <= options.reps; rep++) {
      for (const target of options.targets) {
        const run = await runOnce(target, clients, rep, options);
        console.error(progress(run, options.reps));
        runs.push(run);
      }
    }
  }
  const report: BenchReport = {
    date,
    machine: { ...describeMachine(), openFiles: `soft ${Math.min(65536, files.hard)}, hard ${files.hard}` },
    options: publicOptions(options),
    totalSeconds: (performance.now() - began) / 1000,
    runs,
  };
  await webhooks?.close();
  const text = markdown(report);
  const written = save(report, text, curveSvg(report));
  console.log(`\n${text}`);
  console.log(`written: ${written.map((p) => p.slice(PROJECT_ROOT.length)).join(', ')}`);
}

stopChildrenOnExit('benchmark', () => {
  for (const dir of dataDirs) removeDataDir(dir);
});

try {
  await main();
} catch (err) {
  console.error(err instanceof OptionsError ? `bench: bad settings: ${err.message}` : `bench: ${describe(err)}`);
  process.exitCode = 1;
}
