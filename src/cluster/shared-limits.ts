// WORKERS: the limits that must hold for the machine, not for each worker, kept by the primary
// for all of them: MAX_CONNECTIONS_PER_IP's count of open connections per client address, and
// the signatures remembered against replay (MAX_REMEMBERED_SIGNATURES). Each worker counted its
// own, so a per-address limit of 2 let 6 connect with WORKERS=3, and one signed push was
// accepted 4 of 8 times with WORKERS=4 (docs/security.md, hardening round 3, finding 8). A
// worker asks over the cluster's IPC channel and waits for the answer (SharedLimitsClient); the
// primary answers (SharedLimitsHost) and gives back a worker's places when it exits. The rate
// limits stay per worker: docs/cluster.md says what each means then.
import cluster, { type Worker } from 'node:cluster';
import { SignatureMemory, type Remembered, type SignatureLog } from '../api/push-auth.ts';
import type { Config } from '../config.ts';
import { ConnectionCounter, type ConnectionPlaces } from '../connection-limit.ts';
import type { Logger } from '../log.ts';

/** A worker's question, or its giving back a place (no answer). */
type LimitRequest =
  | { type: 'push:limits'; id: number; op: 'acquire'; address: string }
  | { type: 'push:limits'; op: 'release'; address: string }
  | { type: 'push:limits'; id: number; op: 'remember'; signature: string; expiresAt: number };

/** The primary's answer to the question `id`. */
interface LimitAnswer {
  type: 'push:limits-answer';
  id: number;
  answer: boolean | Remembered;
}

/** How long a worker waits for the primary's answer before the request fails (a 503 or a refused connection). */
const ANSWER_MS = 5000;

/** Longest address or signature taken in a message: our own workers send them, but a bound costs nothing. */
const MAX_FIELD = 256;

function isLimitRequest(message: unknown): message is LimitRequest {
  if (typeof message !== 'object' || message === null) return false;
  const m = message as Record<string, unknown>;
  if (m.type !== 'push:limits') return false;
  const short = (v: unknown) => typeof v === 'string' && v.length <= MAX_FIELD;
  if (m.op === 'release') return short(m.address);
  if (!Number.isSafeInteger(m.id)) return false;
  if (m.op === 'acquire') return short(m.address);
  return m.op === 'remember' && short(m.signature) && typeof m.expiresAt === 'number';
}

function isLimitAnswer(message: unknown): message is LimitAnswer {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === 'push:limits-answer';
}

/** The primary's side: one count and one signature memory for every worker. */
export class SharedLimitsHost {
  private readonly connections: ConnectionCounter;
  private readonly signatures: SignatureMemory;
  /** Places each worker holds, by address: given back when it exits. */
  private readonly holds = new Map<number, Map<string, number>>();
  private readonly onMessage = (worker: Worker, message: unknown) => this.answer(worker, message);
  private readonly onExit = (worker: Worker) => this.giveBackAll(worker);

  constructor(config: Pick<Config, 'maxConnectionsPerIp' | 'maxRememberedSignatures'>, log: Logger) {
    this.connections = new ConnectionCounter(config.maxConnectionsPerIp, log);
    this.signatures = new SignatureMemory(config.maxRememberedSignatures);
    cluster.on('message', this.onMessage);
    cluster.on('exit', this.onExit);
  }

  close(): void {
    cluster.off('message', this.onMessage);
    cluster.off('exit', this.onExit);
  }

  private answer(worker: Worker, message: unknown): void {
    if (!isLimitRequest(message)) return;
    const holds = this.holds.get(worker.id) ?? new Map<string, number>();
    this.holds.set(worker.id, holds);
    if (message.op === 'release') {
      const n = holds.get(message.address) ?? 0;
      if (n === 0) return; // not this worker's to give back
      if (n === 1) holds.delete(message.address);
      else holds.set(message.address, n - 1);
      this.connections.release(message.address);
      return;
    }
    let answer: LimitAnswer['answer'];
    if (message.op === 'acquire') {
      answer = this.connections.take(message.address);
      if (answer) holds.set(message.address, (holds.get(message.address) ?? 0) + 1);
    } else {
      answer = this.signatures.remember(message.signature, message.expiresAt, Date.now());
    }
    // a worker gone meanwhile: its places are given back on its exit
    if (worker.isConnected()) worker.send({ type: 'push:limits-answer', id: message.id, answer } satisfies LimitAnswer);
  }

  private giveBackAll(worker: Worker): void {
    const holds = this.holds.get(worker.id);
    this.holds.delete(worker.id);
    for (const [address, n] of holds ?? []) for (let i = 0; i < n; i++) this.connections.release(address);
  }
}

/** A worker's side: asks the primary. */
export class SharedLimitsClient implements ConnectionPlaces, SignatureLog {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve(answer: LimitAnswer['answer']): void; reject(err: Error): void; timer: NodeJS.Timeout }>();
  /** Places asked for and given up on (no answer in time): given back if the answer comes. */
  private readonly abandoned = new Map<number, string>();

  constructor() {
    const worker = cluster.worker;
    if (!worker) throw new Error('SharedLimitsClient runs in a cluster worker');
    this.worker = worker;
    worker.on('message', (message: unknown) => {
      if (!isLimitAnswer(message)) return;
      const late = this.abandoned.get(message.id);
      if (late !== undefined) {
        this.abandoned.delete(message.id);
        if (message.answer === true) this.release(late);
        return;
      }
      const waiter = this.waiting.get(message.id);
      if (!waiter) return;
      this.waiting.delete(message.id);
      clearTimeout(waiter.timer);
      waiter.resolve(message.answer);
    });
  }

  async acquire(address: string): Promise<boolean> {
    return (await this.ask({ op: 'acquire', address })) === true;
  }

  release(address: string): void {
    if (this.worker.isConnected()) this.worker.send({ type: 'push:limits', op: 'release', address } satisfies LimitRequest);
  }

  async remember(signature: string, expiresAt: number): Promise<Remembered> {
    const answer = await this.ask({ op: 'remember', signature, expiresAt });
    if (answer === 'new' || answer === 'seen' || (typeof answer === 'object' && typeof answer.full === 'number')) return answer;
    throw new Error(`the WORKERS primary answered ${JSON.stringify(answer)} for a signature`);
  }

  private ask(
    question: { op: 'acquire'; address: string } | { op: 'remember'; signature: string; expiresAt: number },
  ): Promise<LimitAnswer['answer']> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (!this.worker.isConnected()) return reject(new Error('the WORKERS primary is gone'));
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        if (question.op === 'acquire') this.abandoned.set(id, question.address);
        reject(new Error(`the WORKERS primary did not answer within ${ANSWER_MS} ms`));
      }, ANSWER_MS);
      timer.unref();
      this.waiting.set(id, { resolve, reject, timer });
      this.worker.send({ type: 'push:limits', id, ...question } satisfies LimitRequest);
    });
  }
}
