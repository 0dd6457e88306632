// PUSH_RATE_PER_IP for the API port: one token bucket per client address, shared by the Koa
// app (middleware) and the lean legacy GET path (check), so both count alike.
import type { IncomingMessage } from 'node:http';
import type { Middleware } from 'koa';
import { RateLimiter } from '../rate-limit.ts';
import { HttpError } from './errors.ts';

/** A request over PUSH_RATE_PER_IP: how long to wait and what to say. */
export interface RateRefusal {
  retryAfterSeconds: number;
  message: string;
}

/** PUSH_RATE_PER_IP: a token bucket per client address, bursts up to twice the rate. */
export function pushRateLimit(
  perSecond: number,
  addressOf: (req: IncomingMessage) => string,
): { check(req: IncomingMessage): RateRefusal | null; middleware: Middleware; close(): void } {
  const limiter = new RateLimiter<string>(perSecond, 2 * perSecond);
  const sweeper = setInterval(() => limiter.sweep(), 10_000); // cleared by close()
  const check = (req: IncomingMessage): RateRefusal | null => {
    const ip = addressOf(req);
    const waitMs = limiter.take(ip);
    if (waitMs === 0) return null;
    return { retryAfterSeconds: Math.ceil(waitMs / 1000), message: `more than ${perSecond} requests a second from ${ip}; retry later` };
  };
  const middleware: Middleware = async (ctx, next) => {
    const refusal = check(ctx.req);
    if (refusal) {
      ctx.set('Retry-After', String(refusal.retryAfterSeconds));
      throw new HttpError(429, refusal.message);
    }
    return next();
  };
  return { check, middleware, close: () => clearInterval(sweeper) };
}
