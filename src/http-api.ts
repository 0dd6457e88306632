// The push API's Koa application on API_PORT: errors, body, routes. /api/v1 is the JSON API;
// every other path reaches the legacy endpoint, as in the original.
import Router from '@koa/router';
import Koa, { type Middleware } from 'koa';
import { parseBody } from './body.ts';
import type { Delivery } from './delivery.ts';
import { errorMiddleware, HttpError } from './http-errors.ts';
import { legacyPublish } from './legacy-api.ts';
import type { Logger } from './log.ts';
import type { PushApi } from './push-api.ts';

export interface ApiOptions {
  delivery: Delivery;
  pushApi: PushApi;
  maxBodyBytes: number;
  log: Logger;
}

/** What no /api/v1 route took: 405 when the path exists with other methods, else 404. */
const v1Fallthrough: Middleware = async (ctx, next) => {
  if (ctx.path !== '/api/v1' && !ctx.path.startsWith('/api/v1/')) return next();
  const matched = (ctx as { matched?: { methods: string[] }[] }).matched ?? [];
  const methods = [...new Set(matched.flatMap((layer) => layer.methods))];
  if (methods.length > 0) {
    ctx.set('Allow', methods.join(', '));
    throw new HttpError(405, `${ctx.method} is not allowed here; use ${methods.join(', ')}`);
  }
  throw new HttpError(404, `no API route ${ctx.method} ${ctx.path}`);
};

export function createApiApp({ delivery, pushApi, maxBodyBytes, log }: ApiOptions): Koa {
  const app = new Koa();
  app.silent = true; // errors are answered and logged by errorMiddleware
  const legacy = new Router();
  legacy.all('/{*path}', legacyPublish(delivery));

  app.use(errorMiddleware(log));
  app.use(parseBody(maxBodyBytes));
  app.use(pushApi.routes().routes());
  app.use(v1Fallthrough);
  app.use(legacy.routes());
  return app;
}
