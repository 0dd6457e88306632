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
