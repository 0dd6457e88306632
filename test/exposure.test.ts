// What a default install shows to whoever reaches its ports, and where secrets could leak:
// the user-data routes without PUSH_SECRET, config errors, webhook URLs with credentials, and
// the admin page's sign-in (a cookie, never the token in a URL or a Referer).
import { expect } from 'chai';
import { ConfigError, loadConfig } from '../src/config.ts';
import { recordingLogger } from './support/logger.ts';
import { WebhookSender } from '../src/webhooks/sender.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { connectClient } from './support/clients.ts';
import { rawRequest } from './support/http.ts';
import { legacyPush, startServer, type TestServer } from './support/server.ts';
import { until } from './support/until.ts';
import { closedPortUrl, startWebhookReceiver } from './support/webhook-receiver.ts';
import type { WebhookObserver } from '../src/webhooks/events.ts';

const PUSH_SECRET = 'exposure-test-secret-0123';

/** Every route that shows who is online, reads stored messages, or lists or cancels schedules. */
const LOCKED: readonly { method: string; path: string; body?: unknown }[] = [
  { method: 'GET', path: '/api/v1/users?online=true' },
  { method: 'GET', path: '/api/v1/users/alice%40example.com' },
  { method: 'POST', path: '/api/v1/users/online', body: { uids: ['alice@example.com'] } },
  { method: 'GET', path: '/api/v1/users/bob/messages' },
  { method: 'GET', path: '/api/v1/scheduled' },
  { method: 'DELETE', path: '/api/v1/scheduled/later-1' },
];

async function call(
  server: TestServer,
  route: { method: string; path: string; body?: unknown },
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string }> {
  const res = await fetch(server.apiUrl + route.path, {
    method: route.method,
    headers: route.body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
    ...(route.body === undefined ? {} : { body: JSON.stringify(route.body) }),
  });
  return { status: res.status, text: await res.text() };
}

