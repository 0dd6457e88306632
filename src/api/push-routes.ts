// The versioned JSON API under /api/v1: parse, validate, hand to delivery or the scheduler.
import { randomUUID } from 'node:crypto';
import Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import type { Delivery } from '../delivery.ts';
import { HttpError } from './errors.ts';
import { pageQuerySchema, queryOf } from './query.ts';
import { type MessageStore, type ScheduledCursor } from '../message-store.ts';
import { DEFAULT_EVENT, LEGACY_EVENT, describeIssue, eventSchema, topicSchema, uidSchema, escapeHtml } from '../names.ts';
import { keptAnswer, type KeptAnswer, type PushObserver, type PushSpec, type ScheduledAnswer, type SettledPush, type StoredMessage } from '../messages.ts';
import type { BatchAnswer, CancelledAnswer, KeptMessagesAnswer, PushCountsAnswer, PushResultAnswer, ScheduledAnswerBody, ScheduledPageAnswer } from './answers.ts';

export interface PushApiLimits {
  maxUidsPerPush: number;
  maxBatchMessages: number;
  maxDataBytes: number;
  maxTtlSeconds: number;
  maxScheduleSeconds: number;
  idempotencySeconds: number;
  /** Sets the lease of a push id's claim (CLAIM_LEASE_TIMEOUTS of it). */
  redisCommandTimeoutMs: number;
  /**
   * Null: pushing is open to anyone, so a push answers counts, not which of its uids are
   * online (that list is what the routes closed without PUSH_SECRET would reveal).
   */
  pushSecret: string | null;
}

/**
 * How long a push id's claim holds before its push answers, in REDIS_COMMAND_TIMEOUT_MS: a push
 * runs a few Redis commands one after another, each answered or cut within about 1.5 timeouts,
 * so an unsettled claim older than this is of a push that failed while its release was lost
 * (Redis away) or of a node that died; its id is then free again, and the retry is made.
 */
export const CLAIM_LEASE_TIMEOUTS = 10;

/** Pushes a page of GET /scheduled holds at most; 100 when `limit` is not given. */
const MAX_SCHEDULED_PAGE = 1000;

/** The query of GET /scheduled. */
export const scheduledQuerySchema = pageQuerySchema(MAX_SCHEDULED_PAGE);
/**
 * JSON bytes of the pushes one page of GET /scheduled holds at most (one push alone may be
 * larger): a push can hold 64 KiB of data and 1000 uids, so 1000 of them would be ~100 MiB.
 */
export const SCHEDULED_PAGE_BYTES = 4 * 1024 * 1024;

/** Kept messages a page of GET /users/:uid/messages holds at most; 100 when `limit` is not given. */
const MAX_KEPT_PAGE = 1000;

/** The query of GET /users/:uid/messages: a cursor is the one a previous page gave. */
export const keptQuerySchema = pageQuerySchema(MAX_KEPT_PAGE).extend({
  cursor: z
    .string({ error: 'must be one value' })
    .regex(/^\d{0,16}$/, 'must be a cursor a previous page gave')
    .optional()
    .describe('the cursor the previous page gave; absent or empty for the first page'),
});

/**
 * Bytes of the kept messages one page of GET /users/:uid/messages holds at most, as the store
 * counts them (one message alone may be larger): a uid may have MAX_PENDING_PER_UID of
 * MAX_DATA_BYTES each, 64 MiB by default, and the route read them all at once before.
 */
export const KEPT_PAGE_BYTES = 4 * 1024 * 1024;

const idSchema = z
  .string({ error: 'must be a string' })
  .regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'must be 1-128 letters, digits, _ . : -');

