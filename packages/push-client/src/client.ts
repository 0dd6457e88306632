// The SDK's core: connect, login (with a token that can be refreshed), subscribe (private
// topics with their tokens), and on(event, handler) with automatic ack and de-duplication by
// message id. It drives a socket.io-client 4.x socket that the entry point provides: the ESM
// entry (index.ts) imports socket.io-client, the plain script (global.ts) takes the page's `io`.
import { PRIVATE_TOPIC_PREFIX, type LoginReply, type MessageMeta, type PublishReply, type SocketError, type SubscribeReply } from './protocol.js';

/** The part of a socket.io-client socket the SDK uses. */
export interface IoSocket {
  connected: boolean;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  emit(event: string, ...args: unknown[]): unknown;
  connect(): unknown;
  disconnect(): unknown;
}

/** socket.io-client's `io`, or anything that makes a socket the same way. */
export type IoFactory = (url: string, options: { transports?: ('polling' | 'websocket')[] }) => IoSocket;

export type Status = 'connecting' | 'connected' | 'disconnected';

/** `meta` is undefined for legacy pushes (new_msg from the ?type=publish API) and server events. */
export type Handler = (data: unknown, meta: MessageMeta | undefined) => void | Promise<void>;

/** A token, or a promise of one (from your backend). */
export type TokenResult = string | Promise<string>;

/** The tokens of one topic. */
export interface TopicTokens {
  /** Needed for a `private-` topic: your backend makes it with the topic key (docs/protocol.md). */
  token?: string;
  /** Lets this page publish to the topic when the server has LOGIN_SECRET (CLIENT_PUBLISH_TOPICS). */
  publishToken?: string;
}

/** A topic with its tokens. */
export interface TopicSpec extends TopicTokens {
  topic: string;
}

/** What went wrong where no reply reports it (a re-subscribe after a reconnect, a token callback). */
export interface PushClientError {
  /** The request that failed. */
  request: 'login' | 'subscribe';
  error: SocketError;
}

export interface PushClientOptions {
  /** Logs in as this uid now and again after every reconnect. */
  uid?: string | number;
  /**
   * The login token, when the server has LOGIN_SECRET: hex HMAC-SHA256 of the uid, or a JWT
   * (HS256, `sub` = uid, `exp`), made by your backend. Kept for reconnects.
   */
  token?: string;
  /**
   * Gets a login token from your backend: called at the first login when `token` is not given,
   * and whenever the server answers a login with `token_expired` (then the login is sent once
   * more with the new token). The token is kept for reconnects until it expires.
   */
  getToken?: () => TokenResult;
  /** Tokens of `private-` topics, by topic name; `subscribe(topic, {token})` adds to them. */
  topicTokens?: Record<string, string>;
  /**
   * Gets the token of a `private-` topic: called when one is subscribed to without a token, and
   * when the server answers a subscribe with `token_expired` (then it is sent once more).
   */
  getTopicToken?: (topic: string) => TokenResult;
  /** socket.io-client transports, e.g. ['websocket']. */
  transports?: ('polling' | 'websocket')[];
  /** How many message ids are remembered to drop duplicates. @default 1000 */
  rememberIds?: number;
}

/** The core's options: the entry point supplies `io`. */
export interface CoreOptions extends PushClientOptions {
  io: IoFactory;
}

function isMeta(value: unknown): value is MessageMeta {
  return typeof value === 'object' && value !== null && typeof (value as MessageMeta).id === 'string';
}

/** A token callback that threw or rejected: reported as the request's error. */
class TokenFailure extends Error {
  constructor(readonly error: SocketError) {
    super(error.message);
  }
}

async function callToken(what: string, get: () => TokenResult): Promise<string> {
  let token: unknown;
  try {
    token = await get();
  } catch (err) {
    throw new TokenFailure({ code: 'unauthorized', message: `${what} failed: ${err instanceof Error ? err.message : String(err)}` });
  }
  if (typeof token !== 'string' || token === '') {
    throw new TokenFailure({ code: 'unauthorized', message: `${what} gave no token (a non-empty string is needed)` });
  }
  return token;
}

/** A JWT (header.payload.signature), the one kind of token that expires. */
function isJwt(token: string): boolean {
  return token.split('.').length === 3;
}