/** An online uid, a stored message with data, and a scheduled push: what the routes would show. */
async function withUserData(server: TestServer, headers: Record<string, string> = {}): Promise<void> {
  const alice = await connectClient('v4', server.ioUrl);
  await alice.login('alice@example.com');
  const push = (body: unknown) =>
    fetch(`${server.apiUrl}/api/v1/push`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect((await push({ to: 'bob', data: { otp: '493817' }, ttl: 600 })).status).to.equal(200);
  expect((await push({ to: 'carol', data: 'later', delay: 600, id: 'later-1' })).status).to.equal(202);
}

async function scheduledGauge(server: TestServer): Promise<number> {
  const text = await (await fetch(`${server.apiUrl}/metrics`)).text();
  return Number(/^push_scheduled_pushes (\d+)$/m.exec(text)?.[1]);
}

describe('a default install (no PUSH_SECRET)', () => {
  afterEach(cleanupAll);

  it('answers 403 naming PUSH_SECRET on every route that shows users or messages, or cancels', async () => {
    const server = await startServer();
    await withUserData(server);
    // the router's own matching: HEAD for GET, and any case with a trailing slash (answered in text)
    expect((await call(server, { method: 'HEAD', path: '/api/v1/scheduled' })).status).to.equal(403);
    const shouted = await call(server, { method: 'POST', path: '/API/V1/Users/Online/', body: { uids: ['alice@example.com'] } });
    expect(shouted.status).to.equal(403);
    expect(shouted.text).to.include('PUSH_SECRET');
    for (const route of LOCKED) {
      const { status, text } = await call(server, route);
      expect(status, `${route.method} ${route.path}`).to.equal(403);
      const answer = JSON.parse(text) as { error: { code: string; message: string } };
      expect(Object.keys(answer)).to.deep.equal(['error']);
      expect(answer.error.code).to.equal('forbidden');
      expect(answer.error.message).to.include('PUSH_SECRET');
      expect(text).not.to.match(/493817|carol/);
    }
    // nothing was cancelled
    expect(await scheduledGauge(server)).to.equal(1);
  });

  it('keeps pushing, the online counts and the legacy API open, as in the original', async () => {
    const server = await startServer();
    const c = await connectClient('v2', server.ioUrl);
    await c.login('u1');
    expect((await call(server, { method: 'POST', path: '/api/v1/push', body: { to: 'u1', data: 'v1' } })).status).to.equal(200);
    expect((await call(server, { method: 'POST', path: '/api/v1/push/batch', body: { messages: [{ to: 'u1', data: 'batch' }] } })).status).to.equal(200);
    expect(JSON.parse((await call(server, { method: 'GET', path: '/api/v1/online' })).text)).to.deep.equal({ users: 1, pages: 1 });
    expect(await legacyPush(server.apiUrl, { type: 'publish', to: 'u1', content: 'get' })).to.deep.equal({ status: 200, body: 'ok' });
    expect(await legacyPush(server.apiUrl, { type: 'publish', to: 'u1', content: 'form' }, 'form')).to.deep.equal({ status: 200, body: 'ok' });
    await c.waitFor('new_msg', (d) => d === 'form');
    // unknown routes and methods still say so
    expect((await call(server, { method: 'GET', path: '/api/v1/nope' })).status).to.equal(404);
    expect((await call(server, { method: 'PUT', path: '/api/v1/scheduled' })).status).to.equal(405);
  });

  it('answers an open push with counts, never which of its uids are online', async () => {
    const server = await startServer();
    const c = await connectClient('v4', server.ioUrl);
    await c.login('alice@example.com');
    const to = ['alice@example.com', 'bob@example.com', 'carol@example.com'];
    const push = await call(server, { method: 'POST', path: '/api/v1/push', body: { to, data: 'hi', ttl: 60 } });
    expect(push.status).to.equal(200);
    const answer = JSON.parse(push.text) as { id: string };
    expect(answer).to.deep.equal({ id: answer.id, onlineCount: 1, offlineCount: 2, stored: 3 });
    const batch = await call(server, { method: 'POST', path: '/api/v1/push/batch', body: { messages: [{ to, data: 'again' }] } });
    const [result] = (JSON.parse(batch.text) as { results: { id: string }[] }).results;
    expect(result).to.deep.equal({ status: 200, id: result!.id, onlineCount: 1, offlineCount: 2, stored: 0 });
    expect(push.text + batch.text).not.to.include('@example.com');
  });

  it('serves those routes with PUSH_SECRET set and the right secret, and refuses them without', async () => {
    const server = await startServer({ pushSecret: PUSH_SECRET });
    const auth = { authorization: `Bearer ${PUSH_SECRET}` };
    await withUserData(server, auth);
    for (const route of LOCKED) expect((await call(server, route)).status, `${route.method} ${route.path} without`).to.equal(401);
    const answers = [];
    for (const route of LOCKED) {
      const { status, text } = await call(server, route, auth);
      expect(status, `${route.method} ${route.path}`).to.equal(200);
      answers.push(JSON.parse(text) as unknown);
    }
    expect(answers[0]).to.deep.equal({ uids: ['alice@example.com'], cursor: null });
    expect(answers[3]).to.have.nested.property('messages[0].data.otp', '493817');
    expect(answers[5]).to.deep.equal({ id: 'later-1', cancelled: true });
    expect(await scheduledGauge(server)).to.equal(0);
    // and a push names who of its uids is online
    const to = ['alice@example.com', 'bob'];
    const push = await call(server, { method: 'POST', path: '/api/v1/push', body: { to, data: 'hi' } }, auth);
    expect(JSON.parse(push.text)).to.deep.include({ online: ['alice@example.com'], offline: ['bob'], stored: 0 });
  });
});

describe('secrets in config errors, logs and URLs', () => {
  afterEach(cleanupAll);

  it('config errors never show a secret, and show URLs without credentials, path or query', () => {
    let error: unknown;
    try {
      loadConfig({
        REDIS_URL: 'http://:redis-pass-4711@10.0.0.5:6379',
        PUSH_SECRET: 'push-4711',
        LOGIN_SECRET: 'login-4711',
        WEBHOOK_SECRET: 'hook-4711',
        ADMIN_TOKEN: 'admin-4711',
        WEBHOOK_URL: 'https://hooks.example/services/T0/B0/slack-token-4711?k=query-4711, ftp://u:ftp-pass-4711@files.example',
      });
    } catch (err) {
      error = err;
    }
    expect(error).to.be.instanceOf(ConfigError);
    const problems = (error as ConfigError).problems;
    expect(problems.join('\n')).not.to.include('4711');
    expect(problems).to.deep.equal([
      'PUSH_SECRET must be at least 16 characters (or empty for none), got 9 characters',
      'LOGIN_SECRET must be at least 16 characters (or empty for none), got 10 characters',
      'REDIS_URL must be a redis:// or rediss:// URL (or empty for one node), got "http://***@10.0.0.5:6379"',
      'WEBHOOK_URL must be http(s) URLs separated by commas, got "https://hooks.example/…, ftp://***@files.example"',
      'WEBHOOK_SECRET must be at least 16 characters (or empty for none), got 9 characters',
      'ADMIN_TOKEN must be at least 16 characters (or empty for none), got 10 characters',
    ]);
    // a flag is shown the same way
    expect(() => loadConfig({}, ['--push-secret', 'flag-4711'])).to.throw(ConfigError, /^--push-secret must be at least 16 characters \(or empty for none\), got 9 characters$/);
  });

  it('a webhook URL with user and password sends Basic auth, and its failures never show them', async () => {
    const receiver = await startWebhookReceiver();
    const withCredentials = (url: string) => url.replace('http://', 'http://hook-user:hook%40pass-4711@');
    const failures: string[] = [];
    const observer: WebhookObserver = { sent: () => undefined, failed: (_e, error) => void failures.push(error), dropped: () => undefined };
    const log = recordingLogger();
    const down = withCredentials(await closedPortUrl()).replace('/hooks', '/hooks/path-token-4711');
    const sender = new WebhookSender([withCredentials(receiver.url), down], null, { baseDelayMs: 20, maxDelayMs: 50, maxAttempts: 2 }, log, observer);
    onCleanup(() => sender.close());
    sender.send({ type: 'user.online', uid: 'u1' });
    const [request] = await receiver.waitFor(1);
    expect(request!.path).to.equal('/hooks');
    expect(request!.headers.authorization).to.equal(`Basic ${Buffer.from('hook-user:hook@pass-4711').toString('base64')}`);
    await until(() => failures.length === 2 && /given up/.test(log.text()), 'the down url given up');
    expect(failures).to.deep.equal(['ECONNREFUSED', 'ECONNREFUSED']);
    expect(log.text()).to.match(/http:\/\/\*\*\*@127\.0\.0\.1:\d+\/… \(#2\)/);
    expect(log.text()).not.to.match(/4711|hook-user/);
  });
});

const ADMIN_TOKEN = 'admin-token-0123456789';

function setCookie(res: { headers: Record<string, string | string[] | undefined> }): string {
  const header = res.headers['set-cookie'];
  return Array.isArray(header) ? header.join('\n') : (header ?? '');
}

describe('the admin page sign-in', () => {
  let server: TestServer;
  let web: string;
  beforeEach(async () => {
    server = await startServer({ webPort: 0, adminToken: ADMIN_TOKEN });
    web = server.webUrl!;
  });
  afterEach(cleanupAll);

  const stats = (cookie?: string) => rawRequest(`${web}/admin/stats`, { headers: cookie === undefined ? {} : { cookie } });

  it('takes the token from a form, once, and keeps the session in an HttpOnly SameSite=Strict cookie', async () => {
    const signIn = await rawRequest(`${web}/admin`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: ADMIN_TOKEN }).toString(),
    });
    expect(signIn.status).to.equal(303);
    expect(signIn.headers.location).to.equal('/admin');
    const header = setCookie(signIn);
    expect(header).to.match(/^push_admin=\d+\.[0-9a-f]{32}\.[0-9a-f]{64}; Path=\/admin; Max-Age=43200; HttpOnly; SameSite=Strict$/);
    expect(header).not.to.include(ADMIN_TOKEN);
    const cookie = header.split(';')[0]!;
    const answer = await stats(cookie);
    expect(answer.status).to.equal(200);
    expect(JSON.parse(answer.body)).to.include({ users: 0, pages: 0 });
    // a forged or expired value is no session
    const [name, value] = cookie.split('=') as [string, string];
    const [expiry, id, mac] = value.split('.') as [string, string, string];
    expect((await stats(`${name}=${Number(expiry) + 1}.${id}.${mac}`)).status).to.equal(401);
    expect((await stats(`${name}=1.${id}.${mac}`)).status).to.equal(401);
    // signing out clears it
    const out = await rawRequest(`${web}/admin/sign-out`, { method: 'POST', headers: { cookie } });
    expect(out.status).to.equal(303);
    expect(setCookie(out)).to.match(/^push_admin=; Path=\/admin; Max-Age=0; HttpOnly; SameSite=Strict$/);
  });

  it('takes ?token= once and answers a redirect to /admin without it', async () => {
    const first = await rawRequest(`${web}/admin?token=${ADMIN_TOKEN}`);
    expect(first.status).to.equal(303);
    expect(first.headers.location).to.equal('/admin');
    expect(first.body).not.to.include(ADMIN_TOKEN);
    expect((await stats(setCookie(first).split(';')[0]!)).status).to.equal(200);
  });

  it('refuses a wrong token, and stats without a session', async () => {
    for (const wrong of [
      rawRequest(`${web}/admin?token=wrong-token-0123456789`),
      rawRequest(`${web}/admin`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'token=wrong-token-0123456789' }),
    ]) {
      const res = await wrong;
      expect(res.status).to.equal(303);
      expect(res.headers.location).to.equal('/admin#wrong-token');
      expect(res.headers['set-cookie']).to.equal(undefined);
    }
    const none = await stats();
    expect(none.status).to.equal(401);
    expect(JSON.parse(none.body)).to.have.nested.property('error.code', 'unauthorized');
    // the page itself loads (it shows the form); it carries nothing
    expect((await rawRequest(`${web}/admin`)).status).to.equal(200);
    // a script may still send the token in a header, never in the URL
    expect((await rawRequest(`${web}/admin/stats`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).status).to.equal(200);
    expect((await rawRequest(`${web}/admin/stats?token=${ADMIN_TOKEN}`)).status).to.equal(401);
    const huge = await rawRequest(`${web}/admin`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `token=${'x'.repeat(10_000)}`,
    });
    expect(huge.status).to.equal(413);
  });

  it('sends Referrer-Policy: no-referrer on every answer of the web and API ports', async () => {
    const answers = await Promise.all([
      rawRequest(`${web}/`),
      rawRequest(`${web}/admin`),
      rawRequest(`${web}/admin.js`),
      rawRequest(`${web}/demo.css`),
      rawRequest(`${web}/admin/stats`),
      rawRequest(`${web}/admin?token=${ADMIN_TOKEN}`),
      rawRequest(`${web}/nope`),
      rawRequest(`${web}/admin`, { method: 'DELETE' }),
      rawRequest(`${server.apiUrl}/?type=publish&to=u&content=x`),
      rawRequest(`${server.apiUrl}/api/v1/online`),
      rawRequest(`${server.apiUrl}/healthz`),
    ]);
    for (const res of answers) expect(res.headers['referrer-policy']).to.equal('no-referrer');
  });
});
