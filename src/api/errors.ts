// One Koa error middleware for the API port: a 4xx answers its reason, a 5xx answers a
// generic text and is logged. Paths under /api/ answer JSON, the legacy endpoint plain text.
import type { Middleware } from 'koa';
import type { Logger } from '../log.ts';

/** An error whose message is meant for the client. */
export class HttpError extends Error {
  readonly expose = true;
  constructor(
    readonly status: number,
    message: string,
    readonly code: string = codeForStatus(status),
    /** The request field that is wrong, when one is. */
    readonly field?: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }

  /** The `error` object of a JSON answer. */
  toJSON(): { code: string; message: string; field?: string } {
    return { code: this.code, message: this.message, ...(this.field !== undefined ? { field: this.field } : {}) };
  }
}

function codeForStatus(status: number): string {
  switch (status) {
    case 400: return 'bad_request';
    case 401: return 'unauthorized';
    case 404: return 'not_found';
    case 405: return 'method_not_allowed';
    case 413: return 'payload_too_large';
    case 414: return 'uri_too_long';
    case 415: return 'unsupported_media_type';
    case 429: return 'too_many_requests';
    case 503: return 'unavailable';
    default: return status < 500 ? 'bad_request' : 'internal_error';
  }
}

function statusOf(err: unknown): number {
  if (typeof err === 'object' && err !== null) {
    const s = (err as { status?: unknown; statusCode?: unknown }).status ?? (err as { statusCode?: unknown }).statusCode;
    if (typeof s === 'number' && s >= 400 && s <= 599) return s;
  }
  return 500;
}

/** Body-parser errors carry a status but a terse message: say which part was wrong. */
function clientMessage(err: unknown): string {
  const e = err as { message?: unknown; type?: unknown };
  const message = typeof e.message === 'string' ? e.message : 'bad request';
  if (e.type === 'entity.parse.failed' || err instanceof SyntaxError) return `malformed body: ${message}`;
  return message;
}

export function errorMiddleware(log: Logger): Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      const status = statusOf(err);
      // a 5xx says why only when it was meant for the client (503: a store is unavailable)
      const exposed = (err as { expose?: unknown }).expose === true;
      const message = status < 500 || exposed ? clientMessage(err) : 'internal server error';
      if (status >= 500 && !exposed) log.error(`${ctx.method} ${ctx.path} failed`, err);
      ctx.status = status;
      if (ctx.path.startsWith('/api/')) {
        ctx.body = { error: err instanceof HttpError ? err.toJSON() : { code: codeForStatus(status), message } };
        if (status === 503 && !ctx.response.get('Retry-After')) ctx.set('Retry-After', '5');
      } else {
        ctx.type = 'text/plain';
        ctx.body = message;
      }
    }
  };
}
