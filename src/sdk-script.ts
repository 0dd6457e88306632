// The client SDK (packages/push-client) as one plain script defining the global `PushClient`,
// served on the Socket.IO port at /sdk/push-client.js beside /socket.io/, so pages need no demo
// listener (WEB_PORT=off keeps it). esbuild is a build tool, not a run-time dependency:
// scripts/build.ts bundles the script into dist/ beside the server, which reads it from there
// at start; only code run from source (tsx: tests, a clone) bundles it, at the first request,
// so what it serves is always built from the source beside it.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { StartupError } from './listeners.ts';

/** The SDK's file name in dist/, beside the bundled server. */
export const SDK_FILE = 'push-client.js';

/** Where the Socket.IO port serves it. */
export const SDK_PATH = '/sdk/push-client.js';

/**
 * How long a browser may use its copy without asking again; then a conditional request (the
 * ETag) costs a 304. An hour: a server upgrade reaches pages within it, and the SDK of the
 * hour before speaks the same protocol.
 */
const MAX_AGE_SECONDS = 3600;

/**
 * Defined as `true` by scripts/build.ts in the bundle, where the source branch below is then
 * dropped with its esbuild import; undeclared when run from source.
 */
declare const PUSH_SERVER_BUNDLED: boolean | undefined;

interface Script {
  body: Buffer;
  etag: string;
}

function script(body: Buffer): Script {
  return { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` };
}

/** From source: bundled once per process, at the first request. */
let fromSource: Promise<Script> | null = null;

/**
 * The script to serve: in the bundle, dist/push-client.js read now (a missing file stops the
 * start: the build is incomplete); from source, a function that bundles it when first asked.
 */
export function sdkScript(): () => Promise<Script> {
  // inline, not in a const: esbuild drops the branch only when the test itself is constant
  if (typeof PUSH_SERVER_BUNDLED === 'undefined') {
    return () =>
      (fromSource ??= import('../packages/push-client/build.ts').then(async ({ scriptBundle }) => script(Buffer.from(await scriptBundle()))));
  }
  const file = new URL(`./${SDK_FILE}`, import.meta.url);
  let loaded: Script;
  try {
    loaded = script(readFileSync(file));
  } catch (err) {
    throw new StartupError(
      `the client SDK ${fileURLToPath(file)} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): run npm run build`,
    );
  }
  return () => Promise.resolve(loaded);
}

/** GET or HEAD of SDK_PATH (any query, e.g. ?v=2 to bust a cache): the script, or 304 for its ETag. */
export function serveSdk(load: () => Promise<Script>, req: IncomingMessage, res: ServerResponse, onError: (err: unknown) => void): void {
  const headers = { 'x-content-type-options': 'nosniff', 'cross-origin-resource-policy': 'cross-origin' };
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { ...headers, allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed: use GET');
    return;
  }
  load().then(
    ({ body, etag }) => {
      const cache = { ...headers, 'cache-control': `public, max-age=${MAX_AGE_SECONDS}`, etag };
      if (req.headers['if-none-match']?.split(/\s*,\s*/).includes(etag)) {
        res.writeHead(304, cache).end();
        return;
      }
      res.writeHead(200, { ...cache, 'content-type': 'text/javascript; charset=utf-8', 'content-length': body.length });
      res.end(req.method === 'HEAD' ? undefined : body);
    },
    (err: unknown) => {
      onError(err);
      res.writeHead(500, { ...headers, 'content-type': 'text/plain' }).end('the client SDK could not be built');
    },
  );
}
