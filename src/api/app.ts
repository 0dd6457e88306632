// The push API's Koa application on API_PORT: errors, rate limit, body, auth, routes.
// /api/v1 is the JSON API; every other path reaches the legacy endpoint, as in the original.
import Router from '@koa/router';
import Koa, { type Context, type Middleware } from 'koa';
import { withAccessLog } from './access-log.ts';
import { parseBody } from './body.ts';
import { packageVersion, type Config } from '../config.ts';
import type { Delivery } from '../delivery.ts';
import type { IncomingMessage, RequestListener } from 'node:http';
import { fastLegacy, KOA_PATHS } from './fast-legacy.ts';
import { errorMiddleware, HttpError } from './errors.ts';
import { legacyRoute } from './legacy-routes.ts';
import type { Logger } from '../log.ts';
import { PushAuth, type SignatureLog } from './push-auth.ts';
import { batchSchema, keptQuerySchema, scheduledQuerySchema, type PushApi } from './push-routes.ts';
import { presenceRoutes, usersOnlineSchema, usersQuerySchema } from './presence-routes.ts';
import { checkDocumented, OPENAPI_PATH, openApiDocument } from './openapi.ts';
import { statusRoutes } from './status-routes.ts';
import type { MessageStatus } from '../message-status.ts';
import type { Presence } from '../presence.ts';
import { API_QUERY_BYTES, API_QUERY_PARAMETERS, boundedQuery, MAX_QUERY_PARAMETERS, maxQueryBytes } from './query.ts';
import { pushRateLimit } from './push-rate.ts';
import type { PushObserver } from '../messages.ts';

export interface ApiOptions {
  delivery: Delivery;
  pushApi: PushApi;
  presence: Presence;
  status: MessageStatus;
  /** Why the server cannot serve now (e.g. Redis lost or not answering), or null when it can: for /readyz. */
  notReady: () => Promise<string | null>;
  /** GET /metrics: Prometheus text. */
  renderMetrics: () => Promise<{ contentType: string; body: string }>;
  observer: PushObserver;
  config: Pick<Config, 'maxBodyBytes' | 'maxRememberedSignatures' | 'maxDataBytes' | 'pushSecret' | 'pushRatePerIp' | 'maxUidsPerPush' | 'maxBatchMessages'>;
  /** The client address a request is limited under (TRUST_PROXY): never Koa's ctx.ip. */
  addressOf: (req: IncomingMessage) => string;
  log: Logger;
  /** ACCESS_LOG=on: where each request's JSON line goes (access-log.ts); null: off. */
  accessLog: ((line: string) => void) | null;
  /** Where signed requests are remembered against replay: under WORKERS the primary. @default this process */
  signatures?: SignatureLog;
}

const isV1 = (ctx: Context) => ctx.path === '/api/v1' || ctx.path.startsWith('/api/v1/');

/**
 * /api/v1 and the probes, in any case and with a trailing slash, as the routers match them:
 * their queries are bounded small; the legacy paths carry `content` in theirs.
 */
function smallQueryPath(ctx: Context): boolean {
  const path = ctx.path.toLowerCase();
  return path === '/api/v1' || path.startsWith('/api/v1/') || KOA_PATHS.has(path.endsWith('/') ? path.slice(0, -1) : path);
}

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

/** The /api/v1 routes open to anyone while PUSH_SECRET is unset: pushing and online counts. */
const OPEN_WITHOUT_SECRET: readonly (readonly [method: string, path: string])[] = [
  ['POST', '/api/v1/push'],
  ['POST', '/api/v1/push/batch'],
  ['GET', '/api/v1/online'],
];

/**
 * With no PUSH_SECRET, every other /api/v1 route answers 403: they reveal uids (who is online,
 * whether a uid is), stored message data or scheduled pushes, or cancel them. The route is
 * found by the router's own matching (case, trailing slash, HEAD for GET), so the guard sees
 * what the router would run; a route added later is closed until it is listed above.
 * (GET /api/v1/openapi.json is not on this router: it is served open, with the probes.)
 */
