// Outside programs as child processes (the examples in php, python3, go and node): run one to
// its end, or start a long-running one (a webhook receiver) and wait for what it prints. Each
// runs in a process group of its own, killed whole in cleanup: `go run` starts the compiled
// program as a child of its own, which a kill of `go run` alone would leave running.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { onCleanup } from './cleanup.ts';

export interface ProgramOptions {
  cwd: string;
  /** The only environment it gets, besides PATH and HOME (nothing leaks in from the test's). */
  env?: Record<string, string>;
}

export interface Program {
  /** stdout and stderr so far, interleaved in arrival order. */
  output(): string;
  /** Resolves the exit code (null when killed by a signal) once the output is complete. */
  readonly exited: Promise<number | null>;
  /** Resolves the match once `pattern` is in the output; rejects after `timeoutMs` or at exit. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

export function startProgram(command: string, args: string[], options: ProgramOptions): Program {
  const label = [command, ...args].join(' ');
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group, so cleanup reaches its children too
  });
  let all = '';
  let done = false;
  const wakers = new Set<() => void>();
  const wake = () => {
    for (const w of wakers) w();
  };
  for (const stream of [child.stdout!, child.stderr!]) {
    stream.setEncoding('utf8').on('data', (chunk: string) => {
      all += chunk;
      wake();
    });
  }
  // 'close', not 'exit': the pipes are drained by then; 'error' (no such command) counts as an exit
  const exited = Promise.race([
    once(child, 'close').then(([code]) => code as number | null),
    once(child, 'error').then(([err]) => {
      all += String(err);
      return -1;
    }),
  ]).then((code) => {
    done = true;
    wake();
    return code;
  });
  onCleanup(() => {
    if (!done && child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // the group is gone already
      }
    }
    return exited;
  });

  const waitForOutput = (pattern: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> =>
    new Promise((resolve, reject) => {
      const finish = () => {
        clearTimeout(timer);
        wakers.delete(check);
      };
      const check = () => {
        const match = pattern.exec(all);
        if (match) {
          finish();
          resolve(match);
        } else if (done) {
          finish();
          reject(new Error(`${label} exited before printing ${pattern}; output:\n${all}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`${label}: no ${pattern} within ${timeoutMs} ms; output:\n${all}`));
      }, timeoutMs);
      wakers.add(check);
      check();
    });

  return { output: () => all, exited, waitForOutput };
}

/** Runs a program to its end; resolves its exit code and output, rejects past `timeoutMs`. */
export async function runProgram(
  command: string,
  args: string[],
  options: ProgramOptions,
  timeoutMs = 30_000,
): Promise<{ code: number | null; output: string }> {
  const program = startProgram(command, args, options);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${command} ${args.join(' ')} still running after ${timeoutMs} ms; output:\n${program.output()}`)), timeoutMs);
  });
  try {
    const code = await Promise.race([program.exited, deadline]);
    return { code, output: program.output() };
  } finally {
    clearTimeout(timer);
  }
}
