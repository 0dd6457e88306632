// The measured phases of one run against one server: connect + login, targeted pushes,
// broadcasts, v1 batches. Each is bounded in time, returns its figures, and writes what
// went wrong (timeouts, losses, errors) into the run's notes instead of throwing.
import type { Fleet } from './fleet.ts';
import { messageContent, type WorkerReply } from './ipc.ts';
import type { Figures } from './metrics.ts';
import { BATCH_SIZE, type Options } from './options.ts';
import { cpuMs, rssKb } from './proc.ts';
import { RequestTimeout, runLanes, type Pusher } from './pusher.ts';
import { max, percentile, seededRandom } from './stats.ts';

/** Same seed for every server: each gets the same sequence of target uids. */
const SEED = 0x5eed;
/** After the last push is answered, how long its messages may take to arrive. */
const DRAIN_MS = 10_000;
/** How long one broadcast may take to reach every client. */
const BROADCAST_MS = 10_000;
/** The broadcast phase starts no new broadcast after this. */
const BROADCAST_PHASE_MS = 60_000;

export interface RunContext {
  serverPid: number;
  /** The server's LOGIN_SECRET, when it has one: pages log in with tokens. */
  loginSecret?: string;
  ioUrl: string;
  pusher: Pusher;
  fleet: Fleet;
  uids: number[];
  options: Options;
  notes: string[];
  /** Clients that lost their connection after logging in, as last reported by the workers. */
  dropped: number;
}

type Collected = Extract<WorkerReply, { type: 'collected' }>;

/** What arrived of a set of expected ids, over every worker's receipts. */
function tally(ctx: RunContext, replies: Collected[], expected: ReadonlySet<number>) {
  ctx.dropped = replies.reduce((sum, r) => sum + r.dropped, 0);
  const seen = new Set<number>();
  let receipts = 0;
  let unexpected = 0;
  const latencies: number[] = [];
  for (const reply of replies) {
    receipts += reply.ids.length;
    for (const id of reply.ids) {
      if (expected.has(id)) seen.add(id);
      else unexpected += 1;
    }
    latencies.push(...reply.latencies);
  }
  return {
    delivered: seen.size,
    lost: expected.size - seen.size,
    duplicates: receipts - seen.size - unexpected,
    unexpected,
    latencies,
    lastAt: max(replies.map((r) => r.lastAt)) ?? 0,
    timedOut: replies.some((r) => r.timedOut),
  };
}

