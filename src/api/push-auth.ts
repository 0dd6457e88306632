// Who may push (PUSH_SECRET set): every API request proves the secret by one of
//   Authorization: Bearer <secret>
//   a `secret` field in the body or the query string (PHP adds one array entry)
//   X-Push-Timestamp: <unix seconds> and X-Push-Signature: <hex HMAC-SHA256(secret, signed)>
//   where signed = timestamp + "\n" + METHOD + "\n" + request target (path and query, as sent)
//   + "\n" + raw body. Off by more than 5 minutes, or seen before, is refused (replay).
// Comparisons are constant-time. A refusal is 401: `fail` on the legacy endpoint, JSON on /api.
// A signature is remembered until its timestamp leaves the window; when the most allowed are
// remembered, a new signed request is refused with 503 rather than one of them forgotten.
// Under WORKERS the primary remembers them for every worker (cluster/shared-limits.ts).
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

/** Null when a request proves the secret, else why not. */
export type Verdict = string | null;

/** What remembering a signature found: the first time, a replay, or no room (retry after that many seconds). */
export type Remembered = 'new' | 'seen' | { full: number };

/**
 * The signatures seen within the window, against replay: this process's own (SignatureMemory),
 * or under WORKERS the primary's for every worker (cluster/shared-limits.ts).
 */
export interface SignatureLog {
  /** Remembers `signature` until `expiresAt` (ms) unless it is there already, or there is no room. */
  remember(signature: string, expiresAt: number, now: number): Remembered | Promise<Remembered>;
}

/** Signatures remembered in this process, at most `max` at once, each until it expires. */
export class SignatureMemory implements SignatureLog {
  private readonly seen = new Set<string>();
  private readonly expiry = new ExpiryQueue<string>();

  constructor(private readonly max: number) {}

  remember(signature: string, expiresAt: number, now: number): Remembered {
    for (const sig of this.expiry.popDue(now)) this.seen.delete(sig);
    if (this.seen.has(signature)) return 'seen';
    if (this.seen.size >= this.max) return { full: Math.max(1, Math.ceil(((this.expiry.nextAt ?? now) - now) / 1000)) };
    this.seen.add(signature);
    this.expiry.push(expiresAt, signature);
    return 'new';
  }
}

export interface PushAuthOptions {
  /** Signatures remembered at once (MAX_REMEMBERED_SIGNATURES, about 170 bytes each). */
  maxSignatures: number;
  /** Where signatures are remembered. @default a SignatureMemory of maxSignatures in this process */
  signatures?: SignatureLog;
}

export class PushAuth {
  private readonly signatures: SignatureLog;
  private readonly maxSignatures: number;
  private readonly matcher: SecretMatcher;

  constructor(
    private readonly secret: string,
    options: PushAuthOptions,
  ) {
    this.maxSignatures = options.maxSignatures;
    this.signatures = options.signatures ?? new SignatureMemory(options.maxSignatures);
    this.matcher = new SecretMatcher(secret);
  }

  /** Koa middleware; runs after the body is parsed. `legacy(ctx)` says which answer style. */
  middleware(isLegacy: (ctx: Context) => boolean): Middleware {
    return async (ctx, next) => {
      let problem: Verdict;
      try {
        problem = await this.check(ctx);
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

  /** null when the request proves the secret, else why not. Throws (or rejects with) SignaturesFull (503). */
  check(ctx: Context, now = Date.now()): Verdict | Promise<Verdict> {
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
   * SignaturesFull for a good signature that cannot be remembered. A signed request's answer
   * is a promise when the signatures are remembered elsewhere (the WORKERS primary).
   */
  verify(r: AuthRequest, now = Date.now()): Verdict | Promise<Verdict> {
    if (r.authorization === '' && r.signature !== '') return this.checkSignature(r, now);
    return this.verifyUnsigned(r);
  }

  /** verify() for a request without X-Push-Signature: answered at once. */
  verifyUnsigned(r: Pick<AuthRequest, 'authorization' | 'fieldSecret'>): Verdict {
    if (r.authorization !== '') {
      const m = /^Bearer (.+)$/i.exec(r.authorization);
      return m && this.matcher.matches(m[1]!) ? null : 'the Authorization header does not hold the push secret';
    }
    if (r.fieldSecret !== undefined) {
      return typeof r.fieldSecret === 'string' && this.matcher.matches(r.fieldSecret) ? null : 'the secret field is wrong';
    }
    return 'a push must carry the push secret: Authorization: Bearer, a secret field, or an X-Push-Signature';
  }

  private checkSignature(r: AuthRequest, now: number): Verdict | Promise<Verdict> {
    if (!/^\d{1,12}$/.test(r.timestamp)) return 'X-Push-Timestamp must be unix seconds';
    if (Math.abs(now / 1000 - Number(r.timestamp)) > SIGNATURE_WINDOW_SECONDS) {
      return `X-Push-Timestamp is more than ${SIGNATURE_WINDOW_SECONDS} s from the server's time`;
    }
    const expected = signRequest(this.secret, r.timestamp, r.method, r.target, r.rawBody);
    if (!safeEqual(r.signature.toLowerCase(), expected)) return 'X-Push-Signature does not match the request';
    // after (timestamp + window) s the timestamp check refuses it anyway: forgotten from then
    const remembered = this.signatures.remember(expected, (Number(r.timestamp) + SIGNATURE_WINDOW_SECONDS) * 1000 + 1, now);
    return remembered instanceof Promise ? remembered.then((found) => this.verdict(found)) : this.verdict(remembered);
  }

  private verdict(found: Remembered): Verdict {
    if (found === 'seen') return 'this signed request was made before (replay)';
    if (found !== 'new') throw new SignaturesFull(this.maxSignatures, found.full);
    return null;
  }
}
