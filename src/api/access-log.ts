// ACCESS_LOG=on: one JSON line per request on the push API port, written when its answer is
// done (or its connection closed first). It names the request by method and path only: the
// query may carry `secret=` and `content=`, the headers a Bearer token or a signature, the
// body the pushed data, so none of them is read here.
import type { IncomingMessage, RequestListener } from 'node:http';
import { performance } from 'node:perf_hooks';

/** Longest path written; a longer one is cut and ends in `…` (any path reaches the legacy API). */
export const MAX_LOGGED_PATH = 256;

export interface AccessEntry {
  time: string;
  log: 'access';
  method: string;
  /** The request target's path (loggedPath): no query, fragment, scheme or authority. */
  path: string;
  /** null when the connection closed before an answer was started. */
  status: number | null;
  durationMs: number;
  /** As TRUST_PROXY resolves it. */
  client: string;
  /** Present (true) when the connection closed before the answer was sent whole. */
  aborted?: true;
}

/** `scheme://` of an absolute-form target, as Node's parser takes it (letters only). */
const ABSOLUTE_FORM = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;

/**
 * The path of a request target, as it is written to a log: without its query and fragment,
 * and of an absolute-form target (`GET http://user:pass@host/path?x HTTP/1.1`, which a proxy
 * may send and Node passes on as `req.url`) without its scheme and authority, which may hold
 * credentials. At most MAX_LOGGED_PATH characters.
 */
export function loggedPath(target: string): string {
  let path = target;
  const scheme = path.startsWith('/') ? null : ABSOLUTE_FORM.exec(path);
  if (scheme) {
    const rest = path.slice(scheme[0].length);
    const end = rest.search(/[/?#]/);
    path = end === -1 || rest[end] !== '/' ? '/' : rest.slice(end);
  }
  const cut = path.search(/[?#]/);
  if (cut !== -1) path = path.slice(0, cut);
  return path.length > MAX_LOGGED_PATH ? `${path.slice(0, MAX_LOGGED_PATH)}…` : path;
}

/** `handler`, with one line per request given to `write` (JSON, no newline). */
export function withAccessLog(handler: RequestListener, write: (line: string) => void, addressOf: (req: IncomingMessage) => string): RequestListener {
  return (req, res) => {
    const startedAt = performance.now();
    res.once('close', () => {
      const entry: AccessEntry = {
        time: new Date().toISOString(),
        log: 'access',
        method: req.method ?? '',
        path: loggedPath(req.url ?? ''),
        status: res.headersSent ? res.statusCode : null,
        durationMs: Math.round((performance.now() - startedAt) * 1000) / 1000,
        client: addressOf(req),
        ...(res.writableFinished ? {} : { aborted: true as const }),
      };
      write(JSON.stringify(entry)); // escapes control characters: a path cannot forge a line
    });
    handler(req, res);
  };
}
