// The lean path for the call backends make most: `GET /?type=publish&to=&content=`. It is
// answered without Koa (no context objects, no middleware chain per push) but by the same
// rules: runLegacyPush() for the push, PushAuth.verifyUnsigned() for the secret, the same rate limiter.
// Anything else (other methods, a body, a signed request, /api/v1, the probes) goes to the
// Koa app unchanged.
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Delivery } from '../delivery.ts';
import { loggedPath } from './access-log.ts';
import { HttpError } from './errors.ts';
import { runLegacyPush } from './legacy-routes.ts';
import type { Logger } from '../log.ts';
import type { PushAuth } from './push-auth.ts';
import { parseQuery } from './query.ts';
import type { PushObserver } from '../messages.ts';
import type { RateRefusal } from './push-rate.ts';

/** Paths the Koa app answers itself, beside /api/v1. */
export const KOA_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/metrics']);

export interface FastLegacyOptions {
  delivery: Delivery;
  maxContentBytes: number;
  /** Past it (or past MAX_QUERY_PARAMETERS) the query answers 414, before the secret is checked. */
  maxQueryBytes: number;
  observer: PushObserver;
  auth: PushAuth | null;
  /** PUSH_RATE_PER_IP's check (by the request's client address), shared with the Koa app; null when off. */
  rateCheck: ((req: IncomingMessage) => RateRefusal | null) | null;
  log: Logger;
  /** The Koa app, for every request this path does not take. */
  fallback: RequestListener;
}

function answer(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** The headers of each word a push answers, built once: writeHead takes them as they are. */
const WORD_HEADERS: Record<string, readonly string[]> = Object.fromEntries(
  ['ok', 'offline', 'fail'].map((word) => [word, ['content-type', 'text/plain; charset=utf-8', 'content-length', String(word.length)]]),
);

/** A push's 200 answer: one of the three words, without a headers object per request. */
function answerWord(res: ServerResponse, word: 'ok' | 'offline' | 'fail'): void {
  res.writeHead(200, WORD_HEADERS[word] as string[]);
  res.end(word);
}

function takes(req: IncomingMessage, path: string): boolean {
  if (req.method !== 'GET') return false;
  const h = req.headers;
  // a body, or a signature over one, is the Koa app's to parse and check
  if (h['content-length'] !== undefined || h['transfer-encoding'] !== undefined || h['x-push-signature'] !== undefined) return false;
  if (path === '/api/v1' || path.startsWith('/api/v1/') || KOA_PATHS.has(path)) return false;
  return true;
}

export function fastLegacy(o: FastLegacyOptions): RequestListener {
  return (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (!takes(req, path)) return o.fallback(req, res);
    const startedAt = performance.now();

    const refusal = o.rateCheck?.(req);
    if (refusal) return answer(res, 429, refusal.message, { 'retry-after': String(refusal.retryAfterSeconds) });
    const params = parseQuery(q === -1 ? '' : url.slice(q + 1), o.maxQueryBytes);
    if (params instanceof HttpError) return answer(res, params.status, params.message);
    if (o.auth) {
      // a signed request is the Koa app's (takes() above)
      const problem = o.auth.verifyUnsigned({ authorization: req.headers.authorization ?? '', fieldSecret: params.secret });
      if (problem !== null) return answer(res, 401, 'fail', { 'www-authenticate': 'Bearer' });
    }
    runLegacyPush(params, o.delivery, o.maxContentBytes, o.observer, startedAt).then(
      (result) => answerWord(res, result),
      (err: unknown) => {
        if (err instanceof HttpError) return answer(res, err.status, err.message);
        o.log.error(`GET ${loggedPath(url)} failed`, err); // an absolute-form target may hold credentials
        answer(res, 500, 'internal server error');
      },
    );
  };
}