function expired(reply: { ok: boolean; error?: SocketError }): boolean {
  return !reply.ok && reply.error?.code === 'token_expired';
}

export class PushClientCore {
  private readonly socket: IoSocket;
  private uid: string | undefined;
  private loginToken: string | undefined;
  private readonly getToken: (() => TokenResult) | undefined;
  private readonly getTopicToken: ((topic: string) => TokenResult) | undefined;
  /** Tokens given for topics (option or subscribe), kept for later subscribes and reconnects. */
  private readonly topicTokens = new Map<string, TopicTokens>();
  /** Topics subscribed, to subscribe again after a reconnect. */
  private readonly topics = new Set<string>();
  private readonly handlers = new Map<string, Set<Handler>>();
  private readonly seenIds = new Map<string, true>();
  private readonly statusListeners = new Set<(status: Status, detail?: LoginReply) => void>();
  private readonly errorListeners = new Set<(problem: PushClientError) => void>();
  private readonly loginWaiters: ((reply: LoginReply) => void)[] = [];
  private readonly rememberIds: number;
  /** Counts connections: work started for one that has ended is dropped. */
  private connection = 0;

  constructor(url: string, options: CoreOptions) {
    this.rememberIds = options.rememberIds ?? 1000;
    this.uid = options.uid === undefined ? undefined : String(options.uid);
    this.loginToken = options.token;
    this.getToken = options.getToken;
    this.getTopicToken = options.getTopicToken;
    for (const [topic, token] of Object.entries(options.topicTokens ?? {})) this.topicTokens.set(topic, { token });
    this.socket = options.io(url, options.transports ? { transports: options.transports } : {});
    this.socket.on('connect', () => void this.onConnect());
    this.socket.on('disconnect', () => this.setStatus('disconnected'));
  }

  /**
   * Logs in (now, or as soon as connected) and again after every reconnect. `token` replaces
   * the login token (see the `token` option).
   */
  login(uid: string | number, options: { token?: string } = {}): Promise<LoginReply> {
    this.uid = String(uid);
    if (options.token !== undefined) this.loginToken = options.token;
    const reply = new Promise<LoginReply>((resolve) => this.loginWaiters.push(resolve));
    if (this.socket.connected) void this.relogin(this.connection);
    return reply;
  }

