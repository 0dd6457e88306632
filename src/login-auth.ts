// Who may log in as a uid, or subscribe to a private topic (LOGIN_SECRET set). The backend
// gives the page a token:
//   for a uid:   hex(HMAC-SHA256(LOGIN_SECRET, uid))      PHP: hash_hmac('sha256', $uid, $key)
//                or a JWT signed HS256 with LOGIN_SECRET, `sub` = the uid and an `exp`;
//   for a topic: the same with the topic key (topicKey below) in place of LOGIN_SECRET and
//                the topic name in place of the uid;
//   to publish to a topic (CLIENT_PUBLISH_TOPICS): the same with the publish key (publishKey).
// The three domains have different keys, so no uid's token (whatever the uid) is ever a
// topic's, and no subscribe token is a publish token.
import { createHmac } from 'node:crypto';
import type { SocketError } from './events.ts';
import { safeEqual } from './secrets.ts';

/** Topics whose name starts with this need a token to subscribe (declared with the wire shapes). */
export { PRIVATE_TOPIC_PREFIX } from '../packages/push-client/src/protocol.ts';

/**
 * HMAC key of the topic key. The secret is the message here and never the key, as in
 * HKDF-Extract: a uid token is HMAC keyed by the secret, so no uid's token can equal it.
 */
const TOPIC_KEY_LABEL = 'push-server topic token';

/**
 * The key topic tokens are made with, as text (hex), so a JWT library takes it as a secret.
 * PHP: hash_hmac('sha256', $loginSecret, 'push-server topic token').
 */
export function topicKey(loginSecret: string): string {
  return createHmac('sha256', TOPIC_KEY_LABEL).update(loginSecret).digest('hex');
}

/** HMAC key of the publish key: a third domain, so no uid's or topic's token is a publish token. */
const PUBLISH_KEY_LABEL = 'push-server publish token';

/**
 * The key publish tokens are made with, as text (hex).
 * PHP: hash_hmac('sha256', $loginSecret, 'push-server publish token').
 */
export function publishKey(loginSecret: string): string {
  return createHmac('sha256', PUBLISH_KEY_LABEL).update(loginSecret).digest('hex');
}

export function loginToken(secret: string, subject: string): string {
  return createHmac('sha256', secret).update(subject).digest('hex');
}

const HEX_TOKEN = /^[0-9a-f]{64}$/i;
const JWT = /^[\w-]+\.[\w-]+\.[\w-]+$/;

/** Checks tokens made with one key for subjects of one kind (`noun`: in error messages). */
class TokenCheck {
  private readonly key: Uint8Array;

  constructor(
    private readonly secret: string,
    private readonly noun: string,
  ) {
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
        : { code: 'unauthorized', message: `the token is not valid for this ${this.noun}` };
    }
    if (token.length > 4096 || !JWT.test(token)) return { code: 'unauthorized', message: 'the token is malformed' };
    const { errors, jwtVerify } = await import('jose'); // loaded at the first JWT, not before
    try {
      const { payload } = await jwtVerify(token, this.key, { algorithms: ['HS256'], requiredClaims: ['exp', 'sub'] });
      return payload.sub === subject ? null : { code: 'unauthorized', message: `the token is for another ${this.noun}` };
    } catch (err) {
      if (err instanceof errors.JWTExpired) return { code: 'token_expired', message: 'the token has expired' };
      return { code: 'unauthorized', message: 'the token is not valid' };
    }
  }
}

export class LoginVerifier {
  private readonly uids: TokenCheck;
  private readonly topics: TokenCheck;
  private readonly publishers: TokenCheck;

  constructor(secret: string) {
    this.uids = new TokenCheck(secret, 'uid');
    this.topics = new TokenCheck(topicKey(secret), 'topic');
    this.publishers = new TokenCheck(publishKey(secret), 'topic to publish to');
  }

  /** null when `token` lets a page publish to `topic` (CLIENT_PUBLISH_TOPICS), else the error to answer. */
  verifyPublish(topic: string, token: unknown): Promise<SocketError | null> {
    return this.publishers.verify(topic, token);
  }

  /** null when `token` lets a page log in as `uid`, else the error to answer. */
  verify(uid: string, token: unknown): Promise<SocketError | null> {
    return this.uids.verify(uid, token);
  }

  /** null when `token` lets a page subscribe to the private `topic`, else the error to answer. */
  verifyTopic(topic: string, token: unknown): Promise<SocketError | null> {
    return this.topics.verify(topic, token);
  }
}