function rate(count: number, ms: number): number {
  return ms > 0 ? (count * 1000) / ms : 0;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Phase 1. Resolves the logged-in clients per worker, or null when not all N made it. */
export async function connectPhase(ctx: RunContext, figures: Figures): Promise<number[] | null> {
  const { fleet, uids, options, serverPid } = ctx;
  // Generous for a loaded 2-core machine, yet bounded: 30 s plus 10 ms per client.
  const timeoutMs = 30_000 + uids.length * 10;
  const cpuBefore = cpuMs(serverPid);
  const rssBefore = rssKb(serverPid);
  const startedAt = performance.now();
  const replies = await fleet.connect(ctx.ioUrl, uids, options.connectWindow, options.transports, timeoutMs, ctx.loginSecret);
  const elapsedMs = performance.now() - startedAt;
  const loggedIn = replies.reduce((sum, r) => sum + r.loggedIn, 0);
  const failed = replies.reduce((sum, r) => sum + r.failed, 0);
  const firstError = replies.find((r) => r.firstError !== null)?.firstError;
  if (failed > 0) ctx.notes.push(`connect: ${failed} clients failed, first: ${firstError}`);
  if (loggedIn < uids.length) {
    const why = replies.some((r) => r.timedOut) ? `timeout after ${timeoutMs / 1000} s` : 'failed';
    ctx.notes.push(`connect: ${why}, ${loggedIn}/${uids.length} logged in; later phases skipped`);
    figures.connect_s = why;
    return null;
  }
  figures.connect_s = elapsedMs / 1000;
  figures.connect_rate = rate(loggedIn, elapsedMs);
  figures.cpu_per_conn_ms = (cpuMs(serverPid) - cpuBefore) / loggedIn;
  figures.mem_per_conn_kb = (rssKb(serverPid) - rssBefore) / loggedIn;
  return replies.map((r) => r.loggedIn);
}

/** Legacy pushes under `key`, each to a random uid, on every connection at once, then drained. */
async function burst(ctx: RunContext, key: string, count: number, random: () => number) {
  const { fleet, uids, options, pusher } = ctx;
  const expected = new Set<number>();
  const expectedPerWorker = new Array<number>(fleet.size).fill(0);
  let offline = 0;
  let errors = 0;
  let timeouts = 0;
  let firstError = '';
  const startedAt = Date.now();
  const sent = await runLanes(pusher.connections, count, startedAt + options.pushSeconds * 1000, async (seq) => {
    const uid = uids[Math.floor(random() * uids.length)]!;
    try {
      const answer = await pusher.legacy(String(uid), messageContent(key, seq, Date.now()));
      if (answer === 'ok') {
        expected.add(seq);
        expectedPerWorker[fleet.workerOf(uid)]! += 1;
      } else if (answer === 'offline') offline += 1;
      else throw new Error(`answered "${answer.slice(0, 100)}"`);
    } catch (err) {
      errors += 1;
      if (err instanceof RequestTimeout) timeouts += 1;
      firstError ||= describe(err);
    }
  });
  const answeredAt = Date.now();
  const result = tally(ctx, await fleet.collect(key, expectedPerWorker, DRAIN_MS), expected);
  const what = key === 'w' ? 'warm-up' : 'targeted';
  if (sent < count) ctx.notes.push(`${what}: stopped at ${options.pushSeconds} s after ${sent} pushes`);
  if (offline > 0) ctx.notes.push(`${what}: ${offline} pushes answered offline`);
  if (errors > 0) ctx.notes.push(`${what}: ${errors} push errors, first: ${firstError}`);
  if (result.lost > 0) {
    ctx.notes.push(`${what}: ${result.lost} of ${expected.size} messages lost${result.timedOut ? ` (not arrived ${DRAIN_MS / 1000} s after the last push)` : ''}`);
  }
  if (result.duplicates + result.unexpected > 0) {
    ctx.notes.push(`${what}: ${result.duplicates} duplicates, ${result.unexpected} unexpected messages`);
  }
  return { ...result, timedOut: result.timedOut || timeouts > 0, pushed: expected.size, startedAt, answeredAt };
}

/** CPU ms of the load generator so far: this runner and the client workers. */
function loadCpuMs(fleet: Fleet): number {
  const own = process.cpuUsage();
  return (own.user + own.system) / 1000 + fleet.workers.reduce((sum, w) => sum + cpuMs(w.pid), 0);
}

/**
 * Phase 2: targeted legacy pushes at the highest rate the connections allow. An unmeasured
 * warm-up burst comes first: without it a run measures V8 compiling the push path, which
 * at N=1000 (a short connect phase) made runs differ by a third.
 */
export async function targetedPhase(ctx: RunContext, figures: Figures): Promise<void> {
  const { fleet, options, serverPid } = ctx;
  const random = seededRandom(SEED);
  if (options.warmup > 0) await burst(ctx, 'w', options.warmup, random);

  const serverBefore = cpuMs(serverPid);
  const loadBefore = loadCpuMs(fleet);
  const result = await burst(ctx, 't', options.pushes, random);
  const serverCpu = cpuMs(serverPid) - serverBefore;
  const loadCpu = loadCpuMs(fleet) - loadBefore;
  const busyMs = Math.max(result.answeredAt, result.lastAt) - result.startedAt;

  // Rates over a phase in which the server stopped answering would be no figure of it.
  figures.push_rate = result.timedOut ? 'timeout' : rate(result.pushed, result.answeredAt - result.startedAt);
  figures.delivery_rate = result.timedOut ? 'timeout' : rate(result.delivered, result.lastAt - result.startedAt);
  figures.push_lost = result.lost;
  figures.push_p50_ms = percentile(result.latencies, 50) ?? 'none arrived';
  figures.push_p99_ms = percentile(result.latencies, 99) ?? 'none arrived';
  figures.cpu_per_push_ms = result.pushed > 0 ? serverCpu / result.pushed : 'no pushes';
  figures.push_cpu_pct = busyMs > 0 ? (serverCpu / busyMs) * 100 : 'n/a';
  figures.load_cpu_pct = busyMs > 0 ? (loadCpu / busyMs) * 100 : 'n/a';
}

/** Phase 3: broadcasts (`to=` empty) one at a time, each awaited until every client has it. */
export async function broadcastPhase(ctx: RunContext, figures: Figures, loggedInPerWorker: number[]): Promise<void> {
  const { fleet, uids, options, pusher } = ctx;
  const everyone = new Set(uids);
  const untilAll: number[] = [];
  let lost = 0;
  let incomplete = 0;
  const phaseEnd = Date.now() + BROADCAST_PHASE_MS;
  let k = 0;
  for (; k < options.broadcasts && Date.now() < phaseEnd; k++) {
    const key = `b${k}`;
    // Asked first: receipts that come before the worker reads this are kept, not missed.
    const collecting = fleet.collect(key, loggedInPerWorker, BROADCAST_MS);
    const sentAt = Date.now();
    try {
      const answer = await pusher.legacy('', messageContent(key, 0, sentAt));
      if (answer !== 'ok') ctx.notes.push(`broadcast ${k}: answered "${answer.slice(0, 100)}"`);
    } catch (err) {
      ctx.notes.push(`broadcast ${k}: ${describe(err)}`);
    }
    const result = tally(ctx, await collecting, everyone);
    lost += result.lost;
    if (result.lost === 0) untilAll.push(result.lastAt - sentAt);
    else incomplete += 1;
  }
  if (k < options.broadcasts) ctx.notes.push(`broadcast: phase time up after ${k} broadcasts`);
  if (incomplete > 0) ctx.notes.push(`broadcast: ${incomplete} of ${k} broadcasts did not reach everyone within ${BROADCAST_MS / 1000} s (${lost} deliveries lost)`);
  // Percentiles over only the broadcasts that made it would flatter a server that lost some.
  const timedOut = incomplete > 0 ? `timeout (${incomplete} of ${k})` : null;
  figures.fanout_p50_ms = timedOut ?? percentile(untilAll, 50) ?? 'none sent';
  figures.fanout_p99_ms = timedOut ?? percentile(untilAll, 99) ?? 'none sent';
  figures.broadcast_lost = lost;
}

/**
 * The per-message status of a batch answer `{results: [{status}, ...]}`, in message order;
 * undefined when the answer has no such list (then every message counts as accepted).
 */
function itemStatuses(body: string): (number | undefined)[] | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return undefined;
  }
  const results = typeof parsed === 'object' && parsed !== null ? (parsed as { results?: unknown }).results : undefined;
  if (!Array.isArray(results)) return undefined;
  return results.map((r: unknown) => {
    const status = typeof r === 'object' && r !== null ? (r as { status?: unknown }).status : undefined;
    return typeof status === 'number' ? status : undefined;
  });
}

