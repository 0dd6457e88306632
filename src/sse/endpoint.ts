// GET /events on the Socket.IO port: a Server-Sent Events stream for pages that cannot (or
// need not) run a Socket.IO client. A stream is a page: it counts in presence (online counts,
// the presence API, webhooks) as a logged-in socket does, gets the same pushes (members.ts),
// and resumes from Last-Event-ID. Bad input answers 4xx with a JSON reason before the stream
// starts; once it has started, a server failure ends it and EventSource reconnects.
// docs/protocol.md §10.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ConnectionPlaces } from '../connection-limit.ts';
import { CorsRule } from '../cors.ts';
import type { Delivery, RedeliveryWindow } from '../delivery.ts';
import type { SocketError } from '../events.ts';
import { FairPool, fairShares, type FullScope } from '../fair-pool.ts';
import type { Logger } from '../log.ts';
import { PRIVATE_TOPIC_PREFIX, type LoginVerifier } from '../login-auth.ts';
import { describeIssue, topicRoom, topicSchema, uidSchema, userRoom } from '../names.ts';
import { formatOnlineCount } from '../online-count.ts';
import type { Presence } from '../presence.ts';
import type { SocketObserver } from '../socket-handlers.ts';
import type { SseMembers } from './members.ts';
import { RateLimiter } from '../rate-limit.ts';
import { formatEvent, SseStream } from './stream.ts';

/** The path of the SSE endpoint on the Socket.IO port. */
export const EVENTS_PATH = '/events';

/** Longest Last-Event-ID taken: message ids are at most 128 characters. */
const MAX_LAST_EVENT_ID = 256;

/** Why a stream cannot replay now (SSE_MAX_REPLAYS), by the bound it met. */
const REPLAYS_FULL: Record<FullScope, string> = {
  total: 'too many streams are replaying stored messages (SSE_MAX_REPLAYS)',
  uid: 'too many streams of this uid are replaying stored messages (SSE_MAX_REPLAYS)',
  address: 'too many streams from this address are replaying stored messages (SSE_MAX_REPLAYS)',
};

export interface EventsOptions {
  members: SseMembers;
  presence: Presence;
  delivery: Delivery;
  /** Checks login and private-topic tokens; null: any uid, private topics refused. */
  verifier: LoginVerifier | null;
  /** Logins counted, first and last pages announced, as for sockets. */
  observer: SocketObserver;
  /** MAX_CONNECTIONS_PER_IP, shared with Socket.IO's connections (and under WORKERS with the other workers'). */
  connections: ConnectionPlaces;
  addressOf(req: IncomingMessage): string;
  /** CORS_ORIGINS, as for Socket.IO (cors.ts): `*` any origin without credentials, a list those with. */
  corsOrigins: '*' | readonly string[];
  /** MAX_TOPICS_PER_SOCKET. */
  maxTopics: number;
  /** MAX_SOCKET_BUFFER_BYTES: most bytes waiting to be sent to one stream. */
  maxBufferBytes: number;
  /** LOGIN_TIMEOUT_MS: longest presence and the store may take to start a stream. */
  setupTimeoutMs: number;
  /**
   * SSE_MAX_REPLAYS: streams replaying stored messages at once (each holds the live events that
   * come meanwhile), over all uids; one uid may have an eighth of them, one client address a
   * quarter. Past a bound a new stream is ended at once with a `retry:` field (EventSource
   * gives up for good on an error status).
   */
  maxReplays: number;
  /** REDELIVERY_WINDOW and REDELIVERY_WINDOW_BYTES: a replay reads its uid's stored messages a page this size at a time. */
  window: RedeliveryWindow;
  /** SSE_HEARTBEAT_MS: a replay waits at most twice this for a client to take more. */
  heartbeatMs: number;
  /** SSE_OPENS_PER_SECOND: streams one client address may open a second (bursts of twice that). */
  opensPerSecond: number;
  /** A stream cut for not reading; `bytes` were waiting. */
  slowCut(address: string, bytes: number): void;
  log: Logger;
}

/** A request's problem, answered before the stream starts. */
class Refusal {
  constructor(
    readonly status: number,
    readonly error: { code: SocketError['code'] | 'invalid_last_event_id' | 'too_many_connections' | 'origin_not_allowed' | 'method_not_allowed'; message: string },
  ) {}
}

/** What a valid request asks for. */
interface StreamRequest {
  uid: string;
  topics: string[];
  lastEventId: string | null;
}

function reasonOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class EventsEndpoint {
  private readonly cors: CorsRule;
  private closed = false;
  /** Streams between their start and the end of their replay: SSE_MAX_REPLAYS, per uid and address too. */
  private readonly replays: FairPool;
  /** SSE_OPENS_PER_SECOND per client address. */
  private readonly opens: RateLimiter<string>;
  private readonly opensSweeper: NodeJS.Timeout;

  constructor(private readonly options: EventsOptions) {
    this.cors = new CorsRule(options.corsOrigins);
    this.replays = new FairPool(fairShares(options.maxReplays));
    this.opens = new RateLimiter(options.opensPerSecond, 2 * options.opensPerSecond);
    this.opensSweeper = setInterval(() => this.opens.sweep(), 10_000);
    this.opensSweeper.unref();
  }

  /** Requests on the Socket.IO port outside /socket.io/: /events here, anything else 404. */
  handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const mark = url.indexOf('?');
    const path = mark === -1 ? url : url.slice(0, mark);
    if (path !== EVENTS_PATH) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    const cors = this.corsHeaders(req);
    if (cors === null) return refuse(res, {}, new Refusal(403, { code: 'origin_not_allowed', message: 'origin not allowed (CORS_ORIGINS)' }));
    if (req.method === 'OPTIONS') {
      // EventSource sends Last-Event-ID on a reconnect: a browser may ask first
      res.writeHead(204, {
        ...cors,
        'access-control-allow-methods': 'GET',
        'access-control-allow-headers': 'last-event-id',
        'access-control-max-age': '600',
      });
      res.end();
      return;
    }
    if (req.method !== 'GET') {
      return refuse(res, { ...cors, allow: 'GET, OPTIONS' }, new Refusal(405, { code: 'method_not_allowed', message: 'use GET' }));
    }
    const query = new URLSearchParams(mark === -1 ? '' : url.slice(mark + 1));
    this.open(req, res, query, cors).catch((err: unknown) => {
      this.options.log.error('an SSE stream failed to open', err);
      if (!res.headersSent) refuse(res, cors, new Refusal(503, { code: 'unavailable', message: 'the server could not open the stream; try again' }));
      else res.end();
    });
  }

  /** Ends every stream and answers new ones with an ended stream, so clients reconnect elsewhere. */
  close(): void {
    this.closed = true;
    clearInterval(this.opensSweeper);
    this.options.members.close();
  }

  /** CORS headers for an allowed origin (none without Origin); null for an origin not listed. */
  private corsHeaders(req: IncomingMessage): Record<string, string> | null {
    // the stream uses no cookies: under `*` a cookie-authenticated proxy in front must not
    // become readable from other sites (EventSource asks for credentials only when told to)
    return this.cors.headers(req.headers.origin);
  }

  /** Checks the request: uid, token, topics and their tokens, Last-Event-ID. */
  private async parse(req: IncomingMessage, query: URLSearchParams): Promise<StreamRequest | Refusal> {
    const { verifier, maxTopics } = this.options;
    const rawUid = query.get('uid');
    if (rawUid === null) return new Refusal(400, { code: 'invalid_uid', message: 'uid is required (?uid=...)' });
    const uid = uidSchema.safeParse(rawUid);
    if (!uid.success) return new Refusal(400, { code: 'invalid_uid', message: `uid ${describeIssue(uid.error).message}` });

    const topics: string[] = [];
    for (const name of (query.get('topics') ?? '').split(',')) {
      if (name === '') continue;
      const topic = topicSchema.safeParse(name);
      if (!topic.success) return new Refusal(400, { code: 'invalid_topic', message: `topic ${describeIssue(topic.error).message}` });
      if (!topics.includes(topic.data)) topics.push(topic.data);
    }
    if (topics.length > maxTopics) return new Refusal(400, { code: 'too_many_topics', message: `at most ${maxTopics} topics per connection` });

    const header = req.headers['last-event-id'];
    const lastEventId = (typeof header === 'string' && header !== '' ? header : query.get('lastEventId')) || null;
    if (lastEventId !== null && (lastEventId.length > MAX_LAST_EVENT_ID || /[\0-\x1f]/.test(lastEventId))) {
      return new Refusal(400, { code: 'invalid_last_event_id', message: `Last-Event-ID must be a message id (at most ${MAX_LAST_EVENT_ID} characters)` });
    }

    if (verifier) {
      const problem = await verifier.verify(uid.data, query.get('token') ?? undefined);
      if (problem) return new Refusal(401, problem);
    }
    for (const topic of topics) {
      if (!topic.startsWith(PRIVATE_TOPIC_PREFIX)) continue;
      // a private topic's token is the query parameter named as the topic
      if (!verifier) return new Refusal(401, { code: 'unauthorized', message: 'private topics need LOGIN_SECRET on the server' });
      const problem = await verifier.verifyTopic(topic, query.get(topic) ?? undefined);
      if (problem) return new Refusal(401, { ...problem, message: `${topic}: ${problem.message}` });
    }
    return { uid: uid.data, topics, lastEventId };
  }

  private async open(req: IncomingMessage, res: ServerResponse, query: URLSearchParams, cors: Record<string, string>): Promise<void> {
    const { members, presence, delivery, observer, connections, log } = this.options;
    const parsed = await this.parse(req, query);
    if (parsed instanceof Refusal) {
      if (parsed.status === 401) observer.login('refused');
      return refuse(res, cors, parsed);
    }
    if (res.destroyed || req.socket.destroyed) return;
    const headers = {
      ...cors,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no', // nginx: pass each event on as it comes
    };
    if (this.closed) {
      // shutting down: an empty stream, and the client reconnects (to another node behind a
      // balancer); an error status would make EventSource give up for good
      res.writeHead(200, headers).end();
      return;
    }
    const address = this.options.addressOf(req);
    if (!(await connections.acquire(address))) {
      return refuse(res, cors, new Refusal(429, { code: 'too_many_connections', message: 'too many connections from this address (MAX_CONNECTIONS_PER_IP)' }));
    }
    // the place is given back when the stream closes, or now when it does not start
    if (this.closed || res.destroyed || req.socket.destroyed) {
      connections.release(address);
      if (!res.destroyed) res.writeHead(200, headers).end();
      return;
    }
    // not an error status, which makes EventSource give up for good: an ended stream whose
    // retry field spreads the reconnects over 1-3 s
    const later = (why: string) => {
      connections.release(address);
      const retry = 1000 + Math.floor(Math.random() * 2000);
      res.writeHead(200, headers).end(`: ${why}\nretry: ${retry}\n\n`);
    };
    // each opening reads the uid's stored messages and counts a page: bounded per address
    if (this.opens.take(address) > 0) return later('too many streams opened from this address (SSE_OPENS_PER_SECOND)');
    const { uid, topics, lastEventId } = parsed;
    const replay = this.replays.holder(uid, address);
    const full = replay.tryTake(1);
    if (full !== null) return later(REPLAYS_FULL[full]);
    const replayEnded = () => replay.close();
    res.once('close', replayEnded);
    res.writeHead(200, headers);
    res.flushHeaders();

    const stream = new SseStream(`sse:${randomBytes(12).toString('base64url')}`, uid, res, this.options.maxBufferBytes, (bytes) =>
      this.options.slowCut(address, bytes),
    );
    // a member before its page is counted and the store read, as a socket joins its room
    // first: a push meanwhile is held and follows the replay
    members.add(stream, [userRoom(uid), ...topics.map(topicRoom)]);
    let counted: Promise<boolean> | null = null;
    res.once('close', () => {
      connections.release(address);
      members.remove(stream);
      counted
        ?.then(
          () => presence.removePage(uid).then((last) => last && observer.lastPage(uid)),
          () => {}, // not counted: nothing to give back
        )
        .catch((err: unknown) => log.error('giving back the page of an SSE stream failed', err));
    });

    const deadline = setTimeout(() => {
      log.warn(`an SSE stream was ended: no answer from presence or the store within ${this.options.setupTimeoutMs} ms`);
      stream.end();
    }, this.options.setupTimeoutMs);
    let after: number;
    try {
      counted = presence.addPage(uid);
      if (await counted) observer.firstPage(uid);
      const counts = await presence.counts();
      if (stream.closed) return;
      await stream.writeNow(formatEvent('update_online_count', formatOnlineCount(counts))!);
      after = await delivery.resume(uid, lastEventId);
    } catch (err) {
      // the client reconnects after its retry delay, with the same Last-Event-ID
      log.warn(`an SSE stream was ended: ${reasonOf(err)}`);
      observer.login('failed');
      stream.end();
      replayEnded();
      return;
    } finally {
      clearTimeout(deadline);
    }
    if (stream.closed) return replayEnded();
    observer.login('ok');

    // the replay, paced by the client: read a page at a time (its bytes taken from
    // MAX_REDELIVERY_BYTES, given back as each is written), each write waiting for a drain when
    // the buffer is full, at most two heartbeats
    const backlog = delivery.backlog(uid, address, after);
    res.once('close', () => backlog.close());
    const replayed = new Set<string>();
    const drainTimeoutMs = 2 * this.options.heartbeatMs;
    const { messages: limit, bytes: maxBytes } = this.options.window;
    try {
      for (let page = await backlog.next(limit, maxBytes); page !== null; page = await backlog.next(limit, maxBytes)) {
        for (let i = 0; i < page.length; i++) {
          const { message: m, bytes } = page[i]!;
          (page as unknown[])[i] = undefined; // let go of once written
          const frame = m.expiresAt <= Date.now() ? null : formatEvent(m.event, m.data, m.id);
          if (frame !== null) replayed.add(m.id);
          const written = frame === null || (await stream.writeNow(frame, drainTimeoutMs));
          backlog.done(bytes);
          if (!written) return;
          if (frame !== null) delivery.replayed(uid, m);
        }
      }
    } catch (err) {
      log.warn(`an SSE stream was ended: its stored messages could not be read (${reasonOf(err)})`);
      stream.end();
      return;
    } finally {
      backlog.close();
      replayEnded();
    }
    stream.release(replayed);
  }
}

function refuse(res: ServerResponse, headers: Record<string, string>, refusal: Refusal): void {
  res.writeHead(refusal.status, { ...headers, 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify({ error: refusal.error }));
}