function pushSchema(limits: PushApiLimits) {
  return z.strictObject({
    to: z
      .union([
        uidSchema,
        z
          .array(uidSchema)
          .min(1, 'must not be an empty list')
          .max(limits.maxUidsPerPush, `must list at most ${limits.maxUidsPerPush} uids`),
      ], { error: 'must be a uid (string or number) or a list of uids' })
      .optional(),
    topic: topicSchema.optional(),
    event: eventSchema.optional(),
    data: z.json({ error: 'is required: any JSON value' }),
    ttl: z.number({ error: 'must be a number of seconds' }).min(0, 'must not be negative').optional(),
    id: idSchema.optional(),
    delay: z
      .number({ error: 'must be a number of seconds' })
      .min(0, 'must not be negative')
      .max(limits.maxScheduleSeconds, `must be at most ${limits.maxScheduleSeconds} seconds`)
      .optional(),
    at: z.iso.datetime({ offset: true, error: 'must be an ISO 8601 time, e.g. 2026-01-31T12:00:00Z' }).optional(),
  });
}

type PushBody = z.output<ReturnType<typeof pushSchema>>;

/**
 * The body of POST /push/batch, around `item`: at run time each message is checked on its own
 * (an unknown item, so one bad push answers its own 400 in `results`), while the OpenAPI
 * document passes the push schema itself.
 */
export function batchSchema<T extends z.ZodType>(item: T, maxBatchMessages: number) {
  const notAList = 'must be a non-empty list of pushes';
  return z.strictObject(
    {
      messages: z
        .array(item, { error: notAList })
        .min(1, notAList)
        .max(maxBatchMessages, `must hold at most ${maxBatchMessages} pushes`),
    },
    { error: 'must be an object {messages: [...]}' },
  );
}

/**
 * A push as the API answers it: made now (200) or scheduled (202); a duplicate answers the
 * compact answer its id kept (counts, not uid lists).
 */
type Answer =
  | { status: 200; body: PushResultAnswer | PushCountsAnswer }
  | { status: 202; body: ScheduledAnswerBody };

function invalid(field: string, message: string): HttpError {
  return new HttpError(400, `${field} ${message}`, 'invalid_request', field);
}

export class PushApi {
  /** The body of POST /push, with this server's limits (also in the OpenAPI document). */
  readonly schema: ReturnType<typeof pushSchema>;
  private readonly batch: ReturnType<typeof batchSchema<z.ZodUnknown>>;

  constructor(
    private readonly delivery: Delivery,
    private readonly store: MessageStore,
    private readonly limits: PushApiLimits,
    private readonly observer: PushObserver,
  ) {
    this.schema = pushSchema(limits);
    this.batch = batchSchema(z.unknown(), limits.maxBatchMessages);
  }

  routes(): Router {
    const router = new Router({ prefix: '/api/v1' });
    router.post('/push', async (ctx) => {
      const answer = await this.accept(jsonBody(ctx));
      ctx.status = answer.status;
      ctx.body = answer.body;
    });
    router.post('/push/batch', async (ctx) => {
      const parsed = this.batch.safeParse(jsonBody(ctx));
      if (!parsed.success) {
        const { field, message } = describeIssue(parsed.error, 'body');
        throw invalid(field, message);
      }
      const { messages } = parsed.data;
      const results: BatchAnswer['results'] = [];
      // one after another, so pushes to one uid keep their order
      for (const message of messages) {
        try {
          const answer = await this.accept(message);
          results.push(answer.status === 200 ? { status: 200, ...answer.body } : { status: 202, ...answer.body });
        } catch (err) {
          if (!(err instanceof HttpError)) throw err;
          results.push({ status: err.status, error: err.toJSON() });
        }
      }
      ctx.body = { results } satisfies BatchAnswer;
    });
    router.get('/scheduled', async (ctx) => {
      const { cursor, limit: size } = queryOf(scheduledQuerySchema, ctx.query);
      const after = cursor === undefined || cursor === '' ? null : parseCursor(cursor);
      const page = await this.store.scheduled(after, size, SCHEDULED_PAGE_BYTES);
      ctx.body = {
        scheduled: page.scheduled.map(({ at, spec }) => ({ at: new Date(at).toISOString(), ...describeSpec(spec) })),
        cursor: page.next === null ? null : `${page.next.at}:${page.next.id}`,
      } satisfies ScheduledPageAnswer;
    });
    router.delete('/scheduled/:id', async (ctx) => {
      const id = ctx.params.id ?? '';
      if (!(await this.store.cancel(id))) throw new HttpError(404, `no scheduled push with id ${id}`);
      ctx.body = { id, cancelled: true } satisfies CancelledAnswer;
    });
    router.get('/users/:uid/messages', async (ctx) => {
      const uid = ctx.params.uid ?? '';
      const { cursor, limit: size } = queryOf(keptQuerySchema, ctx.query);
      const after = cursor === undefined || cursor === '' ? 0 : Number(cursor);
      let page = await this.store.pendingPage(uid, after, size, KEPT_PAGE_BYTES);
      // a first message larger than the page's bytes comes alone, so the cursor moves on
      if (page.entries.length === 0 && page.nextBytes !== undefined) page = await this.store.pendingPage(uid, after, 1, page.nextBytes);
      ctx.body = {
        uid,
        messages: page.entries.map(({ message }: { message: StoredMessage }) => ({ ...message })),
        cursor: page.next === null ? null : String(page.next),
      } satisfies KeptMessagesAnswer;
    });
    return router;
  }

