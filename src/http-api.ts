// The push API's Koa application on API_PORT: errors, rate limit, body, auth, routes.
// /api/v1 is the JSON API; every other path reaches the legacy endpoint, as in the original.
import Router from '@koa/router';
import Koa, { type Context, type Middleware } from 'koa';
import { parseBody } from './body.ts';
import type { Config } from './config.ts';
import type { Delivery } from './delivery.ts';
import type { RequestListener } from 'node:http';
import { fastLegacy } from './fast-legacy.ts';
import { errorMiddleware, HttpError } from './http-errors.ts';
import { legacyPublish, type PushObserver } from './legacy-api.ts';
import type { Logger } from './log.ts';
import { PushAuth } from './push-auth.ts';
import type { PushApi } from './push-api.ts';
import { presenceRoutes } from './presence-api.ts';
import type { Presence } from './presence.ts';
import { RateLimiter } from './rate-limit.ts';

export interface ApiOptions {
  delivery: Delivery;
  pushApi: PushApi;
  presence: Presence;
  /** Why the server cannot serve now (e.g. Redis lost or not answering), or null when it can: for /readyz. */
  notReady: () => Promise<string | null>;
  /** GET /metrics: Prometheus text. */
  renderMetrics: () => Promise<{ contentType: string; body: string }>;
  observer: PushObserver;
  config: Pick<Config, 'maxBodyBytes' | 'maxDataBytes' | 'pushSecret' | 'pushRatePerIp' | 'maxUidsPerPush'>;
  log: Logger;
}

const isV1 = (ctx: Context) => ctx.path === '/api/v1' || ctx.path.startsWith('/api/v1/');

/** What no /api/v1 route took: 405 when the path exists with other methods, else 404. */
const v1Fallthrough: Middleware = async (ctx, next) => {
  if (!isV1(ctx)) return next();
  const matched = (ctx as { matched?: { methods: string[] }[] }).matched ?? [];
  const methods = [...new Set(matched.flatMap((layer) => layer.methods))];
  if (methods.length > 0) {
    ctx.set('Allow', methods.join(', '));
    throw new HttpError(405, `${ctx.method} is not allowed here; use ${methods.join(', ')}`);
  }
  throw new HttpError(404, `no API route ${ctx.method} ${ctx.path}`);
};

/** A request over PUSH_RATE_PER_IP: how long to wait and what to say. */
export interface RateRefusal {
  retryAfterSeconds: number;
  message: string;
}

/** PUSH_RATE_PER_IP: a token bucket per client address, bursts up to twice the rate. */
function rateLimit(perSecond: number): { check(ip: string): RateRefusal | null; middleware: Middleware; close(): void } {
  const limiter = new RateLimiter<string>(perSecond, 2 * perSecond);
  const sweeper = setInterval(() => limiter.sweep(), 10_000);
  sweeper.unref();
  const check = (ip: string): RateRefusal | null => {
    const waitMs = limiter.take(ip);
    if (waitMs === 0) return null;
    return { retryAfterSeconds: Math.ceil(waitMs / 1000), message: `more than ${perSecond} requests a second from ${ip}; retry later` };
  };
  const middleware: Middleware = async (ctx, next) => {
    const refusal = check(ctx.ip);
    if (refusal) {
      ctx.set('Retry-After', String(refusal.retryAfterSeconds));
      throw new HttpError(429, refusal.message);
    }
    return next();
  };
  return { check, middleware, close: () => clearInterval(sweeper) };
}

/**
 * Probes and metrics for operators; open (no push secret: firewall them like any metrics
 * port), answered before any body is read.
 */
function operations(notReady: ApiOptions['notReady'], renderMetrics: ApiOptions['renderMetrics']): Router {
  const router = new Router();
  router.get('/metrics', async (ctx) => {
    const { contentType, body } = await renderMetrics();
    ctx.type = contentType;
    ctx.body = body;
  });
  router.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok' };
  });
  router.get('/readyz', async (ctx) => {
    const reason = await notReady();
    ctx.status = reason === null ? 200 : 503;
    ctx.body = reason === null ? { ready: true } : { ready: false, reason };
  });
  return router;
}

/** The API port's request handler: the lean legacy GET path in front of the Koa app. */
export function createApiApp(options: ApiOptions): { handler: RequestListener; close(): void } {
  const { delivery, pushApi, presence, notReady, renderMetrics, observer, config, log } = options;
  // one router for all of /api/v1, so a known path with another method is a 405, not a 404
  const v1 = pushApi.routes();
  presenceRoutes(v1, presence, config.maxUidsPerPush);
  const app = new Koa();
  app.silent = true; // errors are answered and logged by errorMiddleware
  const legacy = new Router();
  legacy.all('/{*path}', legacyPublish(delivery, config.maxDataBytes, observer));

  app.use(errorMiddleware(log));
  app.use(operations(notReady, renderMetrics).routes());
  const limit = config.pushRatePerIp > 0 ? rateLimit(config.pushRatePerIp) : null;
  if (limit) app.use(limit.middleware);
  app.use(parseBody(config.maxBodyBytes));
  const auth = config.pushSecret === null ? null : new PushAuth(config.pushSecret);
  if (auth) app.use(auth.middleware((ctx) => !isV1(ctx)));
  app.use(v1.routes());
  app.use(v1Fallthrough);
  app.use(legacy.routes());
  const handler = fastLegacy({
    delivery,
    maxContentBytes: config.maxDataBytes,
    observer,
    auth,
    rateCheck: limit?.check ?? null,
    log,
    fallback: app.callback(),
  });
  return { handler, close: () => limit?.close() };
}
