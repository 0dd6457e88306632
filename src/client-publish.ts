// Client messages in topics (opt-in, CLIENT_PUBLISH_TOPICS): a logged-in socket subscribed to a
// topic that matches a pattern sends `publish` {topic, data, echo?}; the topic's other
// subscribers get it as event `message` with meta {id, ts, uid, client: true}. Never on new_msg:
// legacy pages insert that as HTML. docs/protocol.md §6.7.
import { RateLimiter } from './rate-limit.ts';
import { MAX_BODY_DEPTH, jsonNestsDeeperThan } from './api/body.ts';
import type { PublishReply, PushSocket, SocketError } from './events.ts';
import type { LoginVerifier } from './login-auth.ts';
import { describeIssue, topicRoom, topicSchema } from './names.ts';

/** `chat-*` -> /^chat-.*$/: `*` matches any run of characters, everything else itself. */
export function topicMatcher(patterns: readonly string[]): (topic: string) => boolean {
  if (patterns.length === 0) return () => false;
  const source = patterns.map((p) => p.split('*').map((part) => part.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')).join('.*'));
  const re = new RegExp(`^(?:${source.join('|')})$`);
  return (topic) => re.test(topic);
}

/** A message a client may publish, checked. */
export interface ClientMessage {
  topic: string;
  /** The data as it goes out: parsed back from its JSON, so only JSON values (no binary) pass. */
  data: unknown;
  echo: boolean;
}

const FIELDS = new Set(['topic', 'data', 'echo']);

/** Checks a `publish` argument: its shape, topic, and data as JSON within `maxBytes` and MAX_BODY_DEPTH. */
export function parsePublish(raw: unknown, maxBytes: number): ClientMessage | SocketError {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { code: 'invalid_message', message: 'publish takes {topic, data, echo?}' };
  }
  const extra = Object.keys(raw).find((k) => !FIELDS.has(k));
  if (extra !== undefined) return { code: 'invalid_message', message: `${extra.slice(0, 64)} is not a known field` };
  const { topic, data, echo } = raw as { topic?: unknown; data?: unknown; echo?: unknown };
  const parsed = topicSchema.safeParse(topic);
  if (!parsed.success) return { code: 'invalid_topic', message: `topic ${describeIssue(parsed.error).message}` };
  if (echo !== undefined && typeof echo !== 'boolean') return { code: 'invalid_message', message: 'echo must be true or false' };
  let json: string | undefined;
  try {
    json = JSON.stringify(data);
  } catch {
    json = undefined; // a nesting too deep for the stack: refused below
  }
  if (json === undefined) return { code: 'invalid_message', message: 'data is required: any JSON value' };
  const bytes = Buffer.byteLength(json);
  if (bytes > maxBytes) {
    return { code: 'payload_too_large', message: `data is ${bytes} bytes as JSON, more than ${maxBytes} (MAX_CLIENT_MESSAGE_BYTES)` };
  }
  if (jsonNestsDeeperThan(json, MAX_BODY_DEPTH)) {
    return { code: 'invalid_message', message: `data nests arrays and objects deeper than ${MAX_BODY_DEPTH} levels` };
  }
  return { topic: parsed.data, data: JSON.parse(json) as unknown, echo: echo === true };
}

export interface ClientPublishOptions {
  /** CLIENT_PUBLISH_TOPICS, compiled; matches nothing when empty (off). */
  allowed: (topic: string) => boolean;
  maxBytes: number;
  /** With LOGIN_SECRET: publishing needs a right proved at subscribe (publishToken). */
  verifier: LoginVerifier | null;
  /**
   * The rates (CLIENT_PUBLISH_PER_SECOND): ms until `uid` may publish to `topic` again, 0 when
   * it may now (and the message is counted).
   */
  limit(uid: string, topic: string): number;
  /** Sends the message; returns its id. */
  send(socket: PushSocket, uid: string, message: ClientMessage): string;
}

/**
 * The publish rates: per uid over all its sockets (1000 sockets of one page's uid are one
 * publisher), and per topic over all publishers (a topic's subscribers each get every
 * message: without it, many uids together could flood one topic's subscribers).
 */
export class PublishRates {
  private readonly byUid: RateLimiter<string>;
  private readonly byTopic: RateLimiter<string>;
  private readonly sweeper: NodeJS.Timeout;

  constructor(perSecond: number) {
    this.byUid = new RateLimiter(perSecond, 2 * perSecond);
    this.byTopic = new RateLimiter(20 * perSecond, 40 * perSecond);
    this.sweeper = setInterval(() => {
      this.byUid.sweep();
      this.byTopic.sweep();
    }, 10_000);
    this.sweeper.unref();
  }

  limit(uid: string, topic: string): number {
    return this.byUid.take(uid) || this.byTopic.take(topic);
  }

  close(): void {
    clearInterval(this.sweeper);
  }
}

/** Answers one `publish`: every refusal is an ack {ok: false, error}, and the socket stays. */
export function publish(socket: PushSocket, raw: unknown, options: ClientPublishOptions): PublishReply {
  const refuse = (code: SocketError['code'], message: string): PublishReply => ({ ok: false, error: { code, message } });
  const message = parsePublish(raw, options.maxBytes);
  if ('code' in message) return { ok: false, error: message };
  const { topic } = message;
  if (!options.allowed(topic)) {
    return refuse('forbidden', `clients may not publish to ${topic} (the server's CLIENT_PUBLISH_TOPICS does not match it)`);
  }
  const uid = socket.data.uid;
  if (uid === undefined) return refuse('not_logged_in', 'log in before publishing: subscribers see who sent a message');
  if (!socket.rooms.has(topicRoom(topic))) return refuse('not_subscribed', `subscribe to ${topic} before publishing to it`);
  if (options.verifier && !socket.data.publishRights?.has(topic)) {
    return refuse('forbidden', `publishing to ${topic} needs a publishToken for it when subscribing`);
  }
  const wait = options.limit(uid, topic);
  if (wait > 0) return refuse('rate_limited', `too many messages from this uid or to ${topic}; retry in ${wait} ms (CLIENT_PUBLISH_PER_SECOND)`);
  return { ok: true, id: options.send(socket, uid, message) };
}
