// The byte-compatible web-msg-sender push endpoint (docs/protocol.md §4): any path,
// `type=publish&to=&content=` from the body when it has fields, else from the query string;
// answers one word: ok, offline or fail.
import type { Middleware } from 'koa';
import type { Delivery } from '../delivery.ts';
import type { PushObserver } from '../messages.ts';
import { escapeHtml } from '../names.ts';
import { HttpError } from './errors.ts';

export type Params = Record<string, unknown>;

function hasFields(body: unknown): body is Params {
  return typeof body === 'object' && body !== null && !Array.isArray(body) && Object.keys(body).length > 0;
}

/** One parameter as a string: numbers (JSON) are stringified, a repeated one takes the last. */
function field(params: Params, name: string): string | undefined {
  let value = params[name];
  if (Array.isArray(value)) value = value[value.length - 1];
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw new HttpError(400, `parameter ${name} must be a string`);
}

/**
 * The legacy push, from its parameters to its one-word answer: the one place its rules live,
 * used by the Koa route and by the lean GET path (fast-legacy.ts). Throws HttpError for a
 * content over `maxContentBytes` (413) or a parameter that is not a string (400).
 */
export async function runLegacyPush(
  params: Params,
  delivery: Delivery,
  maxContentBytes: number,
  observer: PushObserver,
  startedAt: number,
): Promise<'ok' | 'offline' | 'fail'> {
  if (field(params, 'type') !== 'publish') {
    observer.pushed('legacy', 'fail');
    return 'fail';
  }
  const to = field(params, 'to') ?? '';
  const raw = field(params, 'content') ?? '';
  // a UTF-8 byte is at most 3 UTF-16 units' worth, so most contents skip the exact count
  if (raw.length * 3 > maxContentBytes && Buffer.byteLength(raw) > maxContentBytes) {
    throw new HttpError(413, `content is larger than ${maxContentBytes} bytes`);
  }
  const result = await delivery.emitLegacy(to, escapeHtml(raw));
  observer.observePushToEmit(startedAt);
  observer.pushed('legacy', result);
  return result;
}

/**
 * The Koa route of the legacy push: picks body or query string and answers runLegacyPush()'s
 * word. `maxContentBytes`: a longer content answers 413 (MAX_DATA_BYTES).
 */
export function legacyRoute(delivery: Delivery, maxContentBytes: number, observer: PushObserver): Middleware {
  return async (ctx) => {
    const startedAt = performance.now();
    const body: unknown = ctx.request.body;
    const params: Params = hasFields(body) ? body : ctx.query;
    ctx.body = await runLegacyPush(params, delivery, maxContentBytes, observer, startedAt);
  };
}
