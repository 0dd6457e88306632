// The real start.ts as a child process: for startup errors, signals and cluster nodes. Only
// the settings a test gives reach it (no setting leaks in from the environment running the
// tests). Each process is killed in cleanup (SIGKILL when it still runs), so a failing
// assertion never leaks one; its stdout and stderr are kept for assertions on what it logged.
// Each runs the default engine (embedded) in a DATA_DIR of its own, never the project's ./data.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onCleanup } from './cleanup.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const START_TS = join(ROOT, 'start.ts');
/** tsx as a file URL: a process started in another directory cannot resolve `tsx` by name. */
const TSX = import.meta.resolve('tsx');

/** The start line's URLs (HOST=127.0.0.1 prints the address itself, not localhost). */
const START_LINE = /socket\.io http:\/\/127\.0\.0\.1:(\d+) \| push API http:\/\/127\.0\.0\.1:(\d+) \| demo (?:off|http:\/\/127\.0\.0\.1:(\d+))/;

/**
 * How long a process may take to print its start line. tsx compiles start.ts and src/ on each
 * start, and several processes may start at once, so this is generous.
 */
const START_MS = 20_000;

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface StartProcess {
  readonly name: string;
  readonly pid: number;
  /** stdout and stderr so far, interleaved in the order they arrived. */
  output(): string;
  stdout(): string;
  stderr(): string;
  /** True until the process has exited. */
  running(): boolean;
  /** Resolves when the process has exited. */
  readonly exited: Promise<Exit>;
  /** Sends `signal` unless it has exited; resolves once it has. */
  signal(signal: NodeJS.Signals): Promise<Exit>;
  /** SIGKILL, as a crash or a pulled plug; resolves once it has exited. */
  kill(): Promise<Exit>;
  /** SIGTERM, the graceful stop; resolves once it has exited. */
  stop(): Promise<Exit>;
  /**
   * Resolves with the match once `pattern` occurs `times` times in the output; rejects after
   * `timeoutMs`, or when the process exits first, showing the output.
   */
  waitForOutput(pattern: RegExp, timeoutMs?: number, times?: number): Promise<RegExpMatchArray>;
  /** Waits for the start line and resolves its URLs; rejects, with the output, if it exits first. */
  started(): Promise<{ ioUrl: string; apiUrl: string; webUrl: string | null }>;
}

/** How often `pattern` occurs in `text` (a global copy, so the caller's flags do not matter). */
export function occurrences(text: string, pattern: RegExp): number {
  const global = new RegExp(pattern.source, pattern.flags.includes('g') ? pattern.flags : `${pattern.flags}g`);
  return [...text.matchAll(global)].length;
}

export interface SpawnOptions {
  /**
   * The working directory, for a test of what a relative DATA_DIR means. The test owns it: no
   * DATA_DIR is added, so the default ./data is created in it. @default the project folder
   */
  cwd?: string;
  /**
   * The program to run instead of start.ts through tsx, such as an installed package's bin;
   * `args` follow it. @default [node, --import, tsx, start.ts]
   */
  command?: readonly string[];
}

/** Whether `env` or `args` choose the store or its directory themselves. */
function choosesStorage(args: readonly string[], env: Record<string, string>): boolean {
  return 'STORE' in env || 'DATA_DIR' in env || args.some((a) => /^--(store|data-dir)(=|$)/.test(a));
}

/**
 * Runs `start.ts args` with HOST=127.0.0.1 and `env` as its only settings; `name` labels its
 * errors. Unless the test chooses STORE or DATA_DIR (or a cwd), it gets a temporary DATA_DIR,
 * removed once the process has exited.
 */
