// Who may push (PUSH_SECRET set): every API request proves the secret by one of
//   Authorization: Bearer <secret>
//   a `secret` field in the body or the query string (PHP adds one array entry)
//   X-Push-Timestamp: <unix seconds> and X-Push-Signature: <hex HMAC-SHA256(secret, signed)>
//   where signed = timestamp + "\n" + METHOD + "\n" + request target (path and query, as sent)
//   + "\n" + raw body. Off by more than 5 minutes, or seen before, is refused (replay).
// Comparisons are constant-time. A refusal is 401: `fail` on the legacy endpoint, JSON on /api.
// A signature is remembered until its timestamp leaves the window; when the most allowed are
// remembered, a new signed request is refused with 503 rather than one of them forgotten.
import { createHmac } from 'node:crypto';
import { safeEqual, SecretMatcher } from '../secrets.ts';
import type { Context, Middleware } from 'koa';
import { ExpiryQueue } from '../expiry-queue.ts';
import { HttpError } from './errors.ts';

/** How far a signature's timestamp may be from the server's clock, seconds. */
export const SIGNATURE_WINDOW_SECONDS = 300;

/** A new signed request while the most signatures allowed are remembered (503). */
export class SignaturesFull extends HttpError {
  constructor(
    max: number,
    /** Until the first remembered one expires. */
    readonly retryAfterSeconds: number,
  ) {
    super(503, `${max} signed requests are already remembered against replay; retry later, or send the secret as a Bearer header`);
  }
}

export function signRequest(secret: string, timestamp: string, method: string, target: string, body: string): string {
  return createHmac('sha256', secret).update(`${timestamp}\n${method}\n${target}\n${body}`).digest('hex');
}

function bodyOf(ctx: Context): Record<string, unknown> | null {
  const body: unknown = ctx.request.body;
  return typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>) : null;
}

/** What the rules look at, wherever the request came from. */
export interface AuthRequest {
  authorization: string;
  signature: string;
  timestamp: string;
  method: string;
  /** Path and query as sent. */
  target: string;
  rawBody: string;
  /** A `secret` field from the body or the query string, if any. */
  fieldSecret: unknown;
}

export interface PushAuthOptions {
  /** Signatures remembered at once (MAX_REMEMBERED_SIGNATURES, about 170 bytes each). */
  maxSignatures: number;
}

export class PushAuth {
  private readonly seen = new Set<string>();
  private readonly seenExpiry = new ExpiryQueue<string>();
  private readonly maxSignatures: number;
  private readonly matcher: SecretMatcher;

  constructor(
    private readonly secret: string,
    options: PushAuthOptions,
  ) {
    this.maxSignatures = options.maxSignatures;
    this.matcher = new SecretMatcher(secret);
  }

  /** Koa middleware; runs after the body is parsed. `legacy(ctx)` says which answer style. */
  middleware(isLegacy: (ctx: Context) => boolean): Middleware {
    return async (ctx, next) => {
      let problem: string | null;
      try {
        problem = this.check(ctx);
      } catch (err) {
        if (err instanceof SignaturesFull) ctx.set('Retry-After', String(err.retryAfterSeconds));
        throw err;
      }
      if (problem !== null) {
        ctx.set('WWW-Authenticate', 'Bearer');
        if (isLegacy(ctx)) {
          ctx.status = 401;
          ctx.body = 'fail';
          return;
        }
        throw new HttpError(401, problem);
      }
      return next();
    };
  }

  /** null when the request proves the secret, else why not. Throws SignaturesFull (503). */
  check(ctx: Context, now = Date.now()): string | null {
    const body = bodyOf(ctx);
    // taken out whatever the outcome, so a strict v1 schema never sees it
    const fieldSecret = body?.secret ?? ctx.query.secret;
    if (body) delete body.secret;
    const rawBody = (ctx.request as { rawBody?: unknown }).rawBody;
    return this.verify(
      {
        authorization: ctx.get('authorization'),
        signature: ctx.get('x-push-signature'),
        timestamp: ctx.get('x-push-timestamp'),
        method: ctx.method,
        target: ctx.url,
        rawBody: typeof rawBody === 'string' ? rawBody : '',
        fieldSecret,
      },
      now,
    );
  }

  /**
   * The rules, apart from Koa: null when one of the proofs holds, else why not. Throws
   * SignaturesFull for a good signature that cannot be remembered.
   */
  verify(r: AuthRequest, now = Date.now()): string | null {
    if (r.authorization !== '') {
      const m = /^Bearer (.+)$/i.exec(r.authorization);
      return m && this.matcher.matches(m[1]!) ? null : 'the Authorization header does not hold the push secret';
    }
    if (r.signature !== '') return this.checkSignature(r, now);
    if (r.fieldSecret !== undefined) {
      return typeof r.fieldSecret === 'string' && this.matcher.matches(r.fieldSecret) ? null : 'the secret field is wrong';
    }
    return 'a push must carry the push secret: Authorization: Bearer, a secret field, or an X-Push-Signature';
  }

  private checkSignature(r: AuthRequest, now: number): string | null {
    if (!/^\d{1,12}$/.test(r.timestamp)) return 'X-Push-Timestamp must be unix seconds';
    if (Math.abs(now / 1000 - Number(r.timestamp)) > SIGNATURE_WINDOW_SECONDS) {
      return `X-Push-Timestamp is more than ${SIGNATURE_WINDOW_SECONDS} s from the server's time`;
    }
    const expected = signRequest(this.secret, r.timestamp, r.method, r.target, r.rawBody);
    if (!safeEqual(r.signature.toLowerCase(), expected)) return 'X-Push-Signature does not match the request';
    this.forgetOld(now);
    if (this.seen.has(expected)) return 'this signed request was made before (replay)';
    if (this.seen.size >= this.maxSignatures) {
      const firstExpiry = this.seenExpiry.nextAt ?? now;
      throw new SignaturesFull(this.maxSignatures, Math.max(1, Math.ceil((firstExpiry - now) / 1000)));
    }
    this.seen.add(expected);
    // after (timestamp + window) s the timestamp check refuses it anyway: forgotten from then
    this.seenExpiry.push((Number(r.timestamp) + SIGNATURE_WINDOW_SECONDS) * 1000 + 1, expected);
    return null;
  }

  private forgetOld(now: number): void {
    for (const sig of this.seenExpiry.popDue(now)) this.seen.delete(sig);
  }
}