/**
 * Phase 4: POST /api/v1/push/batch, 100 messages a request. A server without that route
 * answers 404, or (having a catch-all legacy endpoint, as ours and the original do) one
 * legacy word: then the phase is n/a.
 */
export async function batchPhase(ctx: RunContext, figures: Figures): Promise<void> {
  const { fleet, uids, options, pusher } = ctx;
  const random = seededRandom(SEED + 1);
  const expected = new Set<number>();
  const expectedPerWorker = new Array<number>(fleet.size).fill(0);
  let errors = 0;
  let timeouts = 0;
  let refused = 0;
  let firstError = '';
  let unsupported: string | null = null;

  // The pages are legacy ones: a v1 push reaches their new_msg listener only by naming it
  // (the v1 default event is `message`), with a string, escaped as the legacy API does.
  const sendBatch = async (batch: number) => {
    const sentAt = Date.now();
    const items = Array.from({ length: BATCH_SIZE }, (_, j) => {
      const uid = uids[Math.floor(random() * uids.length)]!;
      return { seq: batch * BATCH_SIZE + j, uid, message: { to: String(uid), event: 'new_msg', data: messageContent('v', batch * BATCH_SIZE + j, sentAt) } };
    });
    try {
      const answer = await pusher.postJson('/api/v1/push/batch', { messages: items.map((i) => i.message) });
      if (answer.status === 404 || /^(ok|offline|fail)$/.test(answer.body.trim())) {
        unsupported = 'n/a (no v1 API)';
      } else if (answer.status < 200 || answer.status > 299) {
        throw new Error(`answered ${answer.status}: ${answer.body.slice(0, 200)}`);
      } else {
        const statuses = itemStatuses(answer.body);
        items.forEach((item, i) => {
          const status = statuses?.[i];
          if (status !== undefined && (status < 200 || status > 299)) {
            refused += 1;
            return;
          }
          expected.add(item.seq);
          expectedPerWorker[fleet.workerOf(item.uid)]! += 1;
        });
      }
    } catch (err) {
      errors += 1;
      if (err instanceof RequestTimeout) timeouts += 1;
      firstError ||= describe(err);
    }
  };

  // One probe first: a server without the API is not sent 20000 more messages.
  await sendBatch(0);
  if (unsupported !== null || errors > 0) {
    figures.batch_rate = unsupported ?? 'n/a (probe failed)';
    if (errors > 0) ctx.notes.push(`v1 batch: probe failed: ${firstError}`);
    return;
  }
  const probeAccepted = expected.size;
  const serverBefore = cpuMs(ctx.serverPid);
  const loadBefore = loadCpuMs(fleet);
  const startedAt = Date.now();
  const sent = await runLanes(pusher.connections, options.batches - 1, startedAt + options.pushSeconds * 1000, (i) => sendBatch(i + 1));
  const answeredAt = Date.now();
  const result = tally(ctx, await fleet.collect('v', expectedPerWorker, DRAIN_MS), expected);
  const serverCpu = cpuMs(ctx.serverPid) - serverBefore;
  const loadCpu = loadCpuMs(fleet) - loadBefore;
  const busyMs = Math.max(answeredAt, result.lastAt) - startedAt;

  if (sent < options.batches - 1) ctx.notes.push(`v1 batch: stopped at ${options.pushSeconds} s after ${sent + 1} batches`);
  if (errors > 0) ctx.notes.push(`v1 batch: ${errors} failed requests, first: ${firstError}`);
  if (refused > 0) ctx.notes.push(`v1 batch: ${refused} messages refused in their batch's results`);
  if (result.delivered === 0) ctx.notes.push('v1 batch: no message arrived as a new_msg string or {data} object');
  else if (result.lost > 0) ctx.notes.push(`v1 batch: ${result.lost} of ${expected.size} messages lost`);
  // The probe batch is left out of the rate: it ran alone, before the lanes started.
  figures.batch_rate = result.timedOut || timeouts > 0 ? 'timeout' : rate(expected.size - probeAccepted, answeredAt - startedAt);
  figures.batch_lost = result.lost;
  const messages = expected.size - probeAccepted;
  figures.batch_cpu_per_msg_ms = messages > 0 ? serverCpu / messages : 'no messages';
  figures.batch_load_cpu_pct = busyMs > 0 ? (loadCpu / busyMs) * 100 : 'n/a';
}
