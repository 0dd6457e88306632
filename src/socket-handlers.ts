// What a socket may do: `login` (join the uid's room, count the page, get stored messages),
// `subscribe` / `unsubscribe` topics, and on disconnect give the page back.
// docs/protocol.md §3 for the legacy part, §6 for v1.
import type { CatchUp } from './catch-up.ts';
import type { Delivery, RedeliveryWindow } from './delivery.ts';
import { publish, type ClientMessage } from './client-publish.ts';
import type { LoginReply, PublishReply, PushIo, PushSocket, SocketError, SubscribeReply } from './events.ts';
import type { Logger } from './log.ts';
import { PRIVATE_TOPIC_PREFIX, type LoginVerifier } from './login-auth.ts';
import { describeIssue, topicRoom, topicSchema, uidSchema, userRoom } from './names.ts';
import { formatOnlineCount } from './online-count.ts';
import type { Presence } from './presence.ts';
import { RateLimiter } from './rate-limit.ts';

const TOPIC_PREFIX = topicRoom('');

/** What a `login` argument holds: a uid, or `{uid, token}`. */
export function parseLogin(raw: unknown): { uid: string; token: unknown } | SocketError {
  const isObject = typeof raw === 'object' && raw !== null && 'uid' in raw;
  const value = isObject ? (raw as { uid: unknown }).uid : raw;
  const parsed = uidSchema.safeParse(value);
  if (!parsed.success) return { code: 'invalid_uid', message: `uid ${describeIssue(parsed.error).message}` };
  return { uid: parsed.data, token: isObject ? (raw as { token?: unknown }).token : undefined };
}

/** A topic to subscribe to, with the tokens given for it. */
interface TopicRequest {
  topic: string;
  /** Proves the right to subscribe to a private- topic. */
  token: unknown;
  /** Proves the right to publish to it (LOGIN_SECRET and CLIENT_PUBLISH_TOPICS). */
  publishToken: unknown;
}

/** One topic or a list of them, each a name or `{topic, token, publishToken}`; at most `max` in one call. */
function parseTopics(raw: unknown, max: number): TopicRequest[] | SocketError {
  const list = Array.isArray(raw) ? raw : [raw];
  if (list.length === 0 || list.length > max) {
    return { code: 'invalid_topic', message: `give 1 to ${max} topics` };
  }
  const topics: TopicRequest[] = [];
  for (const item of list) {
    const isObject = typeof item === 'object' && item !== null && 'topic' in item;
    const parsed = topicSchema.safeParse(isObject ? (item as { topic: unknown }).topic : item);
    if (!parsed.success) return { code: 'invalid_topic', message: `topic ${describeIssue(parsed.error).message}` };
    const tokens = isObject ? (item as { token?: unknown; publishToken?: unknown }) : {};
    topics.push({ topic: parsed.data, token: tokens.token, publishToken: tokens.publishToken });
  }
  return topics;
}

/** A token the client gave when it connected: `auth.token` (4.x) or `?token=` (2.x). */
function handshakeToken(socket: PushSocket): unknown {
  const auth = socket.handshake.auth as { token?: unknown } | undefined;
  return auth?.token ?? socket.handshake.query.token;
}

function topicsOf(socket: PushSocket): string[] {
  const topics: string[] = [];
  for (const room of socket.rooms) if (room.startsWith(TOPIC_PREFIX)) topics.push(room.slice(TOPIC_PREFIX.length));
  return topics;
}

type Ack<T> = ((reply: T) => void) | undefined;

/** What a client is told when the server failed it: no detail, which stays in the log. */
function serverFailure(event: string): SocketError {
  return { code: 'unavailable', message: `the server could not complete the ${event}; try again` };
}

function reasonOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function ackOf<T>(ack: unknown): Ack<T> {
  return typeof ack === 'function' ? (ack as (reply: T) => void) : undefined;
}

/** Told what sockets do: metrics count logins, webhooks announce first and last pages. */
export interface SocketObserver {
  /** refused: the client's fault (bad uid, token); failed: the server's (undone, try again). */
  login(result: 'ok' | 'refused' | 'failed'): void;
  /** The uid's first page anywhere (cluster-wide with a shared presence). */
  firstPage(uid: string): void;
  /** The uid's last page anywhere is gone. */
  lastPage(uid: string): void;
}

