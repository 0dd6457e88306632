// The push API's Koa application on API_PORT: errors, body, routes. Every path that no
// other route claims reaches the legacy endpoint, as in the original.
import Router from '@koa/router';
import Koa from 'koa';
import { parseBody } from './body.ts';
import type { Delivery } from './delivery.ts';
import { errorMiddleware } from './http-errors.ts';
import { legacyPublish } from './legacy-api.ts';
import type { Logger } from './log.ts';

export interface ApiOptions {
  delivery: Delivery;
  maxBodyBytes: number;
  log: Logger;
}

export function createApiApp({ delivery, maxBodyBytes, log }: ApiOptions): Koa {
  const app = new Koa();
  app.silent = true; // errors are answered and logged by errorMiddleware
  const router = new Router();
  router.all('/{*path}', legacyPublish(delivery));

  app.use(errorMiddleware(log));
  app.use(parseBody(maxBodyBytes));
  app.use(router.routes());
  return app;
}
