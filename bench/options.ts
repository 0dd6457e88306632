// The benchmark's settings, all from BENCH_* environment variables, checked once: a bad
// value stops the run with one line naming every problem.

import { startNodeFlags } from '../scripts/start-flags.ts';

export interface Options {
  /** BENCH_CLIENTS: the client counts N, one table each. @default 1000,5000 (quick: 200) */
  clients: number[];
  /** BENCH_REPS: runs per server and N, interleaved (ours, ref, ours, ref, ...). @default 3 */
  reps: number;
  /** BENCH_QUICK=1: a smoke run with small defaults. */
  quick: boolean;
  /** BENCH_PUSHES: targeted pushes per run, at most. @default 20000 (quick: 2000) */
  pushes: number;
  /** BENCH_WARMUP: unmeasured targeted pushes before the measured ones (0 = none). @default 2000 (quick: 200) */
  warmup: number;
  /** BENCH_PUSH_SECONDS: the targeted and batch phases stop sending after this. @default 10 (quick: 5) */
  pushSeconds: number;
  /** BENCH_BROADCASTS: broadcasts per run. @default 10 (quick: 3) */
  broadcasts: number;
  /** BENCH_BATCHES: v1 batch requests per run, 100 messages each. @default 200 (quick: 20) */
  batches: number;
  /** BENCH_CONNECTIONS: keep-alive HTTP connections to the push API. @default 64 */
  connections: number;
  /** BENCH_CLIENT_PROCS: client worker processes sharing the N clients. @default 2 */
  clientProcesses: number;
  /** BENCH_CONNECT_WINDOW: connection attempts in flight at once, over all workers. @default 200 */
  connectWindow: number;
  /** BENCH_TRANSPORTS: the clients' Engine.IO transports. @default websocket */
  transports: string[];
  /** BENCH_SERVER_ENV ('K=V K2=V2') and BENCH_WORKERS (as WORKERS): extra env for our server only. */
  serverEnv: Record<string, string>;
  /** BENCH_NODE_FLAGS ('--a --b=1'): node flags for our server. @default those of `npm start` (package.json) */
  nodeFlags: string[];
  /**
   * BENCH_TARGETS: which servers to run: `ours` (defaults), `full` (ours with every feature on:
   * PUSH_SECRET, LOGIN_SECRET, webhooks to a local receiver, metrics scraped; see run.ts),
   * `ref` (bare Socket.IO). @default ours,full,ref
   */
  targets: Target[];
}

export const BATCH_SIZE = 100;

export type Target = 'ours' | 'full' | 'ref';
const TARGETS: readonly string[] = ['ours', 'full', 'ref'] satisfies Target[];

export class OptionsError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('; '));
  }
}

export function loadOptions(env: NodeJS.ProcessEnv): Options {
  const problems: string[] = [];
  const quick = env.BENCH_QUICK === '1';

  const integer = (name: string, fallback: number, min = 1): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min) {
      problems.push(`${name} must be an integer >= ${min}, got "${raw}"`);
      return fallback;
    }
    return value;
  };
  const list = (name: string, fallback: string): string[] =>
    (env[name] || fallback)
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');

  const clients = list('BENCH_CLIENTS', quick ? '200' : '1000,5000').map(Number);
  if (clients.length === 0 || clients.some((n) => !Number.isInteger(n) || n < 1)) {
    problems.push(`BENCH_CLIENTS must be a comma-separated list of integers >= 1, got "${env.BENCH_CLIENTS}"`);
  }

  const transports = list('BENCH_TRANSPORTS', 'websocket');
  if (transports.some((t) => t !== 'websocket' && t !== 'polling')) {
    problems.push(`BENCH_TRANSPORTS must list websocket and/or polling, got "${env.BENCH_TRANSPORTS}"`);
  }

  const targets = list('BENCH_TARGETS', 'ours,full,ref');
  const knownTargets = targets.filter((t): t is Target => TARGETS.includes(t));
  if (knownTargets.length === 0 || knownTargets.length !== targets.length) {
    problems.push(`BENCH_TARGETS must list some of ours, full, ref, got "${env.BENCH_TARGETS}"`);
  }

  const serverEnv: Record<string, string> = {};
  for (const pair of (env.BENCH_SERVER_ENV ?? '').split(/\s+/).filter((s) => s !== '')) {
    const eq = pair.indexOf('=');
    if (eq < 1) problems.push(`BENCH_SERVER_ENV must be space-separated NAME=VALUE pairs, got "${pair}"`);
    else serverEnv[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const nodeFlags = env.BENCH_NODE_FLAGS === undefined ? startNodeFlags() : env.BENCH_NODE_FLAGS.split(/\s+/).filter((s) => s !== '');
  if (nodeFlags.some((f) => !f.startsWith('--'))) problems.push(`BENCH_NODE_FLAGS must be space-separated --flags, got "${env.BENCH_NODE_FLAGS}"`);
  if (env.BENCH_WORKERS) serverEnv.WORKERS = String(integer('BENCH_WORKERS', 1));

  const options: Options = {
    clients,
    reps: integer('BENCH_REPS', 3),
    quick,
    pushes: integer('BENCH_PUSHES', quick ? 2000 : 20_000),
    warmup: integer('BENCH_WARMUP', quick ? 200 : 2000, 0),
    pushSeconds: integer('BENCH_PUSH_SECONDS', quick ? 5 : 10),
    broadcasts: integer('BENCH_BROADCASTS', quick ? 3 : 10),
    batches: integer('BENCH_BATCHES', quick ? 20 : 200),
    connections: integer('BENCH_CONNECTIONS', 64),
    clientProcesses: integer('BENCH_CLIENT_PROCS', 2),
    connectWindow: integer('BENCH_CONNECT_WINDOW', 200),
    transports,
    serverEnv,
    nodeFlags,
    targets: knownTargets,
  };
  if (problems.length > 0) throw new OptionsError(problems);
  return options;
}