export interface SocketHandlerOptions {
  presence: Presence;
  observer: SocketObserver;
  delivery: Delivery;
  /** Sends a login's stored messages later when the store cannot be read at the login. */
  catchUp: CatchUp;
  /** Checks login and private-topic tokens; null: any uid may log in, private topics refused. */
  verifier: LoginVerifier | null;
  /** Topics one socket may be subscribed to at once. */
  maxTopicsPerSocket: number;
  /** Events one socket may send a second; bursts up to twice that. */
  eventsPerSecond: number;
  /** Stored messages unacked at once on one socket during its login's redelivery. */
  redeliveryWindow: RedeliveryWindow;
  /** The client address a socket counts under (its share of MAX_REDELIVERY_BYTES). */
  addressOf(socket: PushSocket): string;
  /** Longest a login may wait on presence and the store before it is undone, ms. */
  loginTimeoutMs: number;
  /** Client messages in topics (CLIENT_PUBLISH_TOPICS); `allowed` matches nothing when off. */
  clientPublish: {
    allowed: (topic: string) => boolean;
    maxBytes: number;
    /** CLIENT_PUBLISH_PER_SECOND's limits (client-publish.ts). */
    rates: { limit(uid: string, topic: string): number };
    /** Told of each message sent (the client.message webhook). */
    published?: (uid: string, id: string, message: ClientMessage) => void;
  };
  log: Logger;
}

