// The one place where a push becomes emits to sockets and stored messages.
import type { Server, Socket } from 'socket.io';
import { randomUUID } from 'node:crypto';
import { Backlog } from './backlog.ts';
import type { ClientMessage } from './client-publish.ts';
import type { MessageMeta, PushIo, PushSocket } from './events.ts';
import type { FairPool } from './fair-pool.ts';
import type { LeanEmitter } from './lean-emit.ts';
import type { Logger } from './log.ts';
import type { MessageStatus, UidState } from './message-status.ts';
import type { AckedMessage, MessageStore, PendingEntry } from './message-store.ts';
import type { LegacyResult, PushResult, PushSpec, StoredMessage } from './messages.ts';
import { DEFAULT_EVENT, escapeHtml, LEGACY_EVENT, topicRoom, userRoom } from './names.ts';
import type { Presence } from './presence.ts';

/**
 * Heap per stored (uid, message) beyond the data's JSON size, for the store's memory bound.
 * Measured by bench/store-memory.ts: ~450 B for a message to one uid; a message to many uids
 * shares its data, so there the estimate is an upper bound.
 */
const STORED_ENTRY_OVERHEAD = 450;

/** How much of a redelivery may be unacked at once. */
export interface RedeliveryWindow {
  messages: number;
  bytes: number;
}

/** How one socket's stored messages are sent (redeliver()). */
export interface RedeliveryOptions {
  window: RedeliveryWindow;
  /** The client address of the socket: its share of MAX_REDELIVERY_BYTES. */
  address: string;
  /** A page could not be read once redeliver() had resolved (the store went away): the rest is owed. */
  failed(err: unknown): void;
}

/** Stored messages an SSE Last-Event-ID acks per store call. */
const ACK_BATCH = 100;

/** The size `data` goes out with, about: its JSON length (undefined and functions count 0). */
function jsonBytes(data: unknown): number {
  const json = JSON.stringify(data) as string | undefined;
  return json === undefined ? 0 : Buffer.byteLength(json);
}

/**
 * What may be sent on `event`. The push API escapes new_msg data when it accepts a push; this
 * is the last guard for what it did not see, e.g. a message stored or scheduled by an older
 * version: text on new_msg that still holds markup characters is escaped, other values are
 * sent as their escaped JSON. Escaped text has none of < > " ' so it passes unchanged.
 */
