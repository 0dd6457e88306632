// The page-side SDK: connect, login, subscribe, and on(event, handler) with automatic ack and
// de-duplication by message id. Built to a plain script (global `PushClient`) served by the
// demo web server at /push-client.js; it drives the socket.io-client 4.x that the Socket.IO
// server serves at /socket.io/socket.io.js.
import type { LoginReply, MessageMeta, PublishReply, SubscribeReply } from '../../src/events.ts';

/** The part of a socket.io-client socket the SDK uses. */
interface IoSocket {
  connected: boolean;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  emit(event: string, ...args: unknown[]): unknown;
  connect(): unknown;
  disconnect(): unknown;
}

type IoFactory = (url: string, options?: Record<string, unknown>) => IoSocket;

export type Status = 'connecting' | 'connected' | 'disconnected';

/** `meta` is undefined for legacy pushes (new_msg from the ?type=publish API) and server events. */
export type Handler = (data: unknown, meta: MessageMeta | undefined) => void | Promise<void>;

export interface PushClientOptions {
  /** Logs in as this uid now and again after every reconnect. */
  uid?: string | number;
  /** The socket.io-client `io` function; default the page's global `io`. */
  io?: IoFactory;
  /** socket.io-client transports, e.g. ['websocket']. */
  transports?: ('polling' | 'websocket')[];
  /** How many message ids are remembered to drop duplicates. @default 1000 */
  rememberIds?: number;
}

function isMeta(value: unknown): value is MessageMeta {
  return typeof value === 'object' && value !== null && typeof (value as MessageMeta).id === 'string';
}

export class PushClient {
  private readonly socket: IoSocket;
  private uid: string | undefined;
  private readonly topics = new Set<string>();
  private readonly handlers = new Map<string, Set<Handler>>();
  private readonly seenIds = new Map<string, true>();
  private readonly statusListeners = new Set<(status: Status, detail?: LoginReply) => void>();
  private readonly loginWaiters: ((reply: LoginReply) => void)[] = [];
  private readonly rememberIds: number;

  constructor(url: string, options: PushClientOptions = {}) {
    const io = options.io ?? (globalThis as { io?: IoFactory }).io;
    if (!io) throw new Error('PushClient needs socket.io-client: load /socket.io/socket.io.js first');
    this.rememberIds = options.rememberIds ?? 1000;
    this.uid = options.uid === undefined ? undefined : String(options.uid);
    this.socket = io(url, options.transports ? { transports: options.transports } : {});
    this.socket.on('connect', () => this.onConnect());
    this.socket.on('disconnect', () => this.setStatus('disconnected'));
  }

  /** Logs in (now, or as soon as connected) and again after every reconnect. */
  login(uid: string | number): Promise<LoginReply> {
    this.uid = String(uid);
    const reply = new Promise<LoginReply>((resolve) => this.loginWaiters.push(resolve));
    if (this.socket.connected) this.sendLogin();
    return reply;
  }

  /** Subscribes to topics, kept across reconnects. */
  subscribe(topics: string | string[]): Promise<SubscribeReply> {
    const list = Array.isArray(topics) ? topics : [topics];
    return this.request<SubscribeReply>('subscribe', list).then((reply) => {
      if (reply.ok) for (const t of list) this.topics.add(t);
      return reply;
    });
  }

  /**
   * Sends `data` to the other subscribers of `topic` (the server must allow it with
   * CLIENT_PUBLISH_TOPICS); they get it as `message` with meta {uid, client: true}. `echo`
   * sends it back to this page too.
   */
  publish(topic: string, data: unknown, options: { echo?: boolean } = {}): Promise<PublishReply> {
    return this.request<PublishReply>('publish', { topic, data, ...(options.echo ? { echo: true } : {}) });
  }

  unsubscribe(topics: string | string[]): Promise<SubscribeReply> {
    const list = Array.isArray(topics) ? topics : [topics];
    for (const t of list) this.topics.delete(t);
    return this.request<SubscribeReply>('unsubscribe', list);
  }

  /**
   * Calls `handler(data, meta)` for each `event`. A message is acked once every handler has
   * returned (or its promise resolved); one that throws is not acked and comes again later.
   * A message whose id was seen already is acked and not handed out again.
   * Returns a function that removes the handler.
   */
  on(event: string, handler: Handler): () => void {
    let set = this.handlers.get(event);
    if (!set) {
      set = new Set();
      this.handlers.set(event, set);
      this.socket.on(event, (data: unknown, meta: unknown, ack: unknown) => {
        void this.dispatch(event, data, meta, typeof ack === 'function' ? (ack as () => void) : undefined);
      });
    }
    set.add(handler);
    return () => set.delete(handler);
  }

  /** Told of every connection change; `detail` is the login reply after a (re)login. */
  onStatus(listener: (status: Status, detail?: LoginReply) => void): () => void {
    this.statusListeners.add(listener);
    listener(this.socket.connected ? 'connected' : 'connecting');
    return () => this.statusListeners.delete(listener);
  }

  /** Goes offline until connect(); the server keeps stored messages meanwhile. */
  disconnect(): void {
    this.socket.disconnect();
  }

  connect(): void {
    this.setStatus('connecting');
    this.socket.connect();
  }

  close(): void {
    this.statusListeners.clear();
    this.socket.disconnect();
  }

  private onConnect(): void {
    this.setStatus('connected');
    // topics first: the server handles packets in order, so the login reply means both are back
    if (this.topics.size > 0) void this.request('subscribe', [...this.topics]);
    if (this.uid !== undefined) this.sendLogin();
  }

  private sendLogin(): void {
    void this.request<LoginReply>('login', this.uid).then((reply) => {
      for (const resolve of this.loginWaiters.splice(0)) resolve(reply);
      this.setStatus('connected', reply);
    });
  }

  private request<T>(event: string, arg: unknown): Promise<T> {
    return new Promise((resolve) => this.socket.emit(event, arg, (reply: T) => resolve(reply)));
  }

  private async dispatch(event: string, data: unknown, rawMeta: unknown, ack: (() => void) | undefined): Promise<void> {
    const meta = isMeta(rawMeta) ? rawMeta : undefined;
    if (meta) {
      if (this.seenIds.has(meta.id)) {
        ack?.(); // delivered before: at least once means it may come twice
        return;
      }
      this.seenIds.set(meta.id, true);
      if (this.seenIds.size > this.rememberIds) this.seenIds.delete(this.seenIds.keys().next().value!);
    }
    try {
      for (const handler of [...(this.handlers.get(event) ?? [])]) await handler(data, meta);
    } catch (err) {
      if (meta) this.seenIds.delete(meta.id); // let it come again
      console.error(`PushClient: a ${event} handler failed; the message is not acked`, err);
      return;
    }
    ack?.();
  }

  private setStatus(status: Status, detail?: LoginReply): void {
    for (const listener of this.statusListeners) listener(status, detail);
  }
}

/** `PushClient.connect(url, {uid})` in a page. */
export function connect(url: string, options: PushClientOptions = {}): PushClient {
  return new PushClient(url, options);
}
