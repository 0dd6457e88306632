// One place for what a uid, a topic and an event name may be, and for the rooms they map to.
import { z } from 'zod';

/** Longest uid accepted, in characters. */
export const MAX_UID_LENGTH = 256;
/** Longest topic name accepted, in characters. */
export const MAX_TOPIC_LENGTH = 128;

/** In Unicode mode a surrogate pair is one code point, so only a lone surrogate is \p{Cs}. */
const LONE_SURROGATE = /\p{Cs}/u;

/** A uid: a non-empty string or a finite number, compared as a string. */
export const uidSchema = z
  .union([z.string(), z.number().refine(Number.isFinite, 'must be a finite number')], {
    error: 'must be a string or a number',
  })
  .transform(String)
  .refine((s) => s !== '', 'must not be empty')
  .refine((s) => s.length <= MAX_UID_LENGTH, `must be at most ${MAX_UID_LENGTH} characters`)
  // a lone surrogate becomes U+FFFD in UTF-8, so two such uids would share one token
  .refine((s) => !LONE_SURROGATE.test(s), 'must be well-formed Unicode text (it holds a lone surrogate)');

export const topicSchema = z
  .string({ error: 'must be a string' })
  .min(1, 'must not be empty')
  .max(MAX_TOPIC_LENGTH, `must be at most ${MAX_TOPIC_LENGTH} characters`)
  .regex(/^[A-Za-z0-9_.:@\/-]+$/, 'may hold only letters, digits and _ . : @ / -');

/** The event legacy pages listen to and insert as HTML: only escaped text is sent on it. */
export const LEGACY_EVENT = 'new_msg';
/** The event of a v1 push that names none. Not new_msg: v1 data is sent as given. */
export const DEFAULT_EVENT = 'message';
/**
 * The SSE event of a client message (sse/members.ts): SSE has no second argument for its meta,
 * so it gets a name of its own, which no push may take, and a page cannot mistake it for the
 * backend's.
 */
export const SSE_CLIENT_MESSAGE_EVENT = 'client_message';

/** Events the server or Socket.IO itself uses: a push may not take their names. */
const RESERVED_EVENTS = new Set([
  'connect', 'connect_error', 'disconnect', 'disconnecting', 'error', 'newListener',
  'removeListener', 'ping', 'pong', 'login', 'login_error', 'subscribe', 'unsubscribe',
  'update_online_count', SSE_CLIENT_MESSAGE_EVENT,
]);

export const eventSchema = z
  .string({ error: 'must be a string' })
  .regex(/^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/, 'must start with a letter and hold at most 64 letters, digits, _ . : -')
  .refine((e) => !RESERVED_EVENTS.has(e), 'is reserved');

/** The room of a uid's sockets. Prefixed so a uid can never name a socket id's own room. */
export function userRoom(uid: string): string {
  return `uid:${uid}`;
}

export function topicRoom(topic: string): string {
  return `topic:${topic}`;
}

type Issue = z.core.$ZodIssue;

/**
 * The issue to report: for a union that failed inside one branch (a bad element of a list),
 * that branch's issue, with its full path; otherwise the issue itself.
 */
function deepest(issue: Issue, parentPath: PropertyKey[] = []): { issue: Issue; path: PropertyKey[] } {
  const path = [...parentPath, ...issue.path];
  if (issue.code === 'invalid_union') {
    let best: Issue | undefined;
    for (const branch of issue.errors) {
      const first = branch[0];
      if (first && first.path.length > (best?.path.length ?? 0)) best = first;
    }
    if (best) return deepest(best, path);
  }
  return { issue, path };
}

/** The first problem of a failed parse, as a field name and what is wrong with it. */
export function describeIssue(error: z.ZodError, fallbackField = 'request'): { field: string; message: string } {
  const first = error.issues[0];
  if (!first) return { field: fallbackField, message: 'is invalid' };
  const { issue, path } = deepest(first);
  if (issue.code === 'unrecognized_keys') {
    return { field: [...path, issue.keys[0]].join('.'), message: 'is not a known field' };
  }
  return { field: path.length > 0 ? path.join('.') : fallbackField, message: issue.message };
}

const HTML_SPECIAL = /[&<>"']/g;
const HTML_ENTITY: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#039;',
};

/** PHP 8's htmlspecialchars() with its defaults (ENT_QUOTES | ENT_SUBSTITUTE | ENT_HTML401). */
export function escapeHtml(text: string): string {
  return text.replace(HTML_SPECIAL, (c) => HTML_ENTITY[c] ?? c);
}
