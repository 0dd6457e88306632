// SSE streams as members of the main namespace's rooms, so a push reaches them by the same
// path as Socket.IO pages, on one node and across a cluster. Each stream is registered with
// the namespace's adapter under its own id, in its uid's room and its topics' rooms
// (names.ts): the Redis adapter then takes a message from another node for a room held only
// by SSE streams here (it drops messages for rooms it does not hold), and the broadcasts the
// adapter makes on this node (a local emit, one from another node, io.local's online count)
// are offered to the streams of their rooms right after its sockets, in the order it makes
// them. This file is the one place where a Socket.IO packet becomes an SSE event.
//
// The hook: socket.io-adapter 2.x makes every broadcast (and addSockets, delSockets,
// disconnectSockets, fetchSockets) through its apply(opts, callback), which calls back with
// each member's socket; a stream has no socket, so apply() is wrapped to call back with a
// small stand-in per stream too (AdapterMember). test/sse.test.ts fails if an upgrade changes
// that path.
import type { MessageMeta } from '../events.ts';
import type { Logger } from '../log.ts';
import { SSE_CLIENT_MESSAGE_EVENT } from '../names.ts';
import { formatEvent, type SseStream } from './stream.ts';

/** Reconnects after a Redis recovery are spread over 1 s plus this. */
const RECONNECT_SPREAD_MS = 10_000;

/** socket.io-parser's EVENT packet type; BINARY_EVENT and the rest never go over SSE. */
const EVENT = 2;

/** A packet as the adapter broadcasts it. */
interface Packet {
  type: number;
  data?: unknown;
}

/** What apply() is told: the rooms to reach (none: everyone) and the rooms to leave out. */
interface ApplyOptions {
  rooms: ReadonlySet<string>;
  except?: ReadonlySet<string>;
}

type Apply = (opts: ApplyOptions, callback: (member: unknown) => void) => void;

/** The parts of socket.io-adapter's adapter (in-memory, or the Redis one built on it) used here. */
export interface MemberAdapter {
  readonly rooms: ReadonlyMap<string, ReadonlySet<string>>;
  addAll(id: string, rooms: Set<string>): unknown;
  delAll(id: string): void;
  apply?: Apply;
}

/**
 * What the adapter's callbacks see of a stream, shaped like the parts of a Socket they use:
 * a broadcast hands it the packet (notifyOutgoingListeners) and writes encoded bytes it has no
 * use for (client.writeToEngine); an ack'd broadcast registers an ack that never comes (SSE has
 * none: a stream acks stored messages with Last-Event-ID on its next connection).
 */
class AdapterMember {
  readonly client = { writeToEngine: (): void => {} };
  readonly acks = { set: (): void => {} };
  readonly handshake = {};

  constructor(
    private readonly members: SseMembers,
    readonly stream: SseStream,
  ) {}

  get id(): string {
    return this.stream.id;
  }

  get data(): { uid: string } {
    return { uid: this.stream.uid };
  }

  get rooms(): Set<string> {
    return new Set(this.members.roomsOf(this.stream));
  }

  notifyOutgoingListeners(packet: Packet): void {
    this.members.send(this.stream, packet);
  }

  join(rooms: string | string[]): void {
    this.members.join(this.stream, typeof rooms === 'string' ? [rooms] : rooms);
  }

  leave(room: string): void {
    this.members.leave(this.stream, room);
  }

  disconnect(): void {
    this.stream.end();
  }
}

export class SseMembers {
  private readonly members = new Map<string, AdapterMember>();
  private readonly byRoom = new Map<string, Set<AdapterMember>>();
  private readonly roomsById = new Map<string, Set<string>>();
  private readonly original: Apply;
  private readonly heartbeat: NodeJS.Timeout;
  /** The last packet turned into an SSE event: a broadcast to many streams formats it once. */
  private lastPacket: Packet | null = null;
  private lastFrame: { frame: string; id: string | undefined } | null = null;

  /** `adapter`: the main namespace's, once io.adapter() has set it (a cluster's Redis adapter). */
  constructor(
    private readonly adapter: MemberAdapter,
    heartbeatMs: number,
    private readonly log: Logger,
  ) {
    const apply = adapter.apply;
    if (typeof apply !== 'function') throw new Error('the Socket.IO adapter has no apply(): SSE streams cannot join its rooms');
    this.original = apply;
    adapter.apply = (opts, callback) => {
      apply.call(adapter, opts, callback);
      if (this.members.size > 0) this.applyToStreams(opts, callback);
    };
    this.heartbeat = setInterval(() => {
      for (const member of this.members.values()) member.stream.beat();
    }, heartbeatMs);
  }

  /** Open streams on this node. */
  get size(): number {
    return this.members.size;
  }

  /** Makes `stream` a member of `rooms`: from now on it is offered their broadcasts. */
  add(stream: SseStream, rooms: readonly string[]): void {
    this.members.set(stream.id, new AdapterMember(this, stream));
    this.roomsById.set(stream.id, new Set());
    this.join(stream, rooms);
  }

  remove(stream: SseStream): void {
    const member = this.members.get(stream.id);
    if (member === undefined) return;
    this.members.delete(stream.id);
    for (const room of this.roomsById.get(stream.id) ?? []) this.forget(room, member);
    this.roomsById.delete(stream.id);
    this.adapter.delAll(stream.id);
  }

