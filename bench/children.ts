// Every process the benchmark starts (servers and client workers) goes through here, so
// each one is stopped at the end of its run, and all of them on Ctrl-C or a crash.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { orThrow, TIMED_OUT, withDeadline } from './deadline.ts';

/** The project folder: `--import tsx` and the scripts resolve from here. */
export const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Open files wanted per child: 5000 sockets need more than the common default of 1024. */
const WANTED_OPEN_FILES = 65536;

/** How much of a child's output is kept, to explain a failure. */
const TAIL_CHARS = 4000;

const live = new Set<Child>();

export class Child {
  readonly process: ChildProcess;
  readonly pid: number;
  private tail = '';
  private stdoutSeen = '';
  private readonly exit: Promise<void>;

  /**
   * Starts `node [nodeFlags] <script>` (with `--import tsx` for a .ts script) through bash, which raises the open-files limit
   * (to 65536, or to the hard limit when that is lower; raising up to it needs no privilege)
   * and then `exec`s node: the pid stays node's, so /proc/PID is the process measured, and
   * the IPC channel, an inherited fd, reaches node.
   */
  constructor(
    readonly name: string,
    script: string,
    env: NodeJS.ProcessEnv,
    ipc = false,
    nodeFlags: readonly string[] = [],
  ) {
    const raise = `ulimit -n ${WANTED_OPEN_FILES} 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"`;
    const node = script.endsWith('.ts') ? [process.execPath, ...nodeFlags, '--import', 'tsx', script] : [process.execPath, ...nodeFlags, script];
    this.process = spawn('bash', ['-c', raise, 'bash', ...node], {
      cwd: PROJECT_ROOT,
      env,
      stdio: ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
    });
    if (this.process.pid === undefined) throw new Error(`${name}: could not start bash`);
    this.pid = this.process.pid;
    live.add(this);
    this.exit = once(this.process, 'exit').then(() => void live.delete(this));
    // Both pipes must be read: a child blocked on a full pipe would distort the figures.
    this.process.stdout?.setEncoding('utf8').on('data', (text: string) => {
      if (this.stdoutSeen.length < 65536) this.stdoutSeen += text;
      this.keep(text);
    });
    this.process.stderr?.setEncoding('utf8').on('data', (text: string) => this.keep(text));
  }

  private keep(text: string): void {
    this.tail = (this.tail + text).slice(-TAIL_CHARS);
  }

  get running(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null;
  }

  /** The last lines the child wrote, stdout and stderr together. */
  output(): string {
    return this.tail.trim();
  }

  /** The first stdout line matching `pattern`; fails when the child exits or `ms` runs out. */
  async waitForLine(pattern: RegExp, ms: number): Promise<RegExpExecArray> {
    const stdout = this.process.stdout;
    if (!stdout) throw new Error(`${this.name}: no stdout`);
    let onData = (): void => undefined;
    const found = new Promise<RegExpExecArray>((resolve, reject) => {
      onData = () => {
        const match = pattern.exec(this.stdoutSeen);
        if (match) resolve(match);
      };
      stdout.on('data', onData);
      onData();
      this.exit.then(() =>
        reject(new Error(`${this.name} exited (${this.exitStatus()}) before printing its ports:\n${this.output()}`)),
      );
    });
    try {
      const result = await withDeadline(found, ms);
      if (result === TIMED_OUT) throw new Error(`${this.name} printed no ports within ${ms} ms:\n${this.output()}`);
      return result;
    } finally {
      stdout.off('data', onData);
    }
  }

  exitStatus(): string {
    return this.process.signalCode ?? `code ${this.process.exitCode}`;
  }

  /** `signal`, then SIGKILL if it is still there after `graceMs`; resolves once it is gone. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<void> {
    if (!this.running) return this.exit;
    this.process.kill(signal);
    if ((await withDeadline(this.exit, graceMs)) !== TIMED_OUT) return;
    this.process.kill('SIGKILL');
    await withDeadline(this.exit, 2000);
  }
}

/** Kills every child at once, synchronously: for Ctrl-C and a crashing runner. */
export function killAllChildren(): void {
  for (const child of live) if (child.running) child.process.kill('SIGKILL');
}

/**
 * The child's next IPC message of `type` that `match`es; fails if the child exits first or
 * nothing comes within `timeoutMs`. Listen before (or right after) sending the command: a
 * reply can only arrive on a later turn of the event loop.
 */
export function nextMessage<M extends { type: string }, T extends M['type']>(
  child: Child,
  type: T,
  timeoutMs: number,
  match: (message: Extract<M, { type: T }>) => boolean = () => true,
): Promise<Extract<M, { type: T }>> {
  type R = Extract<M, { type: T }>;
  let onMessage = (_message: M): void => undefined;
  let onExit = (): void => undefined;
  const answer = new Promise<R>((resolve, reject) => {
    onMessage = (message) => {
      if (message.type === type && match(message as R)) resolve(message as R);
    };
    onExit = () => reject(new Error(`${child.name} exited (${child.exitStatus()}):\n${child.output().slice(-2000)}`));
    child.process.on('message', onMessage);
    child.process.once('exit', onExit);
  });
  return orThrow(answer, timeoutMs, `${child.name}, waiting for '${type}'`).finally(() => {
    child.process.off('message', onMessage);
    child.process.off('exit', onExit);
  });
}

/**
 * Children must not outlive the runner: not on Ctrl-C, not on a crash. `cleanup` runs after
 * the children are killed (synchronously), e.g. to kill other processes and remove temp dirs.
 */
export function stopChildrenOnExit(what: string, cleanup: () => void = () => {}): void {
  const stopAll = () => {
    killAllChildren();
    cleanup();
  };
  process.on('exit', stopAll);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      console.error(`\n${signal}: stopping every ${what} process`);
      stopAll();
      process.exit(130);
    });
  }
}
