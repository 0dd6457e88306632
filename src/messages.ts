// The shapes a push takes on its way through the server, declared once: the validated spec,
// what it answered, what is kept for a uid, what waits to be fired, and what an idempotency
// key remembers. Everyone imports them from here, so no module needs another's internals.

/** A validated v1 push, to be made now. */
export interface PushSpec {
  id: string;
  /** Uids, deduplicated; absent with `topic` or for everyone. */
  to?: string[];
  topic?: string;
  event: string;
  data: unknown;
  /** How long to keep it for uids that are offline or do not ack, ms; 0 = fire and forget. */
  ttlMs: number;
  /** Estimated size of `data`, bytes. */
  bytes: number;
}

/** What a push made now answered. */
export interface PushResult {
  id: string;
  /** Uids of `to` with a page open anywhere. */
  online: string[];
  offline: string[];
  /** Uids it was stored for (ttl > 0). */
  stored: number;
}

/** What a push scheduled for later answered: its id and when it fires (ms since the epoch). */
export interface ScheduledAnswer {
  id: string;
  at: number;
}

/** What an accepted push answered, made now or scheduled: recorded with its idempotency key. */
export type SettledPush = PushResult | ScheduledAnswer;

/** What a legacy push answers when it was made. */
export type LegacyResult = 'ok' | 'offline';

/** A message kept for a uid until it acks it or it expires. */
export interface StoredMessage {
  id: string;
  event: string;
  data: unknown;
  /** When it was accepted, ms since the epoch. */
  ts: number;
  /** When it stops being delivered, ms since the epoch. */
  expiresAt: number;
}

/** A push accepted now to be made at `at` (ms since the epoch). */
export interface ScheduledPush {
  at: number;
  spec: PushSpec;
  /** Deliveries of it that failed so far (the scheduler puts a failed one back). */
  attempts?: number;
}

/**
 * What a push answered, as its idempotency key keeps it: counts, not uid lists, so every kept
 * answer is small whatever the push named.
 */
export type KeptAnswer =
  | { id: string; onlineCount: number; offlineCount: number; stored: number }
  | ScheduledAnswer;

/** The compact form of a push's answer, for MessageStore.settle(). */
export function keptAnswer(result: PushResult): Exclude<KeptAnswer, ScheduledAnswer>;
export function keptAnswer(result: SettledPush): KeptAnswer;
export function keptAnswer(result: SettledPush): KeptAnswer {
  if ('at' in result) return { id: result.id, at: result.at };
  return { id: result.id, onlineCount: result.online.length, offlineCount: result.offline.length, stored: result.stored };
}

/** How a push ended, as metrics count it. */
export type PushOutcome = 'ok' | 'offline' | 'fail' | 'stored' | 'scheduled';

/** Told of each push's outcome, and when its emit was made (metrics, admin page). */
export interface PushObserver {
  pushed(api: 'legacy' | 'v1', result: PushOutcome): void;
  /** `startedAtMs`: performance.now() when the request came in. */
  observePushToEmit(startedAtMs: number): void;
}