function closedWithoutSecret(v1: Router): Middleware {
  const isOpen = (layer: { path: string | RegExp; methods: string[] }) =>
    OPEN_WITHOUT_SECRET.some(([method, path]) => layer.path === path && layer.methods.includes(method));
  return async (ctx, next) => {
    const match = v1.match(ctx.path, ctx.method);
    const routes = match.pathAndMethod.filter((layer) => layer.methods.length > 0);
    if (match.route && !routes.every(isOpen)) {
      throw new HttpError(
        403,
        `${ctx.method} ${ctx.path} needs PUSH_SECRET: routes that show who is online, read stored messages ` +
          'or list and cancel scheduled pushes are off until PUSH_SECRET is set on the server',
        'forbidden',
      );
    }
    return next();
  };
}

/**
 * Probes and metrics for operators, and the API's OpenAPI document; open (no push secret:
 * firewall them like any metrics port), answered before any body is read. The document is a
 * contract, not user data: it tells no more than the README and a 401 or 403 would (the
 * limits, whether PUSH_SECRET is on), and a client generator needs it before it has the secret.
 */
function operations(notReady: ApiOptions['notReady'], renderMetrics: ApiOptions['renderMetrics'], openApi: string): Router {
  const router = new Router();
  router.get(OPENAPI_PATH, (ctx) => {
    ctx.type = 'application/json';
    ctx.body = openApi;
  });
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
  const { delivery, pushApi, presence, status, notReady, renderMetrics, observer, config, addressOf, log, accessLog, signatures } = options;
  // one router for all of /api/v1, so a known path with another method is a 405, not a 404
  const v1 = pushApi.routes();
  presenceRoutes(v1, presence, config.maxUidsPerPush);
  statusRoutes(v1, status);
  const document = openApiDocument({
    version: packageVersion(),
    push: pushApi.schema,
    batch: batchSchema(pushApi.schema, config.maxBatchMessages),
    usersOnline: usersOnlineSchema(config.maxUidsPerPush),
    scheduledQuery: scheduledQuerySchema,
    usersQuery: usersQuerySchema,
    keptQuery: keptQuerySchema,
    secured: config.pushSecret !== null,
    openWithoutSecret: OPEN_WITHOUT_SECRET,
  });
  checkDocumented(document, v1.stack);
  const app = new Koa();
  app.silent = true; // errors are answered and logged by errorMiddleware
  const legacy = new Router();
  legacy.all('/{*path}', legacyRoute(delivery, config.maxDataBytes, observer));

  app.use(errorMiddleware(log));
  app.use(boundedQuery(API_QUERY_BYTES, API_QUERY_PARAMETERS, smallQueryPath));
  app.use(operations(notReady, renderMetrics, JSON.stringify(document)).routes());
  const limit = config.pushRatePerIp > 0 ? pushRateLimit(config.pushRatePerIp, addressOf) : null;
  if (limit) app.use(limit.middleware);
  const queryBytes = maxQueryBytes(config.maxDataBytes);
  app.use(boundedQuery(queryBytes, MAX_QUERY_PARAMETERS, (ctx) => !smallQueryPath(ctx)));
  if (config.pushSecret === null) app.use(closedWithoutSecret(v1));
  app.use(parseBody(config.maxBodyBytes));
  const auth =
    config.pushSecret === null ? null : new PushAuth(config.pushSecret, { maxSignatures: config.maxRememberedSignatures, ...(signatures ? { signatures } : {}) });
  if (auth) app.use(auth.middleware((ctx) => !isV1(ctx)));
  app.use(v1.routes());
  app.use(v1Fallthrough);
  app.use(legacy.routes());
  const handler = fastLegacy({
    delivery,
    maxContentBytes: config.maxDataBytes,
    maxQueryBytes: queryBytes,
    observer,
    auth,
    rateCheck: limit?.check ?? null,
    log,
    fallback: app.callback(),
  });
  // no page here is meant to tell another site where it came from
  const withPolicy: RequestListener = (req, res) => {
    res.setHeader('Referrer-Policy', 'no-referrer');
    handler(req, res);
  };
  return { handler: accessLog ? withAccessLog(withPolicy, accessLog, addressOf) : withPolicy, close: () => limit?.close() };
}
