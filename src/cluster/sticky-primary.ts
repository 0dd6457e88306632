// The WORKERS primary's side of the Socket.IO port, in place of @socket.io/sticky's
// setupMaster. The primary reads a connection's request head only, bounded in bytes and time,
// answers what no worker would take, and hands the connection itself, with the bytes read so
// far, to a worker: the one whose Engine.IO session the request names (a session id names its
// worker, sticky-worker.ts), else the one with the fewest sessions. It never forwards a body.
// setupMaster kept every connection whose request has a body and forwarded each chunk over
// IPC, ignoring backpressure and the worker's answer: one POST with a huge Content-Length grew
// the primary by 300 MB/s until it died, and every worker and port with it (docs/security.md,
// hardening round 3, finding 1).
// The workers run @socket.io/sticky's setupWorker: it takes a connection with its first bytes
// (`sticky:connection`) and reports each session it opens and closes, which the load here counts.
import cluster, { type Worker } from 'node:cluster';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../log.ts';
import type { StopReading } from './node-internals.ts';
import { workerOfTarget } from './sticky-worker.ts';

export interface HandOverLimits {
  /**
   * The largest body a request may announce (Content-Length): the workers' Engine.IO
   * maxHttpBufferSize (MAX_SOCKET_MESSAGE_BYTES), the most any request on the port may carry.
   * A larger one is answered 413 before the connection reaches a worker.
   */
  maxBodyBytes: number;
  /** The request line and headers: Node's own bound (maxHeaderSize) in the workers. @default 16 KiB */
  maxHeadBytes: number;
  /** Until the head has come: HEADERS_TIMEOUT_MS, as on every other port. @default 10 s */
  headTimeoutMs: number;
  /**
   * Bytes held at once over all connections: heads being read and connections on their way to
   * a worker (a read may bring up to 64 KiB of body with a head). Past it the oldest unfinished
   * heads are cut (408). @default 16 MiB
   */
  maxHeldBytes: number;
}

export const HAND_OVER_LIMITS: Omit<HandOverLimits, 'maxBodyBytes'> = {
  maxHeadBytes: 16 * 1024,
  headTimeoutMs: 10_000,
  maxHeldBytes: 16 * 1024 * 1024,
};

/** After a refusal, what the client still sends is read and dropped (up to this much, then left unread) for this long. */
const LINGER_MS = 2000;
const LINGER_BYTES = 1024 * 1024;

const HEAD_END = Buffer.from('\r\n\r\n');

/** What the primary reads from a head: where it goes and how large a body it announces. */
interface Head {
  target: string;
  contentLength: number | null;
}

/** The request line and the one header the primary needs; a string says what is wrong. */
export function parseHead(head: string): Head | string {
  const lines = head.split('\r\n');
  const request = /^[!#$%&'*+.^_`|~\w-]+ (\S+) HTTP\/1\.[01]$/.exec(lines[0] ?? '');
  if (!request) return 'not an HTTP/1.x request line';
  let contentLength: number | null = null;
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0 || line.slice(0, colon).toLowerCase() !== 'content-length') continue;
    const value = line.slice(colon + 1).trim();
    if (!/^\d{1,15}$/.test(value)) return 'Content-Length must be a number';
    if (contentLength !== null && contentLength !== Number(value)) return 'two different Content-Length headers';
    contentLength = Number(value);
  }
  return { target: request[1]!, contentLength };
}

/** A connection whose head is being read. */
interface Reading {
  /** Bytes of it held (in StickyPrimary.held). */
  bytes: number;
  /** Answers 408 and lets it go: its head is the oldest unfinished one when room is needed. */
  cut(): void;
}

export class StickyPrimary {
  /** Worker id -> how many sessions it holds: a new session goes to the worker with the fewest. */
  private readonly load = new Map<number, number>();
  /** Connections whose head is being read, oldest first. */
  private readonly reading = new Map<Socket, Reading>();
  /** Connections on their way to a worker: a worker that exits never takes them. */
  private readonly handingOver = new Map<Socket, Worker>();
  /** Connections refused, until they have gone. */
  private readonly refused = new Set<Socket>();
  /** Bytes held over all connections (limits.maxHeldBytes). */
  private held = 0;
  private cutLoggedAt = -Infinity;
  private cutSince = 0;
  private readonly onMessage = (worker: Worker, message: unknown) => this.followSessions(worker, message);
  private readonly onExit = (worker: Worker) => this.forget(worker);

  constructor(
    /** The workers that serve now (have said they are ready and have not exited). */
    private readonly serving: () => readonly Worker[],
    private readonly stopReading: StopReading,
    private readonly limits: HandOverLimits,
    private readonly log: Logger,
  ) {
    cluster.on('message', this.onMessage);
    cluster.on('exit', this.onExit);
  }

