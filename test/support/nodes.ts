// Cluster nodes for tests: the real start.ts as child processes joined through REDIS_URL.
// Each node is killed in cleanup (SIGKILL when it still runs), so a failing assertion never
// leaks a process; its stdout and stderr are kept for assertions on what it logged.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { onCleanup } from './cleanup.ts';

const ROOT = new URL('../..', import.meta.url).pathname;

/** The start line's URLs (HOST=127.0.0.1 prints the address itself, not localhost). */
const START_LINE = /socket\.io http:\/\/127\.0\.0\.1:(\d+) \| push API http:\/\/127\.0\.0\.1:(\d+)/;

/**
 * How long a node may take to print its start line. tsx compiles start.ts and src/ on each
 * start, and several nodes start at once, so this is generous.
 */
const START_MS = 20_000;

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ClusterNode {
  readonly name: string;
  readonly pid: number;
  readonly ioUrl: string;
  readonly apiUrl: string;
  /** stdout and stderr so far, interleaved in the order they arrived. */
  output(): string;
  stdout(): string;
  stderr(): string;
  /** True until the process has exited. */
  running(): boolean;
  /** Resolves when the process has exited. */
  readonly exited: Promise<Exit>;
  /** SIGKILL, as a crash or a pulled plug; resolves once it has exited. */
  kill(): Promise<Exit>;
  /** SIGTERM, the graceful stop; resolves once it has exited. */
  stop(): Promise<Exit>;
  /** Resolves once `pattern` occurs `times` times in the output; rejects after `timeoutMs` showing it. */
  waitForOutput(pattern: RegExp, timeoutMs?: number, times?: number): Promise<void>;
}

/** How often `pattern` occurs in `text` (a global copy, so the caller's flags do not matter). */
export function occurrences(text: string, pattern: RegExp): number {
  const global = new RegExp(pattern.source, pattern.flags.includes('g') ? pattern.flags : `${pattern.flags}g`);
  return [...text.matchAll(global)].length;
}

/**
 * Starts one node of the cluster on `redisUrl` with ephemeral ports and no demo page, and
 * resolves once it has printed its start line. `env` adds or overrides settings.
 */
export async function startNode(name: string, redisUrl: string, env: Record<string, string> = {}): Promise<ClusterNode> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'start.ts'], {
    cwd: ROOT,
    // only what the node needs: no setting leaks in from the environment running the tests
    env: {
      PATH: process.env.PATH ?? '',
      HOST: '127.0.0.1',
      IO_PORT: '0',
      API_PORT: '0',
      WEB_PORT: 'off',
      REDIS_URL: redisUrl,
      ONLINE_COUNT_INTERVAL_MS: '100',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let all = '';
  const wakers = new Set<() => void>();
  const wake = () => {
    for (const w of wakers) w();
  };
  child.stdout!.setEncoding('utf8').on('data', (c: string) => {
    out += c;
    all += c;
    wake();
  });
  child.stderr!.setEncoding('utf8').on('data', (c: string) => {
    err += c;
    all += c;
    wake();
  });
  let done = false;
  const exited: Promise<Exit> = once(child, 'exit').then(([code, signal]) => {
    done = true;
    wake();
    return { code: code as number | null, signal: signal as NodeJS.Signals | null };
  });
  const signal = (sig: NodeJS.Signals): Promise<Exit> => {
    if (!done && child.exitCode === null && child.signalCode === null) child.kill(sig);
    return exited;
  };
  // registered before anything can fail, so even a node that never came up is reaped
  onCleanup(() => signal('SIGKILL'));

  const waitForOutput = (pattern: RegExp, timeoutMs = 10_000, times = 1): Promise<void> =>
    new Promise((resolve, reject) => {
      const finish = () => {
        clearTimeout(timer);
        wakers.delete(check);
      };
      const check = () => {
        if (occurrences(all, pattern) >= times) {
          finish();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`node ${name}: no ${times}x ${pattern} within ${timeoutMs} ms; output:\n${all}`));
      }, timeoutMs);
      wakers.add(check);
      check();
    });

  // the start line, or the process ending first (a bad setting, Redis unreachable)
  const started = await Promise.race([
    waitForOutput(START_LINE, START_MS).then(() => true as const),
    exited.then((exit) => exit),
  ]);
  if (started !== true) {
    throw new Error(`node ${name} exited before it started (code ${started.code}, signal ${started.signal}):\n${all}`);
  }
  const [, io, api] = START_LINE.exec(out) ?? [];
  return {
    name,
    pid: child.pid ?? -1,
    ioUrl: `http://127.0.0.1:${io}`,
    apiUrl: `http://127.0.0.1:${api}`,
    output: () => all,
    stdout: () => out,
    stderr: () => err,
    running: () => !done,
    exited,
    kill: () => signal('SIGKILL'),
    stop: () => signal('SIGTERM'),
    waitForOutput,
  };
}

/** Starts `names.length` nodes at once (their startups overlap), named as given. */
export function startNodes(names: readonly string[], redisUrl: string, env: Record<string, string> = {}): Promise<ClusterNode[]> {
  return Promise.all(names.map((name) => startNode(name, redisUrl, env)));
}
