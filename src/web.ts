// The demo page on WEB_PORT: a fixed set of files from client-demo/, read once at start, and
// /config.js telling the page where the Socket.IO and push API ports are. The page loads the
// client SDK from the Socket.IO port (/sdk/push-client.js, sdk-script.ts), as any site does.
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { HttpError } from './api/errors.ts';
import type { HistoryJson } from './admin/history.ts';
import type { AdminSessions } from './admin/sessions.ts';
import type { SignInThrottle } from './admin/sign-in-throttle.ts';
import type { TestPushAnswer } from './admin/test-push.ts';
import type { AdminSnapshot, Coverage, UidLookup } from './admin/view.ts';
import { uidSchema } from './names.ts';
import { safeEqual } from './secrets.ts';

const DEMO_DIR = fileURLToPath(new URL('../client-demo/', import.meta.url));

const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/demo.js': { file: 'demo.js', type: 'text/javascript; charset=utf-8' },
  '/demo.css': { file: 'demo.css', type: 'text/css; charset=utf-8' },
};

export interface DemoPorts {
  io: number;
  api: number;
}

/** The admin page, when ADMIN_TOKEN is set. */
export interface AdminPage {
  token: string;
  /** How long a sign-in lasts. */
  sessionSeconds: number;
  /** Mark the session cookie Secure (the server itself serves TLS). */
  secureCookie: boolean;
  stats: () => Promise<AdminSnapshot>;
  history: () => Promise<HistoryJson & Coverage>;
  lookup: (uid: string) => Promise<UidLookup>;
  /** The test push form; throws HttpError for a bad one. */
  push: (body: unknown) => Promise<TestPushAnswer>;
  /** Largest test push body (the content, as JSON, and a little more). */
  maxPushBytes: number;
  /** Who is signed in: in this process, or in Redis for every process of the cluster. */
  sessions: AdminSessions;
  /** Wrong tokens per client address. */
  throttle: SignInThrottle;
  /** The address a request counts under (TRUST_PROXY). */
  addressOf(req: IncomingMessage): string;
}

/**
 * The admin session cookie: `<expiry unix seconds>.<session id>.<hex HMAC-SHA256(ADMIN_TOKEN,
 * expiry and id)>`. The MAC lets a forged or altered cookie be refused without asking the
 * session list, and changing ADMIN_TOKEN ends every session; the token never leaves the
 * server. A session counts while its id is in AdminSessions: signing out removes it there, for
 * every process that shares the list (Redis: every WORKERS process and node).
 */
const SESSION_COOKIE = 'push_admin';
/** A sign-in form holds one token: anything larger is not one. */
const MAX_SIGN_IN_BYTES = 4096;

function sessionValue(token: string, expiresAt: number, id: string): string {
  return `${expiresAt}.${id}.${createHmac('sha256', token).update(`push admin session\n${expiresAt}\n${id}`).digest('hex')}`;
}

/** The session id of a cookie value that is ours and not expired; null for any other. */
function sessionId(token: string, value: string, now: number): string | null {
  const m = /^(\d{1,12})\.([0-9a-f]{32})\.[0-9a-f]{64}$/.exec(value);
  if (!m || Number(m[1]) * 1000 <= now) return null;
  return safeEqual(value, sessionValue(token, Number(m[1]), m[2]!)) ? m[2]! : null;
}

/**
 * The CSRF token of a session: the page reads it from /admin/stats and sends it back in the
 * X-CSRF-Token header of its POSTs. A page of another site can neither read it nor set a
 * custom header without a CORS preflight, which this server never allows; the SameSite=Strict
 * cookie already keeps other sites' requests out, this holds even where SameSite does not.
 */
function csrfToken(token: string, session: string): string {
  return createHmac('sha256', token).update(`push admin csrf\n${session}`).digest('hex');
}

/**
 * How a request to an admin endpoint is signed in: the page's session, a script's Bearer
 * token, or not; or its address sent too many wrong tokens to have one checked.
 */
type AdminAuth = { by: 'session'; session: string } | { by: 'bearer' } | { by: 'none' } | { by: 'throttled'; waitMs: number };

