// Who may log in as a uid, or subscribe to a private topic (LOGIN_SECRET set). The backend
// gives the page a token for the subject (the uid, or `topic:<name>`):
//   hex(HMAC-SHA256(LOGIN_SECRET, subject))   PHP: hash_hmac('sha256', $uid, $key)
//   or a JWT signed HS256 with LOGIN_SECRET, `sub` = subject and an `exp`.
import { createHmac } from 'node:crypto';
import type { SocketError } from './events.ts';
import { safeEqual } from './push-auth.ts';

/** Topics whose name starts with this need a token to subscribe. */
export const PRIVATE_TOPIC_PREFIX = 'private-';

/** The subject a private topic's token is made for (kept apart from uids). */
export function topicSubject(topic: string): string {
  return `topic:${topic}`;
}

export function loginToken(secret: string, subject: string): string {
  return createHmac('sha256', secret).update(subject).digest('hex');
}

const HEX_TOKEN = /^[0-9a-f]{64}$/i;
const JWT = /^[\w-]+\.[\w-]+\.[\w-]+$/;

export class LoginVerifier {
  private readonly key: Uint8Array;

  constructor(private readonly secret: string) {
    this.key = new TextEncoder().encode(secret);
  }

  /** null when `token` proves `subject`, else the error to answer. */
  async verify(subject: string, token: unknown): Promise<SocketError | null> {
    if (typeof token !== 'string' || token === '') {
      return { code: 'unauthorized', message: 'a token is required' };
    }
    if (HEX_TOKEN.test(token)) {
      return safeEqual(token.toLowerCase(), loginToken(this.secret, subject))
        ? null
        : { code: 'unauthorized', message: 'the token is not valid for this uid' };
    }
    if (token.length > 4096 || !JWT.test(token)) return { code: 'unauthorized', message: 'the token is malformed' };
    const { errors, jwtVerify } = await import('jose'); // loaded at the first JWT, not before
    try {
      const { payload } = await jwtVerify(token, this.key, { algorithms: ['HS256'], requiredClaims: ['exp', 'sub'] });
      return payload.sub === subject ? null : { code: 'unauthorized', message: 'the token is for another subject' };
    } catch (err) {
      if (err instanceof errors.JWTExpired) return { code: 'token_expired', message: 'the token has expired' };
      return { code: 'unauthorized', message: 'the token is not valid' };
    }
  }
}
