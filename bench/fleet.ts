// The runner's side of the client workers: starts them, sends each a command and waits,
// bounded, for its answer. Uid i lives in worker i % size, so the runner knows where every
// targeted message should arrive.
import { fileURLToPath } from 'node:url';
import { Child, nextMessage } from './children.ts';
import type { WorkerCommand, WorkerReply } from './ipc.ts';

const WORKER_SCRIPT = fileURLToPath(new URL('./client-worker.ts', import.meta.url));

/** Extra time the runner grants a worker past the worker's own deadline before giving up on it. */
const REPLY_GRACE_MS = 5000;

type Reply<T extends WorkerReply['type']> = Extract<WorkerReply, { type: T }>;

export class Fleet {
  private constructor(readonly workers: Child[]) {}

  static async start(size: number, startTimeoutMs: number): Promise<Fleet> {
    const workers: Child[] = [];
    const fleet = new Fleet(workers);
    try {
      for (let i = 0; i < size; i++) workers.push(new Child(`client worker ${i}`, WORKER_SCRIPT, process.env, true));
      await Promise.all(workers.map((w) => nextMessage<WorkerReply, 'ready'>(w, 'ready', startTimeoutMs)));
      return fleet;
    } catch (err) {
      await fleet.stop();
      throw err;
    }
  }

  get size(): number {
    return this.workers.length;
  }

  workerOf(uid: number): number {
    return uid % this.workers.length;
  }

  /** Logs every uid in, each in its worker; resolves the workers' answers in worker order. */
  connect(
    url: string,
    uids: number[],
    window: number,
    transports: string[],
    timeoutMs: number,
    loginSecret?: string,
  ): Promise<Reply<'connected'>[]> {
    const perWindow = Math.max(1, Math.floor(window / this.size));
    return Promise.all(
      this.workers.map((worker, i) => {
        const mine = uids.filter((uid) => this.workerOf(uid) === i);
        const command: WorkerCommand = { type: 'connect', url, uids: mine, window: perWindow, transports, timeoutMs, loginSecret };
        return this.ask(worker, command, 'connected', () => true, timeoutMs);
      }),
    );
  }

  /** The receipts of `key` from every worker, each answering once it holds `expected[i]`. */
  collect(key: string, expected: number[], timeoutMs: number): Promise<Reply<'collected'>[]> {
    return Promise.all(
      this.workers.map((worker, i) => {
        const command: WorkerCommand = { type: 'collect', key, expected: expected[i] ?? 0, timeoutMs };
        return this.ask(worker, command, 'collected', (r) => r.key === key, timeoutMs);
      }),
    );
  }

  private ask<T extends WorkerReply['type']>(
    worker: Child,
    command: WorkerCommand,
    type: T,
    match: (reply: Reply<T>) => boolean,
    timeoutMs: number,
  ): Promise<Reply<T>> {
    worker.process.send(command);
    // Listening after send is safe: a reply can only arrive on a later turn of the event loop.
    return nextMessage<WorkerReply, T>(worker, type, timeoutMs + REPLY_GRACE_MS, match);
  }

  /** Kills the workers outright: they hold no state worth a graceful close. */
  async stop(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.stop('SIGKILL')));
  }
}
