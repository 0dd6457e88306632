// The lean emit path for pushes to rooms (a uid's pages): the Socket.IO packet is encoded once
// and written straight to each socket's WebSocket, without Socket.IO's broadcast operator, the
// adapter's per-emit sets, engine.io's packet objects, writeBuffer, events and write callbacks.
// What goes on the wire is byte for byte what Socket.IO sends for the same emit: an engine.io
// message packet ('4', the same in EIO3 and EIO4 text framing) holding a Socket.IO EVENT
// packet of the main namespace ('2' + JSON of [event, ...args]), as one WebSocket text frame.
//
// Taken only when it cannot change what a page sees, or in which order:
// - one node (the in-memory adapter): with Redis the adapter publishes every emit to the other
//   nodes, so a cluster keeps Socket.IO's path (the caller does not build a LeanEmitter), as
//   does a server with connection state recovery (its adapter numbers every packet);
// - every socket of the rooms is on WebSocket, open, not in an upgrade, with nothing in
//   engine.io's writeBuffer and its transport writable (no write of engine.io's in flight that
//   queues the next ones): a lean write then lands exactly where engine.io's own would, after
//   everything sent before it; the WebSocket library keeps the order of its writes;
// - no member of the rooms is an SSE stream (a member without a socket): streams are reached
//   through the adapter (sse/members.ts);
// - no socket's WebSocket holds more than the outgoing bound minus this frame: the normal path
//   then queues it and outgoing-bound.ts closes the connection as before;
// - text only: the arguments are JSON values (no binary, which Socket.IO frames differently).
// Otherwise the whole emit takes Socket.IO's path, as before.
//
// Writes are corked: the first lean write to a connection in a turn of the event loop corks
// its TCP socket, and a setImmediate after the turn's I/O uncorks every socket corked in it.
// The messages of a v1 batch (made one after another in one turn when they need no store) to
// one page then leave in one writev, not one per message. Corking delays, never reorders: any
// other write to that socket in the meantime (engine.io's, ws's) queues behind in the same
// stream.

/** The parts of the TCP socket under a WebSocket used here (node:net). */
interface Corkable {
  cork(): void;
  uncork(): void;
}

/** The parts of a `ws` WebSocket used here. */
interface LeanWs {
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: string): void;
  /** ws's own field: the connection's TCP socket. */
  readonly _socket?: Corkable;
}

/** The parts of engine.io's socket (socket.conn) used here. */
interface LeanConn {
  readonly readyState: string;
  readonly upgrading: boolean;
  readonly writeBuffer: readonly unknown[];
  readonly transport: { readonly name: string; readonly writable: boolean; readonly socket?: LeanWs };
}

/** The parts of Socket.IO's in-memory adapter and namespace used here. */
export interface LeanNamespace {
  readonly adapter: { readonly rooms: ReadonlyMap<string, ReadonlySet<string>> };
  readonly sockets: ReadonlyMap<string, { readonly conn: unknown }>;
}

/** `ws`'s WebSocket.OPEN. */
const WS_OPEN = 1;

export class LeanEmitter {
  /** Emits written the lean way, and emits handed back to Socket.IO's path (for tests and profiles). */
  lean = 0;
  fallback = 0;
  /** Reused between emits: the connections of the rooms of one emit. */
  private readonly targets: LeanWs[] = [];
  /** TCP sockets corked in this turn of the event loop, uncorked by `uncorkAll`. */
  private corked = new Set<Corkable>();
  private readonly uncorkAll = (): void => {
    const corked = this.corked;
    this.corked = new Set();
    for (const socket of corked) socket.uncork();
  };

  /**
   * `nsp`: the main namespace of a server whose adapter is the in-memory one. `maxBufferedBytes`:
   * MAX_SOCKET_BUFFER_BYTES, the bound outgoing-bound.ts enforces on engine.io's path.
   */
  constructor(
    private readonly nsp: LeanNamespace,
    private readonly maxBufferedBytes: number,
  ) {}

  /**
   * Writes `event(...args)` to every local socket in `rooms` (each socket once) the lean way and
   * answers true, or writes nothing and answers false: the caller emits through Socket.IO.
   * `args` must be JSON values.
   */
  emit(rooms: string | readonly string[], event: string, args: readonly unknown[]): boolean {
    const targets = this.targets;
    targets.length = 0;
    const { adapter, sockets } = this.nsp;
    let frame: string | null = null;
    let ok = true;
    if (typeof rooms === 'string') {
      const sids = adapter.rooms.get(rooms);
      if (sids !== undefined) {
        frame = encode(event, args);
        for (const sid of sids) {
          if (!this.collect(sockets.get(sid), frame.length)) {
            ok = false;
            break;
          }
        }
      }
    } else {
      let seen: Set<string> | null = null; // a socket in several of the rooms gets it once
      for (const room of rooms) {
        const sids = adapter.rooms.get(room);
        if (sids === undefined) continue;
        frame ??= encode(event, args);
        for (const sid of sids) {
          if (rooms.length > 1) {
            seen ??= new Set();
            if (seen.has(sid)) continue;
            seen.add(sid);
          }
          if (!this.collect(sockets.get(sid), frame.length)) {
            ok = false;
            break;
          }
        }
        if (!ok) break;
      }
    }
    if (!ok) {
      targets.length = 0;
      this.fallback++;
      return false;
    }
    if (frame !== null) {
      for (const ws of targets) {
        const socket = ws._socket;
        if (socket !== undefined && !this.corked.has(socket)) {
          if (this.corked.size === 0) setImmediate(this.uncorkAll);
          socket.cork();
          this.corked.add(socket);
        }
        ws.send(frame);
      }
    }
    targets.length = 0;
    this.lean++;
    return true;
  }

  /** Adds the socket's WebSocket to the targets when a lean write may go to it now. */
  private collect(socket: { readonly conn: unknown } | undefined, length: number): boolean {
    // a member with no socket is an SSE stream (sse/members.ts): only Socket.IO's path reaches it
    if (socket === undefined) return false;
    const conn = socket.conn as LeanConn;
    if (conn.readyState !== 'open' || conn.upgrading || conn.writeBuffer.length !== 0) return false;
    const transport = conn.transport;
    if (transport.name !== 'websocket' || !transport.writable) return false;
    const ws = transport.socket;
    // a character is at most 3 bytes in UTF-8: past the bound's margin, the normal path measures
    if (ws === undefined || ws.readyState !== WS_OPEN || ws.bufferedAmount + length * 3 > this.maxBufferedBytes) return false;
    this.targets.push(ws);
    return true;
  }
}

/**
 * The engine.io message ('4') holding the Socket.IO EVENT ('2') of the main namespace, as
 * socket.io-parser encodes `[event, ...args]` without attachments or ack id.
 */
export function encode(event: string, args: readonly unknown[]): string {
  return '42' + JSON.stringify([event, ...args]);
}