export function spawnStart(args: string[] = [], env: Record<string, string> = {}, name = '', options: SpawnOptions = {}): StartProcess {
  const program = options.command ?? [process.execPath, '--import', TSX, START_TS];
  const label = `${options.command === undefined ? 'start.ts' : program.join(' ')}${name === '' ? '' : ` (node ${name})`}`;
  const storage: Record<string, string> = {};
  if (options.cwd === undefined && !choosesStorage(args, env)) {
    storage.DATA_DIR = mkdtempSync(join(tmpdir(), 'push-start-data-'));
    // registered before the kill below, so it runs after the process has exited
    onCleanup(() => rmSync(storage.DATA_DIR!, { recursive: true, force: true }));
  }
  const child = spawn(program[0]!, [...program.slice(1), ...args], {
    cwd: options.cwd ?? ROOT,
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', ...storage, ...env },
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
  // a program that cannot be run (a missing bin) shows as output, and 'close' still follows
  child.on('error', (e) => {
    err += `${e.message}\n`;
    all += `${e.message}\n`;
    wake();
  });
  let done = false;
  // 'close', not 'exit': the output is complete by then (a pipe can still hold data at 'exit').
  // Not events.once: it rejects on 'error', and a program that could not run has still ended.
  const exited = new Promise<Exit>((resolve) => {
    child.on('close', (code, signal) => {
      done = true;
      wake();
      resolve({ code, signal });
    });
  });
  const signal = (sig: NodeJS.Signals): Promise<Exit> => {
    if (!done && child.exitCode === null && child.signalCode === null) child.kill(sig);
    return exited;
  };
  // registered before anything can fail, so even a process that never came up is reaped
  onCleanup(() => signal('SIGKILL'));

  const waitForOutput = (pattern: RegExp, timeoutMs = 10_000, times = 1): Promise<RegExpMatchArray> =>
    new Promise((resolve, reject) => {
      const finish = () => {
        clearTimeout(timer);
        wakers.delete(check);
      };
      const check = () => {
        if (occurrences(all, pattern) >= times) {
          finish();
          resolve(pattern.exec(all)!);
        } else if (done) {
          finish();
          reject(new Error(`${label} exited (code ${child.exitCode}, signal ${child.signalCode}) before ${times}x ${pattern}; output:\n${all}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`${label}: no ${times}x ${pattern} within ${timeoutMs} ms; output:\n${all}`));
      }, timeoutMs);
      wakers.add(check);
      check();
    });

  const started = async () => {
    const [, io, api, web] = await waitForOutput(START_LINE, START_MS);
    return {
      ioUrl: `http://127.0.0.1:${io}`,
      apiUrl: `http://127.0.0.1:${api}`,
      webUrl: web === undefined ? null : `http://127.0.0.1:${web}`,
    };
  };

  return {
    name,
    pid: child.pid ?? -1,
    output: () => all,
    stdout: () => out,
    stderr: () => err,
    running: () => !done,
    exited,
    signal,
    kill: () => signal('SIGKILL'),
    stop: () => signal('SIGTERM'),
    waitForOutput,
    started,
  };
}

export interface NodeProcess extends StartProcess {
  readonly ioUrl: string;
  readonly apiUrl: string;
}

/**
 * Starts start.ts as one node of the cluster on `redisUrl`, with ephemeral ports and no demo
 * page, and resolves once it has printed its start line. `env` adds or overrides settings.
 */
export async function startNodeProcess(name: string, redisUrl: string, env: Record<string, string> = {}): Promise<NodeProcess> {
  const node = spawnStart(
    [],
    { IO_PORT: '0', API_PORT: '0', WEB_PORT: 'off', REDIS_URL: redisUrl, ONLINE_COUNT_INTERVAL_MS: '100', ...env },
    name,
  );
  const { ioUrl, apiUrl } = await node.started();
  return { ...node, ioUrl, apiUrl };
}

/** Starts `names.length` node processes at once (their startups overlap), named as given. */
export function startNodeProcesses(names: readonly string[], redisUrl: string, env: Record<string, string> = {}): Promise<NodeProcess[]> {
  return Promise.all(names.map((name) => startNodeProcess(name, redisUrl, env)));
}