  /** A new connection on the Socket.IO port (a net.Server 'connection' listener). */
  readonly connection = (socket: Socket): void => {
    const { maxHeadBytes, headTimeoutMs, maxBodyBytes } = this.limits;
    let head: Buffer = Buffer.alloc(0);
    let counted = 0; // of this.held
    let handedTo: Worker | null = null;
    const release = () => {
      this.held -= counted;
      counted = 0;
      this.reading.delete(socket);
      this.handingOver.delete(socket);
      clearTimeout(timer);
    };
    const refuse = (status: number, reason: string) => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      release();
      this.refuse(socket, status, reason);
    };
    const state: Reading = { bytes: 0, cut: () => refuse(408, 'the request head did not come in time') };
    const onData = (chunk: Buffer) => {
      if (!this.makeRoom(chunk.length, socket)) return refuse(503, 'the server is busy; retry');
      this.held += chunk.length;
      counted += chunk.length;
      state.bytes = counted;
      const from = Math.max(0, head.length - 3);
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const end = head.indexOf(HEAD_END, from);
      if (end === -1 ? head.length > maxHeadBytes : end > maxHeadBytes) {
        return refuse(431, `the request line and headers are larger than ${maxHeadBytes} bytes`);
      }
      if (end === -1) return;
      const parsed = parseHead(head.subarray(0, end).toString('latin1'));
      if (typeof parsed === 'string') return refuse(400, parsed);
      if (parsed.contentLength !== null && parsed.contentLength > maxBodyBytes) {
        return refuse(413, `the request body is larger than this port takes (${maxBodyBytes} bytes, MAX_SOCKET_MESSAGE_BYTES)`);
      }
      const worker = this.pick(parsed.target);
      if (!worker) return refuse(503, 'no worker is serving yet; retry');
      // what follows the head stays in the kernel for the worker (a refusal above reads on)
      this.stopReading(socket);
      socket.off('data', onData);
      socket.off('end', onEnd);
      this.reading.delete(socket);
      handedTo = worker;
      this.handingOver.set(socket, worker);
      // Node sends one socket at a time per worker and queues the next until the worker has
      // taken the one before: held (and counted) until it is written to the worker's channel
      worker.send({ type: 'sticky:connection', data: head }, socket, (err: Error | null) => {
        release();
        if (err) socket.destroy();
      });
    };
    // a client that ends before its head is complete will not complete it
    const onEnd = () => socket.destroy();
    // the head must come in time, and a connection on its way must reach its worker in time
    const timer = setTimeout(() => {
      if (handedTo) socket.destroy();
      else refuse(408, `the request head did not come within ${headTimeoutMs} ms`);
    }, headTimeoutMs);
    this.reading.set(socket, state);
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', () => socket.destroy()); // a client's reset is its own business
    socket.once('close', release);
  };

  /** Stops following the workers' sessions and drops the connections not handed over. */
  close(): void {
    cluster.off('message', this.onMessage);
    cluster.off('exit', this.onExit);
    for (const socket of [...this.reading.keys(), ...this.handingOver.keys(), ...this.refused]) socket.destroy();
  }

  /**
   * Room for `bytes` more within maxHeldBytes: the oldest unfinished heads (not `reader`'s) are
   * cut until it fits. A client that trickles its head cannot keep others out: theirs come
   * whole in a moment, its own is the oldest. False when connections on their way to a worker
   * hold the rest.
   */
  private makeRoom(bytes: number, reader: Socket): boolean {
    const max = this.limits.maxHeldBytes;
    for (const [socket, r] of this.reading) {
      if (this.held + bytes <= max) break;
      if (socket === reader || r.bytes === 0) continue;
      r.cut();
      this.cutSince++;
    }
    const now = Date.now();
    if (this.cutSince > 0 && now - this.cutLoggedAt >= 10_000) {
      this.log.warn(`the WORKERS primary held ${max} bytes of unfinished request heads: cut the oldest`, { cut: this.cutSince });
      this.cutLoggedAt = now;
      this.cutSince = 0;
    }
    return this.held + bytes <= max;
  }

  /** The worker the session the target names is of, else the serving worker with the fewest sessions. */
  private pick(target: string): Worker | null {
    const serving = this.serving();
    const holder = workerOfTarget(target);
    if (holder !== null) {
      const worker = serving.find((w) => w.id === holder);
      if (worker) return worker;
    }
    let best: Worker | null = null;
    for (const worker of serving) {
      if (best === null || (this.load.get(worker.id) ?? 0) < (this.load.get(best.id) ?? 0)) best = worker;
    }
    return best;
  }

  /**
   * Answers and ends the connection. What the client still sends is read and dropped, not
   * held, for a moment, so that it reads the answer rather than a reset; then it is cut.
   */
  private refuse(socket: Socket, status: number, reason: string): void {
    if (socket.destroyed) return;
    this.refused.add(socket);
    const body = `${reason}\n`;
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
    let dropped = 0;
    socket.on('data', (chunk: Buffer) => {
      dropped += chunk.length;
      // past it, stop reading rather than cut: a cut with bytes unread sends a reset, which a
      // client sending fast (1 MiB goes in milliseconds on loopback) gets before it has read
      // the answer; paused, its sends wait in its TCP window until the linger ends
      if (dropped > LINGER_BYTES) socket.pause();
    });
    socket.once('end', () => socket.destroy());
    socket.resume();
    const linger = setTimeout(() => socket.destroy(), LINGER_MS);
    socket.once('close', () => {
      clearTimeout(linger);
      this.refused.delete(socket);
    });
  }

  /** Sessions as setupWorker reports them: `sticky:connection` / `sticky:disconnection` with the session id. */
  private followSessions(worker: Worker, message: unknown): void {
    if (typeof message !== 'object' || message === null) return;
    const { type } = message as { type?: unknown };
    const load = this.load.get(worker.id) ?? 0;
    if (type === 'sticky:connection') this.load.set(worker.id, load + 1);
    else if (type === 'sticky:disconnection') this.load.set(worker.id, Math.max(0, load - 1));
  }

  private forget(worker: Worker): void {
    for (const [socket, to] of this.handingOver) if (to === worker) socket.destroy();
    this.load.delete(worker.id);
  }
}