  /** Validates one push and makes it now or schedules it. Throws HttpError for bad input. */
  async accept(raw: unknown): Promise<Answer> {
    const startedAt = performance.now();
    const parsed = this.schema.safeParse(raw);
    if (!parsed.success) {
      const { field, message } = describeIssue(parsed.error, 'body');
      throw invalid(field, message);
    }
    const { spec, at } = this.toSpec(parsed.data);

    const keyed = parsed.data.id !== undefined;
    const until = Math.max(at ?? 0, Date.now()) + Math.max(spec.ttlMs, this.limits.idempotencySeconds * 1000);
    if (keyed) {
      const lease = Math.min(until, Date.now() + CLAIM_LEASE_TIMEOUTS * this.limits.redisCommandTimeoutMs);
      const claim = await this.store.claim(spec.id, lease);
      if ('full' in claim) {
        // refused rather than forgetting an older id, whose retry would then be made twice
        throw new HttpError(503, 'too many push ids are remembered (MAX_IDEMPOTENCY_BYTES); try again later, or push without id');
      }
      if (!claim.first) return duplicateAnswer(spec.id, claim.result);
    }

    let result: SettledPush;
    try {
      result = at === undefined ? await this.delivery.push(spec) : await this.schedule(spec, at);
    } catch (err) {
      // nothing was made: the id is free again, so the retry of this push is made, not answered
      // as a duplicate. Should the release fail too (the store is away), the claim's lease
      // frees the id: until then a retry answers 409.
      if (keyed) await this.store.release(spec.id).catch(() => {});
      throw err;
    }
    // The push was made, so it answers so even when its answer cannot be kept (the store went
    // away, as the connection has logged): a 503 would make the caller retry what was made.
    // Its id is then free again after the lease.
    if (keyed) await this.store.settle(spec.id, keptAnswer(result), until).catch(() => {});
    if ('at' in result) {
      this.observer.pushed('v1', 'scheduled');
      return { status: 202, body: { id: spec.id, at: new Date(result.at).toISOString() } };
    }
    this.observer.observePushToEmit(startedAt);
    this.observer.pushed('v1', result.stored > 0 ? 'stored' : result.offline.length > 0 && result.online.length === 0 ? 'offline' : 'ok');
    return { status: 200, body: this.limits.pushSecret === null ? keptAnswer(result) : result };
  }

  private async schedule(spec: PushSpec, at: number): Promise<ScheduledAnswer> {
    const outcome = await this.store.schedule({ at, spec });
    if (outcome === 'count') {
      throw new HttpError(503, 'too many scheduled pushes are waiting (MAX_SCHEDULED); try again later');
    }
    if (outcome === 'bytes') {
      throw new HttpError(503, 'the scheduled pushes waiting hold too many bytes (MAX_SCHEDULED_BYTES); try again later');
    }
    return { id: spec.id, at };
  }