export function legacySafe(event: string, data: unknown): unknown {
  if (event !== LEGACY_EVENT) return data;
  if (typeof data === 'string') return /[<>"']/.test(data) ? escapeHtml(data) : data;
  return escapeHtml(JSON.stringify(data) ?? '');
}

/** Told of each emit and ack (metrics). */
export interface DeliveryObserver {
  emitted(count?: number): void;
  acked(): void;
}

export class Delivery {
  /** Pushes name their own events, so emits go through the untyped view of the server. */
  private readonly emitter: Server;
  /** The redelivery under way on each socket: a new one (a catch-up) ends it. */
  private readonly redeliveries = new WeakMap<PushSocket, () => void>();

  constructor(
    private readonly io: PushIo,
    private readonly presence: Presence,
    private readonly store: MessageStore,
    /** MAX_REDELIVERY_BYTES: what every redelivery reads and holds of the store at once. */
    private readonly budget: FairPool,
    private readonly ackTimeoutMs: number,
    private readonly observer: DeliveryObserver,
    private readonly log: Logger,
    /** The lean emit path (lean-emit.ts), on one node; null: every emit goes through Socket.IO. */
    private readonly lean: LeanEmitter | null = null,
    /** Records what became of each push (GET /api/v1/messages/:id); null: not recorded. */
    private readonly status: MessageStatus | null = null,
  ) {
    this.emitter = io as unknown as Server;
  }

  /** `event(...args)` to the rooms' sockets: the lean path when it may take it, else Socket.IO's. */
  private emitToRooms(rooms: string | string[], event: string, args: unknown[]): void {
    if (this.lean?.emit(rooms, event, args)) return;
    this.emitter.to(rooms).emit(event, ...args);
  }

  /**
   * Emits `new_msg` with `content` (already escaped) to the uid's sockets, or to every
   * socket when `to` is empty. `offline` when the uid has no logged-in socket; the emit is
   * still attempted, as the original does.
   */
  async emitLegacy(to: string, content: string): Promise<LegacyResult> {
    this.observer.emitted();
    if (to === '') {
      this.io.emit('new_msg', content);
      return 'ok';
    }
    this.emitToRooms(userRoom(to), LEGACY_EVENT, [content]);
    return (await this.presence.isOnline(to)) ? 'ok' : 'offline';
  }

  /** Makes a v1 push: `event(data, meta)` to its sockets, and stored per uid when it has a ttl. */
  async push(spec: PushSpec): Promise<PushResult> {
    const ts = Date.now();
    const { id, event } = spec;
    const data = legacySafe(event, spec.data);
    if (!spec.to) {
      const room = spec.topic === undefined ? null : topicRoom(spec.topic);
      const target = room === null ? this.emitter : this.emitter.to(room);
      target.emit(event, data, { id, ts } satisfies MessageMeta);
      this.observer.emitted();
      this.status?.fannedOut(id, ts, spec.topic, this.localSockets(room), room);
      return { id, online: [], offline: [], stored: 0 };
    }

    const uids = spec.to;
    const whoIsOnline = async (): Promise<PushResult> => {
      const online = await Promise.all(uids.map((uid) => this.presence.isOnline(uid)));
      return { id, online: uids.filter((_, i) => online[i]), offline: uids.filter((_, i) => !online[i]), stored: 0 };
    };
    if (spec.ttlMs === 0) {
      const result = await whoIsOnline();
      this.emitToRooms(uids.length === 1 ? userRoom(uids[0]!) : uids.map(userRoom), event, [data, { id, ts } satisfies MessageMeta]);
      this.observer.emitted();
      // offline with nothing kept: dropped
      this.recordUids(id, ts, ts, result, (online) => (online ? ['delivered'] : ['dropped']));
      return result;
    }

    const message: StoredMessage = { id, event, data, ts, expiresAt: ts + spec.ttlMs };
    // Stored first, presence asked after: a login counts its page (and joins the uid's room)
    // before it reads the store, so a login that read the store before this add committed is
    // seen online here and gets the live emit. Asked before the add, a page logging in during
    // the add was seen offline and its login read no message: kept until its next login.
    const stored = await this.store.add(uids, message, spec.bytes + STORED_ENTRY_OVERHEAD);
    const result = await whoIsOnline();
    result.stored = stored;
    const meta: MessageMeta = { id, ts, stored: true };
    this.observer.emitted(result.online.length);
    this.recordUids(id, ts, message.expiresAt, result, (online) => (online ? ['stored', 'delivered'] : ['stored']));
    for (const uid of result.online) {
      this.emitter
        .to(userRoom(uid))
        .timeout(this.ackTimeoutMs)
        .emit(event, data, meta, (_err: Error | null, acks: unknown[]) => {
          // any page of the uid that acked makes it delivered; the rest may never ack
          if (acks.length > 0) this.ack(uid, message);
        });
    }
    return result;
  }

  /**
   * Sends a uid's stored messages to a socket that just logged in, oldest first, a window at a
   * time: at most `window.messages` and `window.bytes` (data as JSON; one message always goes)
   * unacked at once. Each ack, or ACK_TIMEOUT_MS without one, lets the next ones go; a message
   * not acked in time stays stored for the next login. They are read from the store a page at a
   * time, each page's bytes taken from MAX_REDELIVERY_BYTES first and held until acked or timed
   * out; a disconnect gives them back at once. Resolves how many are stored (counted, none read)
   * once the first window has been emitted, or once it waits its turn for the budget. Stops
   * when the socket disconnects, is no longer logged in as `uid` (a login that was undone), or
   * a later redelivery to it starts (from the oldest).
   */
  async redeliver(socket: PushSocket, uid: string, options: RedeliveryOptions): Promise<number> {
    const count = await this.store.pendingCount(uid);
    if (count === 0 || socket.disconnected || socket.data.uid !== uid) return count;
    this.redeliveries.get(socket)?.();
    const backlog = this.backlog(uid, options.address, 0);
    return new Promise((resolve, reject) => {
      let answered = false;
      const started = () => {
        if (answered) return;
        answered = true;
        resolve(count);
      };
      this.sendBacklog(socket, uid, backlog, options.window, started).then(started, (err: unknown) => {
        if (answered) return options.failed(err);
        answered = true;
        reject(err);
      });
    });
  }

  /** redeliver()'s pump: `started` is told once the first window is out, or waits for the budget. */
  private async sendBacklog(socket: PushSocket, uid: string, backlog: Backlog, window: RedeliveryWindow, started: () => void): Promise<void> {
    const loose = socket as unknown as Socket;
    let inFlight = 0;
    let inFlightBytes = 0;
    /** Wakes the pump: an ack or its timeout, a disconnect. */
    let wake: (() => void) | null = null;
    const settle = () => new Promise<void>((resolve) => (wake = resolve));
    const stop = () => {
      backlog.close(); // what it holds goes back to the budget now
      loose.off('disconnect', stop);
      if (this.redeliveries.get(socket) === stop) this.redeliveries.delete(socket);
      wake?.();
    };
    loose.on('disconnect', stop);
    this.redeliveries.set(socket, stop);
    const active = () => !backlog.closed && socket.connected && socket.data.uid === uid;
    try {
      /** The page being sent: each message is let go of once emitted. */
      let page: (PendingEntry | undefined)[] = [];
      let at = 0;
      /** Size of page[at], once measured: a head that waits for room is not measured again. */
      let headBytes = -1;
      while (active()) {
        if (at === page.length) {
          if (inFlight >= window.messages) {
            started();
            await settle();
            continue;
          }
          const next = await backlog.next(window.messages - inFlight, window.bytes, started);
          if (next === null) break;
          page = next;
          at = 0;
          continue;
        }
        const { message: m, bytes: held } = page[at]!;
        if (m.expiresAt <= Date.now()) {
          page[at++] = undefined; // expired while earlier ones were waiting for their acks
          headBytes = -1;
          backlog.done(held);
          continue;
        }
        if (headBytes < 0) headBytes = jsonBytes(m.data);
        const bytes = headBytes;
        if (inFlight > 0 && (inFlight >= window.messages || inFlightBytes + bytes > window.bytes)) {
          started();
          await settle();
          continue;
        }
        page[at++] = undefined;
        headBytes = -1;
        inFlight++;
        inFlightBytes += bytes;
        this.observer.emitted();
        this.status?.delivered(uid, m.id, this.status.keepUntil(m.expiresAt));
        const meta: MessageMeta = { id: m.id, ts: m.ts, stored: true, redelivery: true };
        const sent: AckedMessage = { id: m.id, expiresAt: m.expiresAt };
        loose.timeout(this.ackTimeoutMs).emit(m.event, legacySafe(m.event, m.data), meta, (err: Error | null) => {
          inFlight--;
          inFlightBytes -= bytes;
          backlog.done(held);
          if (!err) this.ack(uid, sent);
          wake?.();
        });
      }
      started();
      // the last window holds its bytes until acked or timed out
      while (inFlight > 0 && active()) await settle();
    } finally {
      stop();
    }
  }

  /**
   * A uid's stored messages after cursor `after` (0: the oldest), read a page at a time for a
   * redelivery from `address`: each page's bytes are taken from MAX_REDELIVERY_BYTES first.
   */
  backlog(uid: string, address: string, after: number): Backlog {
    const { perUid, perAddress, total } = this.budget.shares;
    return new Backlog(this.store, this.budget.holder(uid, address), uid, after, Math.min(perUid, perAddress, total));
  }

  /**
   * A message a client published to a topic (checked by client-publish.ts): to the topic's
   * subscribers on every node, as event `message` (never new_msg), the sender's socket left out
   * unless it asked for an echo. Returns the message's id.
   */
  clientMessage(socket: PushSocket, uid: string, message: ClientMessage): string {
    const id = randomUUID();
    const room = topicRoom(message.topic);
    const target = message.echo ? this.emitter.to(room) : this.emitter.to(room).except(socket.id);
    target.emit(DEFAULT_EVENT, message.data, { id, ts: Date.now(), uid, client: true } satisfies MessageMeta);
    this.observer.emitted();
    return id;
  }

  /**
   * An SSE stream's resume (sse/endpoint.ts). SSE has no per-message ack, so the last event id
   * a client reports is its ack: the uid's stored messages up to and including `lastId` are
   * acked (a batch at a time, none read), and the cursor to replay after is resolved. No id, or
   * one not stored (never stored, acked, expired or dropped), acks nothing and resolves 0: every
   * stored message is replayed; the client drops ids it has seen (docs/protocol.md).
   */
  async resume(uid: string, lastId: string | null): Promise<number> {
    if (lastId === null) return 0;
    const through = await this.store.cursorOf(uid, lastId);
    if (through === null) return 0;
    for (;;) {
      const acked = await this.store.ackThrough(uid, through, ACK_BATCH);
      for (const m of acked) this.acked(uid, m);
      if (acked.length < ACK_BATCH) return through;
    }
  }

  /** A stored message written to an SSE stream by its replay (its status: delivered). */
  replayed(uid: string, m: Pick<StoredMessage, 'id' | 'expiresAt'>): void {
    this.observer.emitted();
    this.status?.delivered(uid, m.id, this.status.keepUntil(m.expiresAt));
  }

  /**
   * A page of `uid` acked a stored message: it leaves the store and its status says acked.
   * Every ack goes through here (socket acks; an SSE Last-Event-ID acks each stored message up
   * to that id).
   */
  ack(uid: string, message: AckedMessage): void {
    this.acked(uid, message);
    this.store.ack(uid, message.id).catch((err: unknown) => this.log.error('ack failed', err));
  }

  /** An ack counted and recorded; the store has forgotten the message or is told by the caller. */
  private acked(uid: string, message: AckedMessage): void {
    this.observer.acked();
    this.status?.acked(uid, message.id, this.status.keepUntil(message.expiresAt));
  }

  /** Sockets of this node in `room` (null: all of them): what a broadcast or topic emit reached here. */
  private localSockets(room: string | null): number {
    const nsp = this.io.of('/');
    return room === null ? nsp.sockets.size : (nsp.adapter.rooms.get(room)?.size ?? 0);
  }

  private recordUids(id: string, ts: number, expiresAt: number, result: PushResult, states: (online: boolean) => UidState[]): void {
    if (!this.status) return;
    const list: [string, UidState][] = [];
    for (const [uids, online] of [[result.online, true], [result.offline, false]] as const) {
      for (const uid of uids) for (const state of states(online)) list.push([uid, state]);
    }
    this.status.toUids(id, ts, this.status.keepUntil(expiresAt), list);
  }
}
