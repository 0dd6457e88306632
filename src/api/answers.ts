// What the /api/v1 routes answer, declared once as zod schemas: the routes check their bodies
// against these types at compile time (`satisfies`), and the OpenAPI document (openapi.ts) is
// generated from them, so the contract and the code cannot tell two stories. Strict objects:
// a field a route adds without declaring it here fails the contract test.
import { z } from 'zod';
import { UID_STATES } from '../message-status.ts';

const isoTime = z.iso.datetime({ offset: true }).describe('ISO 8601 time');
const uid = z.string().describe('a uid, as a string');
const pushId = z.string().describe("the push's id: the `id` given, or one made up");
/** Data as it was pushed (unknown in the code: it came in as any JSON value). */
const jsonData = z.unknown().describe('any JSON value, as pushed');

/** Every error answer of the API port under /api/ (errors.ts). */
export const errorAnswer = z.strictObject({
  error: z.strictObject({
    code: z.string().describe('machine-readable: invalid_request, unauthorized, forbidden, not_found, payload_too_large, unavailable, …'),
    message: z.string().describe('why, for a person'),
    field: z.string().optional().describe('the part of the request that is wrong, when one is'),
  }),
});

/** A push made now, on a server with PUSH_SECRET: who of `to` is online. */
export const pushResultAnswer = z.strictObject({
  id: pushId,
  online: z.array(uid).describe('uids of `to` with a page open anywhere'),
  offline: z.array(uid).describe('uids of `to` with no page open'),
  stored: z.number().int().min(0).describe('uids it is kept for (ttl)'),
});

/**
 * A push made now as counts: without PUSH_SECRET (pushing is open, the lists would tell who is
 * online), and every duplicate (`duplicate: true`; an id keeps a compact answer).
 */
export const pushCountsAnswer = z.strictObject({
  id: pushId,
  onlineCount: z.number().int().min(0),
  offlineCount: z.number().int().min(0),
  stored: z.number().int().min(0),
  duplicate: z.literal(true).optional().describe('this id was pushed before: nothing was sent again'),
});

/** A push scheduled for later (202). */
export const scheduledAnswer = z.strictObject({
  id: pushId,
  at: isoTime.describe('when it fires'),
  duplicate: z.literal(true).optional().describe('this id was pushed before: nothing was scheduled again'),
});

/** One entry of a batch's `results`: a push's answer with its status, or its error. */
export const batchEntryAnswer = z.union([
  pushResultAnswer.extend({ status: z.literal(200) }),
  pushCountsAnswer.extend({ status: z.literal(200) }),
  scheduledAnswer.extend({ status: z.literal(202) }),
  z.strictObject({ status: z.number().int().min(400).max(599), error: errorAnswer.shape.error }),
]);

export const batchAnswer = z.strictObject({
  results: z.array(batchEntryAnswer).describe('one per message, in order'),
});

export const scheduledPageAnswer = z.strictObject({
  scheduled: z.array(
    z.strictObject({
      at: isoTime,
      id: pushId,
      to: z.array(uid).optional(),
      topic: z.string().optional(),
      event: z.string(),
      data: jsonData,
      ttl: z.number().min(0).describe('seconds'),
    }),
  ),
  cursor: z.string().nullable().describe('pass it back for the next page; null at the end'),
});

export const cancelledAnswer = z.strictObject({ id: z.string(), cancelled: z.literal(true) });

export const keptMessagesAnswer = z.strictObject({
  uid,
  messages: z
    .array(
      z.strictObject({
        id: pushId,
        event: z.string(),
        data: jsonData,
        ts: z.number().describe('accepted, ms since the epoch'),
        expiresAt: z.number().describe('kept until, ms since the epoch'),
      }),
    )
    .describe('kept and not yet acked, oldest first: one page'),
  cursor: z.string().nullable().describe('pass it back for the next page; null at the end'),
});

const uidState = z.enum(UID_STATES);

/** GET /api/v1/messages/:id (message-status.ts, docs/protocol.md §9). */
export const statusAnswer = z.strictObject({
  id: z.string(),
  kind: z.enum(['uids', 'broadcast', 'topic']),
  topic: z.string().optional(),
  ts: isoTime.nullable().describe('when the push was accepted; null when no node that answered saw it'),
  sockets: z.number().int().min(0).optional().describe('broadcast and topic: sockets emitted to'),
  uids: z
    .record(
      z.string(),
      z.strictObject({
        state: uidState,
        at: isoTime,
        history: z.partialRecord(uidState, isoTime),
      }),
    )
    .optional(),
  incomplete: z.literal(true).optional().describe('in a cluster: a node did not answer in time'),
});

export const onlineCountsAnswer = z.strictObject({
  users: z.number().int().min(0).describe('distinct logged-in uids'),
  pages: z.number().int().min(0).describe('logged-in sockets'),
});

export const usersPageAnswer = z.strictObject({
  uids: z.array(uid),
  cursor: z.string().nullable().describe('pass it back for the next page; null at the end'),
});

export const userAnswer = z.strictObject({ uid, online: z.boolean(), pages: z.number().int().min(0) });

export const onlineSplitAnswer = z.strictObject({ online: z.array(uid), offline: z.array(uid) });

export type ErrorAnswer = z.output<typeof errorAnswer>;
export type BatchAnswer = z.output<typeof batchAnswer>;
export type ScheduledPageAnswer = z.output<typeof scheduledPageAnswer>;
export type CancelledAnswer = z.output<typeof cancelledAnswer>;
export type KeptMessagesAnswer = z.output<typeof keptMessagesAnswer>;
export type StatusAnswerBody = z.output<typeof statusAnswer>;
export type OnlineCountsAnswer = z.output<typeof onlineCountsAnswer>;
export type UsersPageAnswer = z.output<typeof usersPageAnswer>;
export type UserAnswer = z.output<typeof userAnswer>;
export type OnlineSplitAnswer = z.output<typeof onlineSplitAnswer>;
export type PushResultAnswer = z.output<typeof pushResultAnswer>;
export type PushCountsAnswer = z.output<typeof pushCountsAnswer>;
export type ScheduledAnswerBody = z.output<typeof scheduledAnswer>;