  roomsOf(stream: SseStream): ReadonlySet<string> {
    return this.roomsById.get(stream.id) ?? new Set();
  }

  join(stream: SseStream, rooms: readonly string[]): void {
    const member = this.members.get(stream.id);
    const mine = this.roomsById.get(stream.id);
    if (member === undefined || mine === undefined) return;
    for (const room of rooms) {
      mine.add(room);
      let set = this.byRoom.get(room);
      if (set === undefined) this.byRoom.set(room, (set = new Set()));
      set.add(member);
    }
    void this.adapter.addAll(stream.id, new Set(rooms));
  }

  leave(stream: SseStream, room: string): void {
    const member = this.members.get(stream.id);
    if (member === undefined) return;
    this.roomsById.get(stream.id)?.delete(room);
    this.forget(room, member);
    // the adapter's own del(id, room) is not typed here: rejoin the rest instead
    this.adapter.delAll(stream.id);
    void this.adapter.addAll(stream.id, new Set(this.roomsById.get(stream.id)));
  }

  /** The one place a broadcast packet becomes an SSE event, formatted once per packet. */
  send(stream: SseStream, packet: Packet): void {
    if (packet !== this.lastPacket) {
      this.lastPacket = packet;
      this.lastFrame = frameOf(packet);
    }
    if (this.lastFrame !== null) stream.deliver(this.lastFrame.frame, this.lastFrame.id);
  }

  /**
   * Ends every stream: EventSource reconnects with Last-Event-ID and gets what it missed from
   * the store (after a Redis outage that may have lost live emits to them).
   */
  reconnectAll(why: string): void {
    if (this.members.size === 0) return;
    this.log.info(`${why}: ending ${this.members.size} SSE streams so they resume from their last event id, over the next ${RECONNECT_SPREAD_MS / 1000} s`);
    // every stream of every node ends at once here: each is told to come back at a random time
    // within the spread, so the reconnects (each a store read) do not all come at once
    for (const member of [...this.members.values()]) member.stream.end(1000 + Math.random() * RECONNECT_SPREAD_MS);
  }

  /** Stops the heartbeat and ends every stream; the adapter's apply() is its own again. */
  close(): void {
    clearInterval(this.heartbeat);
    this.adapter.apply = this.original;
    for (const member of [...this.members.values()]) member.stream.end();
    this.lastPacket = null;
    this.lastFrame = null;
  }

  private forget(room: string, member: AdapterMember): void {
    const set = this.byRoom.get(room);
    if (set === undefined) return;
    set.delete(member);
    if (set.size === 0) this.byRoom.delete(room);
  }

  /** Calls back with each stream the broadcast reaches (each once), as apply() does for sockets. */
  private applyToStreams(opts: ApplyOptions, callback: (member: unknown) => void): void {
    let except: Set<AdapterMember> | null = null;
    for (const room of opts.except ?? []) {
      for (const member of this.byRoom.get(room) ?? []) (except ??= new Set()).add(member);
      const member = this.members.get(room); // a member's own id is a room in the adapter
      if (member !== undefined) (except ??= new Set()).add(member);
    }
    if (opts.rooms.size === 0) {
      for (const member of this.members.values()) if (!except?.has(member)) callback(member);
      return;
    }
    const seen = opts.rooms.size > 1 ? new Set<AdapterMember>() : null;
    for (const room of opts.rooms) {
      const set = this.byRoom.get(room);
      if (set === undefined) continue;
      for (const member of set) {
        if (except?.has(member) || seen?.has(member)) continue;
        seen?.add(member);
        callback(member);
      }
    }
  }
}

/**
 * A broadcast packet as an SSE event: `[event, data, meta?]`. Legacy new_msg and the online
 * count carry no meta. Null for what SSE does not carry (binary).
 *
 * Only a kept message (`meta.stored`) gets an `id:`. EventSource keeps the last id it was sent
 * (an event without one leaves it as it was) and sends it as Last-Event-ID when it reconnects:
 * that is the stream's ack of the kept messages up to it (Delivery.resume), which only works
 * with an id the store holds. A topic, broadcast or client message with an id would move it off
 * the kept ones, and anyone sending to the stream's topics could keep them from ever being acked.
 *
 * A client message (`meta.client`) has no second argument on SSE to carry its sender: it goes
 * as SSE_CLIENT_MESSAGE_EVENT, a name no push may take, with `{data, meta}` (the socket's meta
 * as it is), so it never looks like a push of the backend's on `message`.
 */
function frameOf(packet: Packet): { frame: string; id: string | undefined } | null {
  if (packet.type !== EVENT || !Array.isArray(packet.data)) return null;
  const [event, data, meta] = packet.data as unknown[];
  if (typeof event !== 'string') return null;
  const m = typeof meta === 'object' && meta !== null ? (meta as Partial<Record<keyof MessageMeta, unknown>>) : undefined;
  if (m?.client === true) {
    const frame = formatEvent(SSE_CLIENT_MESSAGE_EVENT, { data, meta });
    return frame === null ? null : { frame, id: undefined };
  }
  const id = m?.stored === true && typeof m.id === 'string' ? m.id : undefined;
  const frame = formatEvent(event, data, id);
  return frame === null ? null : { frame, id };
}