  /**
   * Subscribes to topics, kept across reconnects. A topic is a name or `{topic, token,
   * publishToken}`; `tokens` gives the tokens of a single topic. A `private-` topic without a
   * token gets one from `getTopicToken` or the `topicTokens` option.
   */
  async subscribe(topics: string | TopicSpec | (string | TopicSpec)[], tokens?: TopicTokens): Promise<SubscribeReply> {
    const list = (Array.isArray(topics) ? topics : [topics]).map((t) => (typeof t === 'string' ? { topic: t } : t));
    if (tokens && list.length !== 1) throw new TypeError('subscribe(topics, tokens): tokens are for one topic; give a list as [{topic, token}]');
    for (const { topic, ...given } of list) {
      const merged = { ...this.topicTokens.get(topic), ...given, ...tokens };
      if (merged.token !== undefined || merged.publishToken !== undefined) this.topicTokens.set(topic, merged);
    }
    const names = list.map((t) => t.topic);
    try {
      const reply = await this.subscribeWithTokens(names, this.connection);
      if (reply.ok) for (const t of names) this.topics.add(t);
      return reply;
    } catch (err) {
      if (err instanceof TokenFailure) return { ok: false, error: err.error };
      throw err;
    }
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

  /**
   * Told of failures no reply carries: a topic that could not be subscribed again after a
   * reconnect, a token callback that failed, a refused login (also in onStatus).
   */
  onError(listener: (problem: PushClientError) => void): () => void {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
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
    this.errorListeners.clear();
    this.socket.disconnect();
  }

  private async onConnect(): Promise<void> {
    const connection = ++this.connection;
    this.setStatus('connected');
    const topics = [...this.topics];
    let subscribed: Promise<SubscribeReply> | null = null;
    let loggedIn: Promise<LoginReply> | null = null;
    try {
      // tokens first, then both requests at once: the server handles packets in order, so
      // the login reply means the topics are back too
      const [specs, token] = await Promise.all([
        this.topicSpecs(topics, false),
        this.uid === undefined ? undefined : this.currentLoginToken(false),
      ]);
      if (connection !== this.connection) return;
      if (topics.length > 0) subscribed = this.request<SubscribeReply>('subscribe', specs);
      if (this.uid !== undefined) loggedIn = this.request<LoginReply>('login', this.loginArgument(this.uid, token));
    } catch (err) {
      if (!(err instanceof TokenFailure)) throw err;
      if (this.uid !== undefined) this.loginDone({ ok: false, error: err.error });
      else this.report('subscribe', err.error);
      return;
    }
    if (subscribed) {
      try {
        let reply = await subscribed;
        if (expired(reply) && this.getTopicToken && connection === this.connection) {
          reply = await this.request<SubscribeReply>('subscribe', await this.topicSpecs(topics, true));
        }
        if (!reply.ok) this.report('subscribe', reply.error);
      } catch (err) {
        if (!(err instanceof TokenFailure)) throw err;
        this.report('subscribe', err.error);
      }
    }
    if (loggedIn) {
      const reply = await loggedIn;
      if (expired(reply) && this.getToken) await this.relogin(connection, true);
      else this.loginDone(reply);
    }
  }

  /** Sends the login, asking for a new token when `fresh` or when the server says the one sent expired. */
  private async relogin(connection: number, fresh = false): Promise<void> {
    const uid = this.uid;
    if (uid === undefined) return;
    try {
      let reply = await this.request<LoginReply>('login', this.loginArgument(uid, await this.currentLoginToken(fresh)));
      if (expired(reply) && this.getToken && !fresh && connection === this.connection) {
        reply = await this.request<LoginReply>('login', this.loginArgument(uid, await this.currentLoginToken(true)));
      }
      this.loginDone(reply);
    } catch (err) {
      if (!(err instanceof TokenFailure)) throw err;
      this.loginDone({ ok: false, error: err.error });
    }
  }

  /** The login token to send: the one kept, or (none kept, or `fresh`) one from getToken. */
  private async currentLoginToken(fresh: boolean): Promise<string | undefined> {
    if (this.getToken && (fresh || this.loginToken === undefined)) this.loginToken = await callToken('getToken', this.getToken);
    return this.loginToken;
  }

  private loginArgument(uid: string, token: string | undefined): string | { uid: string; token: string } {
    return token === undefined ? uid : { uid, token };
  }

  private loginDone(reply: LoginReply): void {
    for (const resolve of this.loginWaiters.splice(0)) resolve(reply);
    if (!reply.ok) this.report('login', reply.error);
    this.setStatus('connected', reply);
  }

  /** Subscribes `topics` with their tokens; once more with new ones if a token expired. */
  private async subscribeWithTokens(topics: string[], connection: number): Promise<SubscribeReply> {
    const reply = await this.request<SubscribeReply>('subscribe', await this.topicSpecs(topics, false));
    if (!expired(reply) || !this.getTopicToken || connection !== this.connection) return reply;
    return this.request<SubscribeReply>('subscribe', await this.topicSpecs(topics, true));
  }

  /**
   * What to send for `topics`: a name, or `{topic, token, publishToken}`. A private topic
   * without a token gets one from getTopicToken; when `fresh` (the server said a token
   * expired), so does every private topic holding a JWT: an HMAC token never expires.
   */
  private async topicSpecs(topics: string[], fresh: boolean): Promise<(string | TopicSpec)[]> {
    return Promise.all(
      topics.map(async (topic) => {
        const tokens = { ...this.topicTokens.get(topic) };
        const getTopicToken = this.getTopicToken;
        if (getTopicToken && topic.startsWith(PRIVATE_TOPIC_PREFIX) && (tokens.token === undefined || (fresh && isJwt(tokens.token)))) {
          tokens.token = await callToken(`getTopicToken(${topic})`, () => getTopicToken(topic));
          this.topicTokens.set(topic, tokens);
        }
        return tokens.token === undefined && tokens.publishToken === undefined ? topic : { topic, ...tokens };
      }),
    );
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

  private report(request: PushClientError['request'], error: SocketError): void {
    for (const listener of this.errorListeners) listener({ request, error });
  }

  private setStatus(status: Status, detail?: LoginReply): void {
    for (const listener of this.statusListeners) listener(status, detail);
  }
}