function cookie(req: IncomingMessage, name: string): string | null {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

/** A small body as text, or null when it is larger than `limit` bytes. */
function readBody(req: IncomingMessage, limit: number): Promise<string | null> {
  return new Promise((resolve, reject) => {
    if (Number(req.headers['content-length'] ?? 0) > limit) {
      resolve(null);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) resolve(null);
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** The admin page's JSON endpoints answered to GET (POST /admin/push beside them). */
const ADMIN_API = new Set(['/admin/stats', '/admin/history', '/admin/users']);

/** Rejects when the session list cannot be read (Redis away). */
async function adminAuth(admin: AdminPage, req: IncomingMessage): Promise<AdminAuth> {
  const session = cookie(req, SESSION_COOKIE);
  const id = session === null ? null : sessionId(admin.token, session, Date.now());
  if (id !== null && (await admin.sessions.has(id))) return { by: 'session', session: session! };
  const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
  if (bearer === null) return { by: 'none' };
  // a Bearer token is a guess like a sign-in: counted, and not checked while throttled
  const address = admin.addressOf(req);
  const waitMs = admin.throttle.waitMs(address);
  if (waitMs > 0) return { by: 'throttled', waitMs };
  if (safeEqual(bearer[1]!, admin.token)) return { by: 'bearer' };
  admin.throttle.failed(address);
  return { by: 'none' };
}

const UNAUTHORIZED = 'sign in at /admin, or send Authorization: Bearer ADMIN_TOKEN';

/** 401 or 429 (with Retry-After) for a request that is not signed in; null when it is. */
function refusal(auth: AdminAuth): HttpError | null {
  if (auth.by === 'none') return new HttpError(401, UNAUTHORIZED, 'unauthorized');
  if (auth.by === 'throttled') return new ThrottledError(auth.waitMs);
  return null;
}

/** A 429 for an address that sent too many wrong tokens. */
class ThrottledError extends HttpError {
  readonly retryAfterSeconds: number;

  constructor(waitMs: number) {
    const seconds = Math.ceil(waitMs / 1000);
    super(429, `too many wrong admin tokens from this address; retry in ${seconds} s`, 'rate_limited');
    this.retryAfterSeconds = seconds;
  }
}

async function adminApi(admin: AdminPage, auth: AdminAuth & { by: 'session' | 'bearer' }, path: string, query: string | undefined): Promise<unknown> {
  if (path === '/admin/stats') {
    const snapshot = await admin.stats();
    return auth.by === 'session' ? { ...snapshot, csrf: csrfToken(admin.token, auth.session) } : snapshot;
  }
  if (path === '/admin/history') return admin.history();
  const params = new URLSearchParams(query ?? '');
  const uid = uidSchema.safeParse(params.get('uid') ?? '');
  if (!uid.success || params.getAll('uid').length !== 1) {
    throw new HttpError(400, 'uid must be given once, 1-256 characters: /admin/users?uid=…', 'invalid_request', 'uid');
  }
  return admin.lookup(uid.data);
}

/**
 * POST /admin/push: JSON only, and from the page only with its session's CSRF token (a script
 * with the Bearer token has no ambient credential to abuse, so it needs none).
 */
async function adminPush(admin: AdminPage, req: IncomingMessage): Promise<unknown> {
  const auth = await adminAuth(admin, req);
  const refused = refusal(auth);
  if (refused) throw refused;
  if (auth.by === 'session') {
    const given = req.headers['x-csrf-token'];
    if (typeof given !== 'string' || !safeEqual(given, csrfToken(admin.token, auth.session))) {
      throw new HttpError(403, 'send the X-CSRF-Token header the page got from /admin/stats', 'csrf');
    }
  }
  if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
    throw new HttpError(415, 'send the body as JSON with content-type: application/json');
  }
  const text = await readBody(req, admin.maxPushBytes);
  if (text === null) throw new HttpError(413, `a test push body holds at most ${admin.maxPushBytes} bytes`);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new HttpError(400, 'the body is not valid JSON');
  }
  return admin.push(body);
}

/** Answers what `work` resolves as JSON; an HttpError with its status and reason, anything else 503. */
function answerJson(res: ServerResponse, headers: Record<string, string>, work: Promise<unknown>): void {
  work.then(
    (body) => {
      res.writeHead(200, { ...headers, 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    },
    (err: unknown) => {
      const known = err instanceof HttpError || (err instanceof Error && 'status' in err && 'expose' in err && err.expose === true);
      const status = known ? (err as HttpError).status : 503;
      const error = err instanceof HttpError ? err.toJSON() : { code: 'unavailable', message: known ? (err as Error).message : 'not available now' };
      if (err instanceof ThrottledError) headers = { ...headers, 'retry-after': String(err.retryAfterSeconds) };
      res.writeHead(status, { ...headers, 'content-type': 'application/json' });
      res.end(JSON.stringify({ error }));
    },
  );
}

const ADMIN_FILES: Record<string, { file: string; type: string }> = {
  '/admin': { file: 'admin.html', type: 'text/html; charset=utf-8' },
  '/admin.js': { file: 'admin.js', type: 'text/javascript; charset=utf-8' },
  '/admin.css': { file: 'admin.css', type: 'text/css; charset=utf-8' },
};

export async function demoHandler(ports: DemoPorts, admin: AdminPage | null): Promise<RequestListener> {
  const bodies = new Map<string, { body: Buffer; type: string }>();
  if (admin) {
    for (const [path, { file, type }] of Object.entries(ADMIN_FILES)) {
      bodies.set(path, { body: readFileSync(DEMO_DIR + file), type });
    }
  }
  for (const [path, { file, type }] of Object.entries(FILES)) {
    bodies.set(path, { body: readFileSync(DEMO_DIR + file), type });
  }
  bodies.set('/config.js', {
    body: Buffer.from(`window.PUSH_SERVER = ${JSON.stringify({ ioPort: ports.io, apiPort: ports.api })};\n`),
    type: 'text/javascript; charset=utf-8',
  });

  /** 429 with Retry-After when `req`'s address may not have a token checked now; false when it may. */
  const throttled = (res: ServerResponse, page: AdminPage, req: IncomingMessage, headers: Record<string, string>): boolean => {
    const waitMs = page.throttle.waitMs(page.addressOf(req));
    if (waitMs === 0) return false;
    const { status, message, retryAfterSeconds } = new ThrottledError(waitMs);
    res.writeHead(status, { ...headers, 'retry-after': String(retryAfterSeconds), 'content-type': 'text/plain', connection: 'close' });
    res.end(message);
    return true;
  };

  /**
   * Signing in: a right token answers a redirect to /admin with the cookie of a new session, a
   * wrong one (counted against the address) a redirect to /admin#wrong-token. Either way the
   * token leaves the address bar at once, before the page loads anything that could carry it
   * in a Referer.
   */
  const signIn = (res: ServerResponse, page: AdminPage, req: IncomingMessage, given: string | null, headers: Record<string, string>) => {
    if (throttled(res, page, req, headers)) return;
    if (given === null || !safeEqual(given, page.token)) {
      page.throttle.failed(page.addressOf(req));
      res.writeHead(303, { ...headers, 'cache-control': 'no-store', location: '/admin#wrong-token', 'content-type': 'text/plain' });
      res.end('wrong admin token');
      return;
    }
    const expiresAt = Math.floor(Date.now() / 1000) + page.sessionSeconds;
    const id = randomBytes(16).toString('hex');
    const attributes = `Path=/admin; Max-Age=${page.sessionSeconds}; HttpOnly; SameSite=Strict${page.secureCookie ? '; Secure' : ''}`;
    page.sessions.add(id, expiresAt * 1000).then(
      () => {
        res.writeHead(303, {
          ...headers,
          'cache-control': 'no-store',
          location: '/admin',
          'set-cookie': `${SESSION_COOKIE}=${sessionValue(page.token, expiresAt, id)}; ${attributes}`,
          'content-type': 'text/plain',
        });
        res.end('signed in');
      },
      () => {
        res.writeHead(503, { ...headers, 'cache-control': 'no-store', 'content-type': 'text/plain' });
        res.end('the admin sessions cannot be stored now (is Redis away?); try again');
      },
    );
  };

  /** Signing out ends the session for every process, then clears the cookie. */
  const signOut = (res: ServerResponse, page: AdminPage, req: IncomingMessage, headers: Record<string, string>) => {
    const session = cookie(req, SESSION_COOKIE);
    const id = session === null ? null : sessionId(page.token, session, Date.now());
    (id === null ? Promise.resolve() : page.sessions.remove(id)).then(
      () => {
        const expired = `${SESSION_COOKIE}=; Path=/admin; Max-Age=0; HttpOnly; SameSite=Strict${page.secureCookie ? '; Secure' : ''}`;
        res.writeHead(303, { ...headers, location: '/admin', 'set-cookie': expired, 'content-type': 'text/plain' });
        res.end('signed out');
      },
      () => {
        // the cookie stays: it would still be accepted, so the page must not look signed out
        res.writeHead(503, { ...headers, 'content-type': 'text/plain' });
        res.end('could not sign out now (is Redis away?); try again');
      },
    );
  };

  return (req, res) => {
    const url = req.url ?? '/';
    const mark = url.indexOf('?');
    const path = mark === -1 ? url : url.slice(0, mark);
    const query = mark === -1 ? undefined : url.slice(mark + 1);
    const entry = bodies.get(path);
    // Referrer-Policy: no page here tells the next site (or its own scripts' requests) its URL.
    // No page here may be framed (a framed admin page could be clicked through by another site).
    const headers = {
      'x-content-type-options': 'nosniff',
      'cache-control': 'no-cache',
      'referrer-policy': 'no-referrer',
      'x-frame-options': 'DENY',
      'content-security-policy': "frame-ancestors 'none'",
    };
    if (admin && req.method === 'POST' && (path === '/admin' || path === '/admin/sign-out')) {
      if (path === '/admin/sign-out') {
        signOut(res, admin, req, headers);
        return;
      }
      if (throttled(res, admin, req, headers)) return; // before its body is read
      if (!/^application\/x-www-form-urlencoded\b/i.test(req.headers['content-type'] ?? '')) {
        res.writeHead(415, { ...headers, 'content-type': 'text/plain' });
        res.end('send the token as a form: content-type application/x-www-form-urlencoded, field token');
        return;
      }
      readBody(req, MAX_SIGN_IN_BYTES).then(
        (text) => {
          if (text === null) {
            res.writeHead(413, { ...headers, 'content-type': 'text/plain', connection: 'close' });
            res.end(`a sign-in form holds at most ${MAX_SIGN_IN_BYTES} bytes`);
            return;
          }
          signIn(res, admin, req, new URLSearchParams(text).get('token'), headers);
        },
        () => res.destroy(),
      );
      return;
    }
    if (admin && req.method === 'POST' && path === '/admin/push') {
      answerJson(res, { ...headers, connection: 'close' }, adminPush(admin, req));
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      const allow = admin && path === '/admin' ? 'GET, HEAD, POST' : 'GET, HEAD';
      res.writeHead(405, { ...headers, allow, 'content-type': 'text/plain' });
      res.end('method not allowed');
      return;
    }
    if (admin && path === '/admin' && query !== undefined && new URLSearchParams(query).has('token')) {
      // the link form (/admin?token=…) still works, once: the answer moves the token out of the URL
      signIn(res, admin, req, new URLSearchParams(query).get('token'), headers);
      return;
    }
    if (admin && ADMIN_API.has(path)) {
      // the page's cookie, or a script's Authorization: Bearer ADMIN_TOKEN
      const work = adminAuth(admin, req).then((auth) => {
        const refused = refusal(auth);
        if (refused) throw refused;
        return adminApi(admin, auth as AdminAuth & { by: 'session' | 'bearer' }, path, query);
      });
      answerJson(res, headers, work);
      return;
    }
    if (!entry) {
      res.writeHead(404, { ...headers, 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    res.writeHead(200, { ...headers, 'content-type': entry.type, 'content-length': entry.body.length });
    res.end(req.method === 'HEAD' ? undefined : entry.body);
  };
}