export function registerSocketHandlers(io: PushIo, options: SocketHandlerOptions): void {
  const { presence, observer, delivery, catchUp, verifier, maxTopicsPerSocket, eventsPerSecond, redeliveryWindow, addressOf, loginTimeoutMs, clientPublish, log } =
    options;
  const publishing = {
    allowed: clientPublish.allowed,
    maxBytes: clientPublish.maxBytes,
    verifier,
    limit: (uid: string, topic: string) => clientPublish.rates.limit(uid, topic),
    send: (socket: PushSocket, uid: string, message: ClientMessage) => {
      const id = delivery.clientMessage(socket, uid, message);
      clientPublish.published?.(uid, id, message);
      return id;
    },
  };
  const limiter = new RateLimiter<string>(eventsPerSecond, 2 * eventsPerSecond);
  /** Sockets whose login waits on its token check: a second login then is a second login. */
  const verifying = new WeakSet<PushSocket>();

  io.on('connection', (socket) => {
    // over the rate, an event is refused: answered through its ack, else a request_error
    socket.use((packet, next) => {
      if (limiter.take(socket.id) === 0) return next();
      const error: SocketError = { code: 'rate_limited', message: `more than ${eventsPerSecond} events a second` };
      const ack = packet[packet.length - 1];
      if (typeof ack === 'function') (ack as (reply: unknown) => void)({ ok: false, error });
      else socket.emit('request_error', { ...error, event: String(packet[0]) });
    });

    // login() answers its own failures; subscribe's are answered here (it changes nothing
    // before its last, synchronous step, so there is nothing to undo)
    socket.on('login', (raw, ack) => {
      login(socket, raw, ackOf<LoginReply>(ack)).catch((err: unknown) => log.error('login failed', err));
    });
    for (const [event, join] of [['subscribe', true], ['unsubscribe', false]] as const) {
      socket.on(event, (raw, ack) => {
        const answer = ackOf<SubscribeReply>(ack);
        subscribe(socket, raw, answer, join).catch((err: unknown) => {
          log.warn(`${event} failed: ${reasonOf(err)}`);
          const error = serverFailure(event);
          if (answer) answer({ ok: false, error });
          else socket.emit('request_error', { ...error, event });
        });
      });
    }
    socket.on('publish', (raw, ack) => {
      const answer = ackOf<PublishReply>(ack);
      const reply = publish(socket, raw, publishing);
      if (answer) answer(reply);
      else if (!reply.ok) socket.emit('request_error', { ...reply.error, event: 'publish' });
    });
    socket.on('disconnect', () => {
      limiter.forget(socket.id);
      const uid = socket.data.uid;
      if (uid === undefined) return;
      presence.removePage(uid).then(
        (last) => last && observer.lastPage(uid),
        (err: unknown) => log.error('logout failed', err),
      );
    });
  });

  async function login(socket: PushSocket, raw: unknown, ack: Ack<LoginReply>): Promise<void> {
    if (socket.data.uid !== undefined || verifying.has(socket)) {
      // docs/protocol.md §3: a second login on the same socket is ignored. Only an ack is told.
      ack?.({
        ok: false,
        error: { code: 'already_logged_in', message: `already logged in as ${socket.data.uid ?? '(pending)'}` },
      });
      return;
    }
    const answerError = (error: SocketError) => {
      if (ack) ack({ ok: false, error });
      else socket.emit('login_error', error);
    };
    const refuse = (error: SocketError) => {
      observer.login('refused');
      answerError(error);
    };
    const parsed = parseLogin(raw);
    if ('code' in parsed) return refuse(parsed);
    const { uid } = parsed;
    if (verifier) {
      verifying.add(socket);
      let problem: SocketError | null;
      try {
        problem = await verifier.verify(uid, parsed.token ?? handshakeToken(socket));
      } catch (err) {
        log.warn(`login failed: the token could not be checked (${reasonOf(err)})`);
        observer.login('failed');
        return answerError(serverFailure('login'));
      } finally {
        verifying.delete(socket);
      }
      if (problem) return refuse(problem);
      if (socket.disconnected) return;
    }

    // Every step from here is undone when one fails or the whole does not finish within
    // loginTimeoutMs (a presence or store that stopped answering): the socket leaves the room,
    // forgets its uid (so it may log in again) and its page is given back once counted.
    let counted: Promise<boolean> | null = null;
    let answered = false;
    let firstReported = false;
    const fail = (why: string) => {
      if (answered) return;
      answered = true;
      clearTimeout(deadline);
      log.warn(`login failed and was undone: ${why}`);
      if (socket.data.uid === uid) {
        socket.data.uid = undefined;
        socket.leave(userRoom(uid));
      }
      // a disconnect before this gave the page back itself; a failed addPage counted nothing
      if (counted && !socket.disconnected) {
        counted
          .then(
            () => presence.removePage(uid).then((last) => last && firstReported && observer.lastPage(uid)),
            () => {},
          )
          .catch((err: unknown) => log.error('giving back the page of a failed login failed', err));
      }
      observer.login('failed');
      answerError(serverFailure('login'));
    };
    const deadline = setTimeout(() => fail(`no answer from presence or the store within ${loginTimeoutMs} ms`), loginTimeoutMs);
    try {
      // Set before the first await, so a disconnect that comes meanwhile gives the page back.
      socket.data.uid = uid;
      socket.join(userRoom(uid));
      counted = presence.addPage(uid);
      const first = await counted;
      if (answered) return;
      if (first) {
        firstReported = true;
        observer.firstPage(uid);
      }
      const counts = await presence.counts();
      if (answered) return;
      socket.emit('update_online_count', formatOnlineCount(counts));
      // a store that cannot be read now: the login works (live pushes reach the page) and its
      // stored messages follow once the store answers, without another login
      const owe = (err: unknown) => {
        log.warn(`stored messages for a login could not be read: ${reasonOf(err)}; sent once the store answers`);
        catchUp.owe(socket);
      };
      const pending = await delivery.redeliver(socket, uid, { window: redeliveryWindow, address: addressOf(socket), failed: owe }).catch((err: unknown) => {
        owe(err);
        return 0;
      });
      if (answered) return;
      answered = true;
      clearTimeout(deadline);
      observer.login('ok');
      ack?.({ ok: true, uid, pending });
    } catch (err) {
      fail(reasonOf(err));
    }
  }

  async function subscribe(socket: PushSocket, raw: unknown, ack: Ack<SubscribeReply>, join: boolean): Promise<void> {
    const refuse = (error: SocketError) => {
      if (ack) ack({ ok: false, error });
      else socket.emit('request_error', { ...error, event: join ? 'subscribe' : 'unsubscribe' });
    };
    const parsed = parseTopics(raw, maxTopicsPerSocket);
    if (!Array.isArray(parsed)) return refuse(parsed);
    const topics = parsed.map((t) => t.topic);
    if (join) {
      const publishRights: string[] = [];
      for (const { topic, token, publishToken } of parsed) {
        if (verifier && publishToken !== undefined) {
          // a publish right is proved once here, not on every message
          const problem = await verifier.verifyPublish(topic, publishToken);
          if (problem) return refuse({ ...problem, message: `${topic}: publishToken: ${problem.message}` });
          publishRights.push(topic);
        }
        if (!topic.startsWith(PRIVATE_TOPIC_PREFIX)) continue;
        if (!verifier) return refuse({ code: 'unauthorized', message: 'private topics need LOGIN_SECRET on the server' });
        const problem = await verifier.verifyTopic(topic, token);
        if (problem) return refuse({ ...problem, message: `${topic}: ${problem.message}` });
      }
      const now = new Set(topicsOf(socket));
      const after = new Set([...now, ...topics]);
      if (after.size > maxTopicsPerSocket) {
        return refuse({ code: 'too_many_topics', message: `at most ${maxTopicsPerSocket} topics per connection` });
      }
      socket.join(topics.map(topicRoom));
      if (publishRights.length > 0) {
        socket.data.publishRights ??= new Set();
        for (const topic of publishRights) socket.data.publishRights.add(topic);
      }
    } else {
      for (const topic of topics) {
        socket.leave(topicRoom(topic));
        socket.data.publishRights?.delete(topic);
      }
    }
    ack?.({ ok: true, topics: topicsOf(socket) });
  }
}
