// The client SDK against a real server, in Node with the real socket.io-client 4.x.
import { expect } from 'chai';
import { SignJWT } from 'jose';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { io } from 'socket.io-client';
import { PushClient, type Options, type PushClientError } from '../packages/push-client/src/index.ts';
import type { MessageMeta } from '../src/events.ts';
import { loginToken, topicKey } from '../src/login-auth.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { withDeadline } from './support/clients.ts';
import { startServer, type TestServer } from './support/server.ts';
import { until } from './support/until.ts';

function sdk(server: TestServer, uid: string, options: Options = {}): PushClient {
  const client = new PushClient(server.ioUrl, { uid, io: (url, opts) => io(url, { ...opts, forceNew: true }), ...options });
  onCleanup(() => client.close());
  return client;
}

/** Counting stored messages needs it (without PUSH_SECRET that route answers 403). */
const SECRET = 'sdk-test-secret-0123456';
const AUTH = { authorization: `Bearer ${SECRET}` };

async function push(server: TestServer, body: unknown): Promise<{ id: string }> {
  const res = await fetch(`${server.apiUrl}/api/v1/push`, {
    method: 'POST',
    headers: { ...AUTH, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return (await res.json()) as { id: string };
}

async function stored(server: TestServer, uid: string): Promise<number> {
  const res = await fetch(`${server.apiUrl}/api/v1/users/${uid}/messages`, { headers: AUTH });
  return ((await res.json()) as { messages: unknown[] }).messages.length;
}


function loggedIn(client: PushClient): Promise<{ ok: boolean; pending?: number }> {
  return withDeadline(
    new Promise((resolve) => {
      const stop = client.onStatus((_status, login) => {
        if (login) {
          stop();
          resolve(login as { ok: boolean; pending?: number });
        }
      });
    }),
    'login',
  );
}

describe('client SDK', () => {
  afterEach(cleanupAll);

  it('acks each message after its handler, so it is delivered once', async () => {
    const server = await startServer({ pushSecret: SECRET });
    await push(server, { to: 'u', data: 'stored', ttl: 60 });
    const client = sdk(server, 'u');
    const got: [unknown, MessageMeta | undefined][] = [];
    client.on('message', (data, meta) => void got.push([data, meta]));
    expect(await loggedIn(client)).to.deep.include({ ok: true, pending: 1 });
    await until(async () => (await stored(server, 'u')) === 0, 'the SDK to ack');
    expect(got).to.have.length(1);
    expect(got[0]![1]).to.include({ stored: true, redelivery: true });
  });

  it('drops a message that comes twice by id, and acks the copy', async () => {
    const server = await startServer({ ackTimeoutMs: 60_000, pushSecret: SECRET });
    const client = sdk(server, 'v');
    await loggedIn(client);
    let release!: () => void;
    const handled: string[] = [];
    client.on('message', async (_data, meta) => {
      handled.push(meta!.id);
      await new Promise<void>((r) => (release = r)); // still handling: not acked yet
    });
    const { id } = await push(server, { to: 'v', data: 'slow', ttl: 60 });
    await until(async () => handled.length === 1, 'the handler');

    client.disconnect(); // the stored message comes again at the next login
    const relogin = loggedIn(client);
    client.connect();
    expect(await relogin).to.deep.include({ pending: 1 });
    await until(async () => (await stored(server, 'v')) === 0, 'the copy to be acked');
    release();
    expect(handled).to.deep.equal([id]);
  });

  it('does not ack when a handler throws, so the message comes again', async () => {
    const server = await startServer({ pushSecret: SECRET });
    const client = sdk(server, 'w');
    await loggedIn(client);
    let calls = 0;
    client.on('message', () => {
      calls++;
      throw new Error('handler broke');
    });
    const originalError = console.error;
    console.error = () => {}; // the SDK reports the failure; keep test output clean
    try {
      await push(server, { to: 'w', data: 'fragile', ttl: 60 });
      await until(async () => calls === 1, 'the handler');
      expect(await stored(server, 'w')).to.equal(1);
      client.disconnect();
      const relogin = loggedIn(client);
      client.connect();
      expect(await relogin).to.deep.include({ pending: 1 });
      await until(async () => calls === 2, 'the message to come again');
    } finally {
      console.error = originalError;
    }
  });

  it('keeps its login and topics across a reconnect', async () => {
    const server = await startServer();
    const client = sdk(server, 'x');
    await loggedIn(client);
    expect(await client.subscribe('news')).to.deep.equal({ ok: true, topics: ['news'] });
    const got: unknown[] = [];
    client.on('headline', (data) => void got.push(data));
    client.disconnect();
    const relogin = loggedIn(client);
    client.connect();
    await relogin;
    // the SDK re-subscribes before it logs in again, so the login reply means topics are back
    await push(server, { topic: 'news', event: 'headline', data: 'after reconnect' });
    await until(async () => got.length === 1, 'the topic push');
    expect(got).to.deep.equal(['after reconnect']);
  });
});

const LOGIN_SECRET = 'sdk-login-secret-0123456';

/** Each JWT's `exp` (unix seconds), as it was made. */
const expiries: number[] = [];

/** A JWT as a backend makes it: HS256, `sub`, and an `exp` in `seconds` (from now). */
function jwt(key: string, subject: string, seconds: number): Promise<string> {
  const exp = Math.floor(Date.now() / 1000) + seconds;
  expiries.push(exp);
  return new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(subject).setExpirationTime(exp).sign(new TextEncoder().encode(key));
}

/** Until the server takes `exp` as past (jose: expired once now >= exp, in whole seconds). */
function expiry(exp: number): Promise<void> {
  return until(() => Math.floor(Date.now() / 1000) >= exp, 'the token to expire', 5000, 50);
}

/** Drops every connection as a network would: the clients reconnect by themselves. */
function dropConnections(server: TestServer): void {
  for (const socket of server.io.of('/').sockets.values()) socket.conn.close();
}

/** Resolves with the next login reply the client reports. */
function nextLogin(client: PushClient): Promise<{ ok: boolean; error?: { code: string; message: string } }> {
  return loggedIn(client) as Promise<{ ok: boolean; error?: { code: string; message: string } }>;
}

describe('client SDK tokens (LOGIN_SECRET)', () => {
  afterEach(cleanupAll);

  it('logs in with the token option; without one the login is refused', async () => {
    const server = await startServer({ loginSecret: LOGIN_SECRET });
    const refused = sdk(server, 'a1');
    expect(await nextLogin(refused)).to.deep.include({ ok: false, error: { code: 'unauthorized', message: 'a token is required' } });
    const client = sdk(server, 'a1', { token: loginToken(LOGIN_SECRET, 'a1') });
    expect(await nextLogin(client)).to.deep.include({ ok: true });
    // login(uid, {token}) later, as a page that learns its user after connecting
    const late = sdk(server, 'nobody');
    await nextLogin(late); // refused: no token
    expect(await late.login('a2', { token: loginToken(LOGIN_SECRET, 'a2') })).to.deep.include({ ok: true, uid: 'a2' });
  });

  it('asks getToken at connect, keeps the token across reconnects, and asks again only on token_expired', async () => {
    const server = await startServer({ loginSecret: LOGIN_SECRET });
    const issued: number[] = [];
    const client = sdk(server, 'b1', {
      getToken: async () => {
        issued.push(Date.now());
        return jwt(LOGIN_SECRET, 'b1', issued.length === 1 ? 1 : 3600); // the first expires at once
      },
    });
    expect(await nextLogin(client)).to.deep.include({ ok: true });
    expect(issued).to.have.length(1);
    const got: unknown[] = [];
    client.on('message', (data) => void got.push(data));

    await expiry(expiries.at(-1)!);
    const relogin = nextLogin(client);
    dropConnections(server);
    expect(await relogin).to.deep.include({ ok: true });
    expect(issued).to.have.length(2); // refused as expired once, then a new one

    // a reconnect with a token still good does not ask again
    const again = nextLogin(client);
    dropConnections(server);
    expect(await again).to.deep.include({ ok: true });
    expect(issued).to.have.length(2);
    await push(server, { to: 'b1', data: 'still here' });
    await until(async () => got.length === 1, 'the push after the refresh');
  });

  it('reports a getToken that fails as the login error, in onStatus and onError', async () => {
    const server = await startServer({ loginSecret: LOGIN_SECRET });
    const errors: PushClientError[] = [];
    const client = sdk(server, 'c1', {
      getToken: () => Promise.reject(new Error('backend down')),
    });
    client.onError((e) => void errors.push(e));
    expect(await nextLogin(client)).to.deep.include({ ok: false, error: { code: 'unauthorized', message: 'getToken failed: backend down' } });
    expect(errors).to.deep.equal([{ request: 'login', error: { code: 'unauthorized', message: 'getToken failed: backend down' } }]);
  });

  it('subscribes to private topics with subscribe(topic, {token}) or topicTokens, and refreshes an expired topic JWT by getTopicToken', async () => {
    const server = await startServer({ loginSecret: LOGIN_SECRET, pushSecret: SECRET });
    const key = topicKey(LOGIN_SECRET);
    const asked: string[] = [];
    const client = sdk(server, 'd1', {
      token: loginToken(LOGIN_SECRET, 'd1'),
      topicTokens: { 'private-a': loginToken(key, 'private-a') },
      getTopicToken: async (topic) => {
        asked.push(topic);
        return jwt(key, topic, asked.length === 1 ? 1 : 3600);
      },
    });
    await nextLogin(client);
    const got: unknown[] = [];
    client.on('news', (data) => void got.push(data));
    expect(await client.subscribe('private-a')).to.deep.equal({ ok: true, topics: ['private-a'] });
    expect(await client.subscribe('private-b', { token: loginToken(key, 'private-b') })).to.deep.include({ ok: true });
    expect(asked).to.deep.equal([]); // every token was given
    expect(await client.subscribe('private-c')).to.deep.include({ ok: true }); // asked for
    expect(asked).to.deep.equal(['private-c']);
    const wrong = await client.subscribe('private-d', { token: loginToken(key, 'private-x') });
    expect(wrong).to.deep.include({ ok: false });

    // private-c's JWT expires; after a reconnect the SDK gets a new one and all three are back
    await expiry(expiries.at(-1)!);
    const relogin = nextLogin(client);
    dropConnections(server);
    await relogin; // the topics are back before the login reply is reported
    expect(asked).to.deep.equal(['private-c', 'private-c']);
    for (const topic of ['private-a', 'private-b', 'private-c']) await push(server, { topic, event: 'news', data: topic });
    await until(async () => got.length === 3, 'the three topic pushes');
    expect(got).to.have.members(['private-a', 'private-b', 'private-c']);
  });
});

describe('the client SDK served on the Socket.IO port', () => {
  afterEach(cleanupAll);

  it('GET /sdk/push-client.js with WEB_PORT=off: the plain script, cached by max-age and ETag; other methods 405', async () => {
    const server = await startServer(); // webPort null
    const res = await fetch(`${server.ioUrl}/sdk/push-client.js`);
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.equal('text/javascript; charset=utf-8');
    expect(res.headers.get('cache-control')).to.equal('public, max-age=3600');
    expect(res.headers.get('x-content-type-options')).to.equal('nosniff');
    const etag = res.headers.get('etag');
    expect(etag).to.match(/^"[\w-]{22}"$/);
    const body = await res.text();
    expect(body).to.match(/^var PushClient = /m);
    expect(body).not.to.match(/engine\.io|EIO/); // it drives the page's io, bundles no client of its own
    const cached = await fetch(`${server.ioUrl}/sdk/push-client.js?v=2`, { headers: { 'if-none-match': etag! } });
    expect([cached.status, await cached.text()]).to.deep.equal([304, '']);
    const head = await fetch(`${server.ioUrl}/sdk/push-client.js`, { method: 'HEAD' });
    expect([head.status, head.headers.get('content-length')]).to.deep.equal([200, String(Buffer.byteLength(body))]);
    const post = await fetch(`${server.ioUrl}/sdk/push-client.js`, { method: 'POST' });
    expect([post.status, post.headers.get('allow')]).to.deep.equal([405, 'GET, HEAD']);
    // beside it, the rest of the port is as it was
    expect((await fetch(`${server.ioUrl}/sdk/other.js`)).status).to.equal(404);
  });
});

describe('the client SDK package (packages/push-client)', function () {
  this.timeout(60_000);
  const PKG = new URL('../packages/push-client/', import.meta.url).pathname;
  afterEach(cleanupAll);

  it('builds to ESM, a plain script and .d.ts; the ESM build runs on socket.io-client as installed', async () => {
    await promisify(execFile)(process.execPath, ['--import', 'tsx', PKG + 'build.ts'], { cwd: PKG });
    const manifest = JSON.parse(readFileSync(PKG + 'package.json', 'utf8')) as { exports: Record<string, Record<string, string> | string> };
    const main = manifest.exports['.'] as Record<string, string>;
    for (const file of [main.import!, main.types!, manifest.exports['./push-client.js'] as string]) {
      expect(existsSync(PKG + file), file).to.equal(true);
    }
    const esm = readFileSync(PKG + main.import!, 'utf8');
    expect(esm).to.match(/from "socket.io-client"/); // the peer dependency, not bundled
    expect(readFileSync(PKG + main.types!, 'utf8')).to.include('export declare class PushClient');

    // the built module, with its default io (socket.io-client), against a real server
    const built = (await import(PKG + main.import!)) as typeof import('../packages/push-client/src/index.ts');
    const server = await startServer({ pushSecret: SECRET });
    const client = built.connect(server.ioUrl, { uid: 'e1' });
    onCleanup(() => client.close());
    await loggedIn(client as unknown as PushClient);
    const got: unknown[] = [];
    client.on('message', (data) => void got.push(data));
    await push(server, { to: 'e1', data: 'from the build' });
    await until(async () => got.length === 1, 'the push');
  });
});
