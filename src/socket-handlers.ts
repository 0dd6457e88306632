// What a socket may do: `login` (join the uid's room, count the page, get stored messages),
// `subscribe` / `unsubscribe` topics, and on disconnect give the page back.
// PROTOCOL.md "Client events" for the legacy part.
import type { Delivery } from './delivery.ts';
import type { LoginReply, PushIo, PushSocket, SocketError, SubscribeReply } from './events.ts';
import type { Logger } from './log.ts';
import { describeIssue, topicRoom, topicSchema, uidSchema, userRoom } from './names.ts';
import { formatOnlineCount } from './online-count.ts';
import type { Presence } from './presence.ts';

const TOPIC_PREFIX = topicRoom('');

/** The uid from a `login` argument: a uid, or `{uid}` holding one. */
export function parseUid(raw: unknown): string | SocketError {
  const value = typeof raw === 'object' && raw !== null && 'uid' in raw ? (raw as { uid: unknown }).uid : raw;
  const parsed = uidSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  return { code: 'invalid_uid', message: `uid ${describeIssue(parsed.error).message}` };
}

/** One topic or a list of them, each valid; at most `max` in one call. */
function parseTopics(raw: unknown, max: number): string[] | SocketError {
  const list = Array.isArray(raw) ? raw : [raw];
  if (list.length === 0 || list.length > max) {
    return { code: 'invalid_topic', message: `give 1 to ${max} topics` };
  }
  const topics: string[] = [];
  for (const item of list) {
    const parsed = topicSchema.safeParse(item);
    if (!parsed.success) return { code: 'invalid_topic', message: `topic ${describeIssue(parsed.error).message}` };
    topics.push(parsed.data);
  }
  return topics;
}

function topicsOf(socket: PushSocket): string[] {
  const topics: string[] = [];
  for (const room of socket.rooms) if (room.startsWith(TOPIC_PREFIX)) topics.push(room.slice(TOPIC_PREFIX.length));
  return topics;
}

type Ack<T> = ((reply: T) => void) | undefined;

function ackOf<T>(ack: unknown): Ack<T> {
  return typeof ack === 'function' ? (ack as (reply: T) => void) : undefined;
}

export interface SocketHandlerOptions {
  presence: Presence;
  delivery: Delivery;
  /** Topics one socket may be subscribed to at once. */
  maxTopicsPerSocket: number;
  log: Logger;
}

export function registerSocketHandlers(io: PushIo, options: SocketHandlerOptions): void {
  const { presence, delivery, maxTopicsPerSocket, log } = options;

  io.on('connection', (socket) => {
    socket.on('login', (raw, ack) => {
      login(socket, raw, ackOf<LoginReply>(ack)).catch((err: unknown) => log.error('login failed', err));
    });
    socket.on('subscribe', (raw, ack) => subscribe(socket, raw, ackOf<SubscribeReply>(ack), true));
    socket.on('unsubscribe', (raw, ack) => subscribe(socket, raw, ackOf<SubscribeReply>(ack), false));
    socket.on('disconnect', () => {
      const uid = socket.data.uid;
      if (uid === undefined) return;
      presence.removePage(uid, socket.id).catch((err: unknown) => log.error('logout failed', err));
    });
  });

  async function login(socket: PushSocket, raw: unknown, ack: Ack<LoginReply>): Promise<void> {
    if (socket.data.uid !== undefined) {
      // PROTOCOL.md: a second login on the same socket is ignored. Only an ack is told.
      ack?.({
        ok: false,
        error: { code: 'already_logged_in', message: `already logged in as ${socket.data.uid}` },
      });
      return;
    }
    const uid = parseUid(raw);
    if (typeof uid !== 'string') {
      if (ack) ack({ ok: false, error: uid });
      else socket.emit('login_error', uid);
      return;
    }
    // Set before the first await, so a disconnect that comes meanwhile gives the page back.
    socket.data.uid = uid;
    socket.join(userRoom(uid));
    await presence.addPage(uid, socket.id);
    const counts = await presence.counts();
    socket.emit('update_online_count', formatOnlineCount(counts));
    const pending = await delivery.redeliver(socket, uid);
    ack?.({ ok: true, uid, pending });
  }

  function subscribe(socket: PushSocket, raw: unknown, ack: Ack<SubscribeReply>, join: boolean): void {
    const topics = parseTopics(raw, maxTopicsPerSocket);
    if (!Array.isArray(topics)) {
      ack?.({ ok: false, error: topics });
      return;
    }
    if (join) {
      const now = new Set(topicsOf(socket));
      const after = new Set([...now, ...topics]);
      if (after.size > maxTopicsPerSocket) {
        ack?.({
          ok: false,
          error: { code: 'too_many_topics', message: `at most ${maxTopicsPerSocket} topics per connection` },
        });
        return;
      }
      socket.join(topics.map(topicRoom));
    } else {
      for (const topic of topics) socket.leave(topicRoom(topic));
    }
    ack?.({ ok: true, topics: topicsOf(socket) });
  }
}