  private toSpec(body: PushBody): { spec: PushSpec; at: number | undefined } {
    if (body.to !== undefined && body.topic !== undefined) throw invalid('topic', 'cannot be combined with to');
    if (body.delay !== undefined && body.at !== undefined) throw invalid('at', 'cannot be combined with delay');
    const ttl = Math.min(body.ttl ?? 0, this.limits.maxTtlSeconds);
    if (ttl > 0 && body.to === undefined) {
      throw invalid('ttl', 'needs to: messages are stored per uid, not for topics or everyone');
    }
    const given = Buffer.byteLength(JSON.stringify(body.data));
    if (given > this.limits.maxDataBytes) {
      throw new HttpError(413, `data is ${given} bytes as JSON, more than ${this.limits.maxDataBytes}`, 'payload_too_large', 'data');
    }
    const event = body.event ?? DEFAULT_EVENT;
    // Legacy pages put new_msg in with innerHTML (docs/protocol.md §6.3): on that event data is
    // text, escaped here, as the legacy API does, so what is stored or scheduled is already safe.
    let data: unknown = body.data;
    if (event === LEGACY_EVENT) {
      if (typeof data !== 'string') {
        throw invalid('data', `must be a string with event ${LEGACY_EVENT} (legacy pages take it as HTML); use another event for JSON`);
      }
      data = escapeHtml(data);
    }
    const bytes = data === body.data ? given : Buffer.byteLength(JSON.stringify(data));
    let at: number | undefined;
    // whole ms, as Redis keeps the time: a cursor of GET /scheduled then means the same in both stores
    if (body.delay !== undefined) at = Math.ceil(Date.now() + body.delay * 1000);
    if (body.at !== undefined) {
      at = Math.max(Date.parse(body.at), Date.now()); // a time just past (clock skew) means now
      if (at > Date.now() + this.limits.maxScheduleSeconds * 1000) {
        throw invalid('at', `must be at most ${this.limits.maxScheduleSeconds} seconds ahead`);
      }
    }
    const to = Array.isArray(body.to) ? [...new Set(body.to)] : body.to === undefined ? undefined : [body.to];
    const spec: PushSpec = {
      id: body.id ?? randomUUID(),
      event,
      data,
      ttlMs: Math.round(ttl * 1000),
      bytes,
      ...(to ? { to } : {}),
      ...(body.topic !== undefined ? { topic: body.topic } : {}),
    };
    return { spec, at };
  }
}

function duplicateAnswer(id: string, first: KeptAnswer | null): Answer {
  if (first === null) {
    // not 200: the first push may still fail, and then this one must be made; nothing was sent twice
    throw new HttpError(409, `a push with id ${id} is being made; retry to learn its answer`, 'push_in_progress', 'id');
  }
  if ('at' in first) return { status: 202, body: { id, at: new Date(first.at).toISOString(), duplicate: true } };
  return { status: 200, body: { ...first, duplicate: true } };
}

/** A cursor GET /scheduled gave: `<at>:<id>` (ids may hold `:` themselves). */
function parseCursor(cursor: string): ScheduledCursor {
  const match = /^(\d{1,16}(?:\.\d{1,20})?):([A-Za-z0-9_.:-]{1,128})$/.exec(cursor);
  if (!match) throw invalid('cursor', 'must be a cursor a previous page gave');
  return { at: Number(match[1]), id: match[2]! };
}

/** A spec as the API shows it back (ttl in seconds, as it was given). */
function describeSpec(spec: PushSpec) {
  return {
    id: spec.id,
    ...(spec.to ? { to: spec.to } : {}),
    ...(spec.topic !== undefined ? { topic: spec.topic } : {}),
    event: spec.event,
    data: spec.data,
    ttl: spec.ttlMs / 1000,
  };
}

/** v1 takes JSON only; the body parser has parsed it already. */
function jsonBody(ctx: Context): unknown {
  if (!ctx.is('application/json')) {
    throw new HttpError(415, 'send the body as JSON with content-type: application/json');
  }
  return ctx.request.body;
}
