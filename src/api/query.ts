// The query string of an API request, parsed once, by one bounded parser, for the lean GET
// path and the Koa app alike. Koa's own `ctx.query` is quadratic in repeated keys: a 16 KB
// `?a&a&a…` cost half a second of CPU before the push secret was even looked at. Here a
// query is counted first (bytes, then parameters) in one linear pass and refused past the
// bounds, so a hostile one costs about what a normal request does.
import { parse, type ParsedUrlQuery } from 'node:querystring';
import type { Context, Middleware } from 'koa';
import { z } from 'zod';
import { HttpError } from './errors.ts';
import { describeIssue } from '../names.ts';

/**
 * Parameters one query string may hold; more answers 414. As PHP's default max_input_vars;
 * a push needs four.
 */
export const MAX_QUERY_PARAMETERS = 1000;

/**
 * The bounds of /api/v1 and the probes, which read `cursor`, `limit` and `online` at most: a
 * query of legacy size would cost a parse of up to ~200 KB before the push secret is checked.
 */
export const API_QUERY_BYTES = 4096;
export const API_QUERY_PARAMETERS = 20;

/** Headers besides the request line that the API port reads at most, bytes (Node's default). */
const MAX_HEADER_BYTES = 16 * 1024;

/**
 * Bytes a query string may take: room for a legacy `content` of `maxDataBytes` with every byte
 * percent-encoded (3 characters each), and for the other parameters.
 */
export function maxQueryBytes(maxDataBytes: number): number {
  return 3 * maxDataBytes + 8 * 1024;
}

/** The API port's limit on request line plus headers: a longest query with ordinary headers. */
export function maxRequestHeadBytes(maxDataBytes: number): number {
  return maxQueryBytes(maxDataBytes) + MAX_HEADER_BYTES;
}

/**
 * The parameters of `search` (the part after `?`, as sent), or an HttpError 414 saying which
 * bound it passed. A repeated key gives an array of its values (the legacy push takes the last).
 */
export function parseQuery(search: string, maxBytes: number, maxParameters = MAX_QUERY_PARAMETERS): ParsedUrlQuery | HttpError {
  if (search.length > maxBytes) {
    return new HttpError(414, `query string is longer than ${maxBytes} bytes`);
  }
  let parameters = 0;
  for (let start = 0; start <= search.length; ) {
    let end = search.indexOf('&', start);
    if (end === -1) end = search.length;
    if (end > start && ++parameters > maxParameters) {
      return new HttpError(414, `query string has more than ${maxParameters} parameters`);
    }
    start = end + 1;
  }
  return parse(search, '&', '=', { maxKeys: 0 }); // counted above
}

/**
 * Koa middleware, ahead of body parsing and auth: refuses a query past the bounds, and makes
 * `ctx.query` this one bounded parse (Koa's getter would parse again, its own way). Only for
 * the requests `applies` takes: the others pass to the next bound.
 */
export function boundedQuery(
  maxBytes: number,
  maxParameters = MAX_QUERY_PARAMETERS,
  applies: (ctx: Context) => boolean = () => true,
): Middleware {
  return async (ctx, next) => {
    if (!applies(ctx)) return next();
    const url = ctx.url;
    const q = url.indexOf('?');
    const params = parseQuery(q === -1 ? '' : url.slice(q + 1), maxBytes, maxParameters);
    if (params instanceof HttpError) throw params;
    Object.defineProperty(ctx.request, 'query', { value: params, writable: false, configurable: true });
    return next();
  };
}

/**
 * The query of a paged GET: `cursor` as a previous page gave it, `limit` 1-`maxLimit`
 * (default 100). Not strict: a `secret` may ride in the query (push-auth.ts).
 */
export function pageQuerySchema(maxLimit: number) {
  const badLimit = `must be an integer 1-${maxLimit}`;
  return z.object({
    cursor: z.string({ error: 'must be one value' }).optional().describe('the cursor the previous page gave; absent or empty for the first page'),
    limit: z.coerce
      .number({ error: badLimit })
      .int(badLimit)
      .min(1, badLimit)
      .max(maxLimit, badLimit)
      .default(100)
      .describe('most entries in one page'),
  });
}

/** `query` checked by `schema`, or an HttpError 400 naming the parameter that is wrong. */
export function queryOf<T extends z.ZodType>(schema: T, query: ParsedUrlQuery): z.output<T> {
  const parsed = schema.safeParse(query);
  if (parsed.success) return parsed.data;
  const { field, message } = describeIssue(parsed.error, 'query');
  throw new HttpError(400, `${field} ${message}`, 'invalid_request', field);
}
