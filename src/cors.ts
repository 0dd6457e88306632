// CORS_ORIGINS: one rule for what pages of other sites may read on the Socket.IO port, Socket.IO's
// polling requests and SSE streams (GET /events) alike. docs/protocol.md §2.
//
// - A list: a listed origin is answered with its name and credentials allowed; another origin
//   is refused (WebSocket included, which CORS does not cover: socket-server.ts checks it).
// - `*`: any origin, without credentials (`Access-Control-Allow-Origin: *`), so a page of any
//   site reads what it would read without the browser's cookies, and a proxy in front that
//   signs users in by cookie does not become readable from other sites.
//   The one exception is socket.io-client 2.x (Engine.IO protocol 3), what legacy pages run:
//   its XHR polling always asks for credentials (withCredentials defaults to true there), which
//   a browser refuses to read under `*`, so every legacy page on another origin would fail to
//   connect. Its requests get the origin reflected with credentials, as the original answered
//   them, and so does its JSONP polling, which a script tag sends with cookies anyway. A site
//   that wants no credentials for them either lists its origins.
import type { IncomingMessage } from 'node:http';

/** The CORS answer to one request: who may read it, and whether with the browser's credentials. */
export type CorsAnswer =
  /** The request names no Origin (a backend, an app, a same-origin page): no CORS headers. */
  | { kind: 'none' }
  /** An origin not in the list: refused. */
  | { kind: 'refused' }
  | { kind: 'allowed'; origin: '*' } // credentials never
  | { kind: 'allowed'; origin: string; credentials: true };

export class CorsRule {
  private readonly listed: ReadonlySet<string> | null;

  constructor(origins: '*' | readonly string[]) {
    this.listed = origins === '*' ? null : new Set(origins);
  }

  /** Whether CORS_ORIGINS is a list (then JSONP polling is refused: socket-server.ts). */
  get isList(): boolean {
    return this.listed !== null;
  }

  /**
   * The answer to a request from `origin` (its Origin header). `legacyClient`: the request is
   * socket.io-client 2.x's (Engine.IO protocol 3), which sends credentials whatever the page.
   */
  answer(origin: string | undefined, legacyClient = false): CorsAnswer {
    if (origin === undefined) return { kind: 'none' };
    if (this.listed !== null) return this.listed.has(origin) ? { kind: 'allowed', origin, credentials: true } : { kind: 'refused' };
    return legacyClient ? { kind: 'allowed', origin, credentials: true } : { kind: 'allowed', origin: '*' };
  }

  /** The answer as response headers; null when refused. */
  headers(origin: string | undefined, legacyClient = false): Record<string, string> | null {
    const answer = this.answer(origin, legacyClient);
    if (answer.kind === 'refused') return null;
    if (answer.kind === 'none') return {};
    if (answer.origin === '*') return { 'access-control-allow-origin': '*' };
    return { 'access-control-allow-origin': answer.origin, 'access-control-allow-credentials': 'true', vary: 'Origin' };
  }
}

/** Whether `req` is an Engine.IO protocol 3 request (socket.io-client 2.x): `EIO=3` in its query. */
export function isEngineIo3(req: IncomingMessage): boolean {
  const url = req.url ?? '';
  const mark = url.indexOf('?');
  return mark !== -1 && new URLSearchParams(url.slice(mark + 1)).get('EIO') === '3';
}
