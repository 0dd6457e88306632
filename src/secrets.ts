// How secrets are handled wherever they are used: compared in constant time, and a URL that
// may carry credentials shown in logs and error messages by its scheme and host only. A
// password or token sits in the userinfo (redis://:pw@host), the path (webhook URLs like
// https://hooks.example/services/T0/B0/XXXX) or the query, so all three are hidden.
import { hash, timingSafeEqual } from 'node:crypto';

/**
 * Equal in constant time whatever the lengths (both sides are hashed first). One-shot
 * hash(): a createHash() object per side cost about 15k instructions per push checked.
 */
export function safeEqual(a: string, b: string): boolean {
  return timingSafeEqual(hash('sha256', a, 'buffer'), hash('sha256', b, 'buffer'));
}

/**
 * Equal to a fixed secret, in constant time for values of the secret's length; a value of
 * another length is refused at once, which tells a timing observer the secret's length and
 * nothing of its bytes (as Python's hmac.compare_digest and Go's ConstantTimeCompare do).
 * For PUSH_SECRET, checked on every push: safeEqual's two digests cost about 15k of the
 * server's 125k instructions per push; this costs about 1k (callgrind, bench/push-profile.ts).
 */
export class SecretMatcher {
  private readonly bytes: Buffer;

  constructor(secret: string) {
    this.bytes = Buffer.from(secret);
  }

  matches(value: string): boolean {
    const given = Buffer.from(value);
    return given.length === this.bytes.length && timingSafeEqual(given, this.bytes);
  }
}

/** `scheme://host[:port]`, with `***@` where credentials were and `/…` where a path or query was. */
export function shownUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return '(not a URL)';
  }
  // only special schemes (http, https, ws, file…) have an origin; redis: does not
  const host = url.host;
  if (host === '') return `${url.protocol}…`;
  const credentials = url.username !== '' || url.password !== '' ? '***@' : '';
  const rest = (url.pathname !== '' && url.pathname !== '/') || url.search !== '' || url.hash !== '' ? '/…' : '';
  return `${url.protocol}//${credentials}${host}${rest}`;
}
