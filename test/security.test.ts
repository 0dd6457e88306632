// Attacks on the push API and the socket, each refused with nothing delivered, and the right
// credentials accepted; every limit just under (passes) and just over (its error).
import { expect } from 'chai';
import { SignJWT } from 'jose';
import { createHmac } from 'node:crypto';
import { io as ioV4 } from 'socket.io-client';
import ioV2 from 'socket.io-client-v2';
import { loginToken } from '../src/login-auth.ts';
import { PushAuth, SignaturesFull, signRequest, type AuthRequest } from '../src/api/push-auth.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { connectClient, TestClient, type ClientVersion } from './support/clients.ts';
import { rawRequest } from './support/http.ts';
import { legacyPush, startServer, type TestServer } from './support/server.ts';
import { until } from './support/until.ts';

const PUSH_SECRET = 'push-secret-0123456789';
const LOGIN_SECRET = 'login-secret-0123456789';

function jwt(sub: string, expiresIn: string | number, key = LOGIN_SECRET): Promise<string> {
  return new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setIssuedAt().setExpirationTime(expiresIn)
    .sign(new TextEncoder().encode(key));
}

/** A private topic's key and HMAC token, made as the README tells PHP backends to make them. */
const TOPIC_KEY = createHmac('sha256', 'push-server topic token').update(LOGIN_SECRET).digest('hex');
function topicHmac(topic: string): string {
  return createHmac('sha256', TOPIC_KEY).update(topic).digest('hex');
}

/** A signed request as the README tells backends to make one. */
function signed(server: TestServer, method: string, target: string, body: string, secret = PUSH_SECRET, ts = Math.floor(Date.now() / 1000)) {
  const headers: Record<string, string> = {
    'x-push-timestamp': String(ts),
    'x-push-signature': signRequest(secret, String(ts), method, target, body),
  };
  if (body !== '') headers['content-type'] = target.startsWith('/api/') ? 'application/json' : 'application/x-www-form-urlencoded';
  return { url: server.apiUrl + target, options: { method, headers, body } };
}

describe('security', () => {
  afterEach(cleanupAll);

  describe('push API with PUSH_SECRET', () => {
    let server: TestServer;
    let victim: TestClient;
    beforeEach(async () => {
      server = await startServer({ pushSecret: PUSH_SECRET });
      victim = await connectClient('v4', server.ioUrl);
      await victim.login('victim');
    });

    async function nothingDelivered(): Promise<void> {
      // a legitimate push afterwards is the first and only thing the page got
      const ok = await legacyPush(server.apiUrl, { type: 'publish', to: 'victim', content: 'legit', secret: PUSH_SECRET });
      expect(ok.body).to.equal('ok');
      await victim.waitFor('new_msg', (c) => c === 'legit');
      expect(victim.received('new_msg').map(([c]) => c)).to.deep.equal(['legit']);
    }

    it('refuses legacy pushes without the secret or with a wrong one: 401 fail', async () => {
      const attempts: [string, RequestInit][] = [
        ['/?type=publish&to=victim&content=x', {}],
        ['/?type=publish&to=victim&content=x&secret=wrong', {}],
        ['/?type=publish&to=victim&content=x&secret=' + PUSH_SECRET.slice(0, -1), {}],
        // the secret is compared by its bytes: same length with one byte off, one byte more,
        // and the same number of characters with a two-byte one at the end
        ['/?type=publish&to=victim&content=x&secret=' + PUSH_SECRET.slice(0, -1) + (PUSH_SECRET.endsWith('x') ? 'y' : 'x'), {}],
        ['/?type=publish&to=victim&content=x&secret=' + PUSH_SECRET + 'x', {}],
        ['/?type=publish&to=victim&content=x&secret=' + encodeURIComponent(PUSH_SECRET.slice(0, -1) + 'é'), {}],
        ['/?type=publish&to=victim&content=x', { headers: { authorization: `Bearer ${PUSH_SECRET.slice(0, -1)}${PUSH_SECRET.endsWith('x') ? 'y' : 'x'}` } }],
        ['/', { method: 'POST', body: new URLSearchParams({ type: 'publish', to: 'victim', content: 'x', secret: 'nope' }) }],
        ['/?type=publish&to=victim&content=x', { headers: { authorization: 'Bearer wrong' } }],
        ['/?type=publish&to=victim&content=x', { headers: { authorization: `Basic ${PUSH_SECRET}` } }],
      ];
      for (const [path, init] of attempts) {
        const res = await fetch(server.apiUrl + path, init);
        expect(res.status, path).to.equal(401);
        expect(await res.text()).to.equal('fail');
        expect(res.headers.get('www-authenticate')).to.equal('Bearer');
      }
      await nothingDelivered();
    });

    it('accepts the secret as a Bearer header, a query, form, multipart or JSON field', async () => {
      const params = { type: 'publish', to: 'victim', content: 'm' };
      for (const method of ['get', 'form', 'multipart', 'json'] as const) {
        expect(await legacyPush(server.apiUrl, { ...params, content: method, secret: PUSH_SECRET }, method)).to.deep.equal({ status: 200, body: 'ok' });
      }
      const bearer = await fetch(`${server.apiUrl}/?type=publish&to=victim&content=bearer`, { headers: { authorization: `Bearer ${PUSH_SECRET}` } });
      expect(await bearer.text()).to.equal('ok');
      const v1 = await fetch(`${server.apiUrl}/api/v1/push`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ to: 'victim', data: 'v1', secret: PUSH_SECRET }), // the field is taken out before validation
      });
      expect(v1.status).to.equal(200);
      for (const c of ['get', 'form', 'multipart', 'json', 'bearer']) await victim.waitFor('new_msg', (d) => d === c);
      await victim.waitFor('message', (d) => d === 'v1');
    });

    it('accepts an HMAC-signed request once, and refuses altered, stale, replayed or wrongly keyed ones', async () => {
      const body = 'type=publish&to=victim&content=signed';
      const good = signed(server, 'POST', '/', body);
      expect((await rawRequest(good.url, good.options)).body).to.equal('ok');
      // replayed as is
      expect((await rawRequest(good.url, good.options)).status).to.equal(401);
      // altered body, same signature
      const altered = signed(server, 'POST', '/', body);
      expect((await rawRequest(altered.url, { ...altered.options, body: body.replace('signed', 'forged') })).status).to.equal(401);
      // altered query of a signed GET
      const get = signed(server, 'GET', '/?type=publish&to=victim&content=a', '');
      expect((await rawRequest(get.url.replace('to=victim', 'to=other'), get.options)).status).to.equal(401);
      // six minutes old, or from the future
      for (const skew of [-360, 360]) {
        const stale = signed(server, 'POST', '/', body, PUSH_SECRET, Math.floor(Date.now() / 1000) + skew);
        expect((await rawRequest(stale.url, stale.options)).status).to.equal(401);
      }
      // wrong key
      const wrongKey = signed(server, 'POST', '/', body, 'another-secret-0123456789');
      expect((await rawRequest(wrongKey.url, wrongKey.options)).status).to.equal(401);
      // v1 answers JSON, and a signed v1 push works
      const v1Body = JSON.stringify({ to: 'victim', data: 'signed v1' });
      const v1 = signed(server, 'POST', '/api/v1/push', v1Body);
      expect((await rawRequest(v1.url, v1.options)).status).to.equal(200);
      const v1Replay = await rawRequest(v1.url, v1.options);
      expect(v1Replay.status).to.equal(401);
      expect(JSON.parse(v1Replay.body)).to.deep.equal({ error: { code: 'unauthorized', message: 'this signed request was made before (replay)' } });
      await victim.waitFor('new_msg', (d) => d === 'signed');
      await victim.waitFor('message', (d) => d === 'signed v1');
      expect(victim.received('new_msg').map(([d]) => d)).to.deep.equal(['signed']);
      expect(victim.received('message').map(([d]) => d)).to.deep.equal(['signed v1']);
    });

    it('refuses a flood of query parameters with 414 before the secret is checked', async () => {
      const flood = Array.from({ length: 8000 }, () => 'a').join('&'); // 16 KB
      for (const [method, path] of [['POST', '/'], ['GET', '/'], ['GET', '/any/path'], ['POST', '/api/v1/push']] as const) {
        const res = await fetch(`${server.apiUrl}${path}?${flood}`, { method });
        expect(res.status, `${method} ${path}`).to.equal(414);
        const reason = 'query string has more than 1000 parameters';
        if (path.startsWith('/api/')) {
          const small = 'query string is longer than 4096 bytes'; // the bound of /api/v1
          expect(await res.json()).to.deep.equal({ error: { code: 'uri_too_long', message: small } });
        } else expect(await res.text()).to.equal(reason);
      }
      await nothingDelivered();
    });

    it('bounds the query of /api/v1 and the probes small (4 KB, 20 parameters): 414 past it, before the secret', async () => {
      const long = `pad=${'x'.repeat(10 * 1024)}`;
      const many = Array.from({ length: 21 }, (_, i) => `p${i}=1`).join('&');
      const routes = [['POST', '/api/v1/push'], ['GET', '/api/v1/scheduled'], ['GET', '/api/v1/online'], ['POST', '/API/V1/Push/'], ['GET', '/healthz'], ['GET', '/readyz'], ['GET', '/metrics']] as const;
      for (const [method, path] of routes) {
        for (const [query, reason] of [[long, 'longer than 4096 bytes'], [many, 'more than 20 parameters']]) {
          const res = await fetch(`${server.apiUrl}${path}?${query}`, { method });
          expect(res.status, `${method} ${path} ${reason}`).to.equal(414);
          expect(await res.text()).to.include(reason);
        }
      }
      // a query within the bound is served
      const ok = await fetch(`${server.apiUrl}/api/v1/scheduled?limit=5&cursor=`, { headers: { authorization: `Bearer ${PUSH_SECRET}` } });
      expect(ok.status).to.equal(200);
      expect((await fetch(`${server.apiUrl}/healthz?probe=1`)).status).to.equal(200);
      await nothingDelivered();
    });

    it('takes a legacy content of 60 KB in the query, and the last of repeated keys, on GET and POST', async () => {
      const content = 'é'.repeat(30_000); // 60 000 bytes, 180 000 characters percent-encoded
      for (const method of ['GET', 'POST']) {
        const query = new URLSearchParams({ type: 'publish', to: 'victim', content: method + content, secret: PUSH_SECRET });
        const res = await fetch(`${server.apiUrl}/?${query}`, { method });
        expect([res.status, await res.text()], method).to.deep.equal([200, 'ok']);
        await victim.waitFor('new_msg', (c) => c === method + content);
        const repeated = `/?type=publish&to=nobody&to=victim&content=first&content=${method}-last&secret=${PUSH_SECRET}`;
        expect(await (await fetch(server.apiUrl + repeated, { method })).text(), method).to.equal('ok');
        await victim.waitFor('new_msg', (c) => c === `${method}-last`);
      }
      const got = victim.received('new_msg').map(([c]) => (c === 'GET' + content || c === 'POST' + content ? `${(c as string).slice(0, 3)} 60 KB` : c));
      expect(got).to.deep.equal(['GET 60 KB', 'GET-last', 'POS 60 KB', 'POST-last']);
    });

    it('guards every v1 route', async () => {
      for (const [method, path] of [['GET', '/api/v1/scheduled'], ['GET', '/api/v1/users/victim/messages'], ['POST', '/api/v1/push/batch'], ['DELETE', '/api/v1/scheduled/x']]) {
        const res = await fetch(server.apiUrl + path!, { method });
        expect(res.status, `${method} ${path}`).to.equal(401);
        expect(((await res.json()) as { error: { code: string } }).error.code).to.equal('unauthorized');
      }
    });
  });

  describe('logins with LOGIN_SECRET', () => {
    let server: TestServer;
    beforeEach(async () => {
      server = await startServer({ loginSecret: LOGIN_SECRET });
    });

    for (const version of ['v4', 'v2'] as ClientVersion[]) {
      it(`${version}: refuses forged uids and bad tokens, and joins nothing`, async () => {
        const attacker = await connectClient(version, server.ioUrl);
        const attempts: [unknown, string][] = [
          ['alice', 'unauthorized'], // the original's login: a bare uid
          [{ uid: 'alice', token: 'f'.repeat(64) }, 'unauthorized'],
          [{ uid: 'alice', token: loginToken(LOGIN_SECRET, 'mallory') }, 'unauthorized'], // another uid's token
          [{ uid: 'alice', token: loginToken('wrong-secret-0123456789', 'alice') }, 'unauthorized'],
          [{ uid: 'alice', token: await jwt('alice', Math.floor(Date.now() / 1000) - 10) }, 'token_expired'],
          [{ uid: 'alice', token: await jwt('mallory', '1h') }, 'unauthorized'],
          [{ uid: 'alice', token: await jwt('alice', '1h', 'wrong-secret-0123456789') }, 'unauthorized'],
          [{ uid: 'alice', token: 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.' }, 'unauthorized'], // alg none
          [{ uid: 'alice', token: 12345 }, 'unauthorized'],
        ];
        for (const [arg, code] of attempts) {
          const reply = await attacker.request<{ ok: boolean; error?: { code: string } }>('login', arg);
          expect(reply.ok, JSON.stringify(arg)).to.equal(false);
          expect(reply.error?.code, JSON.stringify(arg)).to.equal(code);
        }
        attacker.emit('login', 'alice'); // without an ack: the refusal comes as login_error
        expect((await attacker.waitFor('login_error'))[0]).to.deep.include({ code: 'unauthorized' });
        expect((await legacyPush(server.apiUrl, { type: 'publish', to: 'alice', content: 'secret' })).body).to.equal('offline');
        expect(attacker.received('update_online_count')).to.have.length(0);
        expect(attacker.received('new_msg')).to.have.length(0);
      });

      it(`${version}: accepts an HMAC token and a JWT, in the login or the handshake`, async () => {
        const hmac = await connectClient(version, server.ioUrl);
        expect(await hmac.request('login', { uid: 'alice', token: loginToken(LOGIN_SECRET, 'alice') })).to.deep.include({ ok: true });
        const withJwt = await connectClient(version, server.ioUrl);
        expect(await withJwt.request('login', { uid: 'bob', token: await jwt('bob', '1h') })).to.deep.include({ ok: true });
        // the token given when connecting: auth in 4.x, the query string in 2.x
        const token = loginToken(LOGIN_SECRET, 'carol');
        const raw = version === 'v4'
          ? ioV4(server.ioUrl, { forceNew: true, reconnection: false, auth: { token } })
          : ioV2(server.ioUrl, { forceNew: true, reconnection: false, query: { token } });
        const handshake = new TestClient(version, raw as never);
        onCleanup(() => handshake.close());
        await handshake.waitFor('connect');
        expect(await handshake.request('login', 'carol')).to.deep.include({ ok: true });
        expect((await legacyPush(server.apiUrl, { type: 'publish', to: 'carol', content: 'hi' })).body).to.equal('ok');
        expect((await handshake.waitFor('new_msg'))[0]).to.equal('hi');
      });
    }

    it('needs a token for private- topics, per topic', async () => {
      const c = await connectClient('v4', server.ioUrl);
      expect(await c.request('subscribe', 'public-news')).to.deep.include({ ok: true });
      expect(await c.request('subscribe', 'private-team')).to.deep.include({ ok: false });
      expect(await c.request('subscribe', { topic: 'private-team', token: topicHmac('private-other') })).to.deep.include({ ok: false });
      expect(await c.request('subscribe', { topic: 'private-team', token: loginToken(LOGIN_SECRET, 'private-team') })).to.deep.include({ ok: false }); // a uid token is not a topic token
      expect(await c.request('subscribe', { topic: 'private-team', token: topicHmac('private-team') })).to.deep.equal({
        ok: true,
        topics: ['public-news', 'private-team'],
      });
      expect(await c.request('subscribe', { topic: 'private-jwt', token: await jwt('private-jwt', '1h', TOPIC_KEY) })).to.deep.include({ ok: true });
      expect(await c.request('subscribe', { topic: 'private-jwt2', token: await jwt('private-jwt', '1h', TOPIC_KEY) })).to.deep.include({ ok: false });
    });

    for (const version of ['v4', 'v2'] as ClientVersion[]) {
      it(`${version}: no uid's token opens a topic: the tokens of the uid topic:private-admins do not open private-admins`, async () => {
        const uid = 'topic:private-admins';
        const mallory = await connectClient(version, server.ioUrl);
        const hmac = loginToken(LOGIN_SECRET, uid);
        const uidJwt = await jwt(uid, '1h');
        // both are good tokens of that uid: it logs in with them
        expect(await mallory.request('login', { uid, token: hmac })).to.deep.include({ ok: true });
        const other = await connectClient(version, server.ioUrl);
        expect(await other.request('login', { uid, token: uidJwt })).to.deep.include({ ok: true });
        // and they open no topic, nor does a uid JWT naming the topic itself
        for (const token of [hmac, uidJwt, loginToken(LOGIN_SECRET, 'private-admins'), await jwt('private-admins', '1h')]) {
          const reply = await mallory.request<{ ok: boolean; error?: { code: string } }>('subscribe', { topic: 'private-admins', token });
          expect(reply, token).to.deep.include({ ok: false });
          expect(reply.error?.code).to.equal('unauthorized');
        }
        // a topic's tokens do not log in as a uid either
        const third = await connectClient(version, server.ioUrl);
        for (const token of [topicHmac('private-admins'), await jwt('private-admins', '1h', TOPIC_KEY), await jwt(uid, '1h', TOPIC_KEY)]) {
          expect(await third.request('login', { uid: 'private-admins', token }), token).to.deep.include({ ok: false });
          expect(await third.request('login', { uid, token }), token).to.deep.include({ ok: false });
        }
        // the topic's own tokens open it
        expect(await mallory.request('subscribe', { topic: 'private-admins', token: topicHmac('private-admins') })).to.deep.include({ ok: true });
        expect(await other.request('subscribe', { topic: 'private-admins', token: await jwt('private-admins', '1h', TOPIC_KEY) })).to.deep.include({ ok: true });
        expect(await other.request('subscribe', { topic: 'private-late', token: await jwt('private-late', -10, TOPIC_KEY) }))
          .to.deep.include({ ok: false, error: { code: 'token_expired', message: 'private-late: the token has expired' } });
      });
    }

    it('refuses uids that are not well-formed Unicode, so two of them never share a token', async () => {
      // a lone surrogate is U+FFFD in UTF-8: both uids would hash to the token of 'admin\uFFFD'
      const [a, b] = ['admin\uD800', 'admin\uDFFF'];
      expect(loginToken(LOGIN_SECRET, a)).to.equal(loginToken(LOGIN_SECRET, b));
      for (const version of ['v4', 'v2'] as ClientVersion[]) {
        const c = await connectClient(version, server.ioUrl);
        for (const uid of [a, b]) {
          expect(await c.request('login', { uid, token: loginToken(LOGIN_SECRET, a) })).to.deep.equal({
            ok: false,
            error: { code: 'invalid_uid', message: 'uid must be well-formed Unicode text (it holds a lone surrogate)' },
          });
        }
        // a surrogate pair is a character like any other
        const emoji = 'admin\u{1F600}';
        expect(await c.request('login', { uid: emoji, token: loginToken(LOGIN_SECRET, emoji) })).to.deep.include({ ok: true, uid: emoji });
      }
      const res = await fetch(`${server.apiUrl}/api/v1/push`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ to: ['ok', a], data: 1 }),
      });
      expect(res.status).to.equal(400);
      expect(await res.json()).to.deep.equal({
        error: { code: 'invalid_request', message: 'to.1 must be well-formed Unicode text (it holds a lone surrogate)', field: 'to.1' },
      });
    });

    it('refuses private- topics when no LOGIN_SECRET is set', async () => {
      const open = await startServer();
      const c = await connectClient('v4', open.ioUrl);
      expect(await c.request('subscribe', { topic: 'private-x', token: 'anything' })).to.deep.equal({
        ok: false,
        error: { code: 'unauthorized', message: 'private topics need LOGIN_SECRET on the server' },
      });
    });
  });

  describe('limits', () => {
    it('content size: MAX_DATA_BYTES passes, one byte more is 413 (legacy and v1)', async () => {
      const server = await startServer({ maxDataBytes: 1000 });
      const c = await connectClient('v4', server.ioUrl);
      await c.login('u');
      const atLimit = 'é'.repeat(500); // 1000 bytes in UTF-8
      expect(await legacyPush(server.apiUrl, { type: 'publish', to: 'u', content: atLimit }, 'form')).to.deep.equal({ status: 200, body: 'ok' });
      expect((await legacyPush(server.apiUrl, { type: 'publish', to: 'u', content: atLimit + 'x' }, 'form')).status).to.equal(413);
      const v1 = (data: string) => fetch(`${server.apiUrl}/api/v1/push`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ to: 'u', data }) });
      expect((await v1('x'.repeat(998))).status).to.equal(200); // 1000 bytes with its quotes
      expect((await v1('x'.repeat(999))).status).to.equal(413);
      await c.waitFor('message', (d) => d === 'x'.repeat(998));
      expect(c.received('new_msg')).to.have.length(1);
      expect(c.received('message')).to.have.length(1);
    });

    it('uids per push and body size: at the limit passes, one over is refused', async () => {
      const server = await startServer({ maxUidsPerPush: 3, maxBodyBytes: 200 });
      const push = (body: unknown) => fetch(`${server.apiUrl}/api/v1/push`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      expect((await push({ to: ['a', 'b', 'c'], data: 1 })).status).to.equal(200);
      expect((await push({ to: ['a', 'b', 'c', 'd'], data: 1 })).status).to.equal(400);
      const pad = (n: number) => JSON.stringify({ to: 'a', data: 'x'.repeat(n) });
      const base = pad(0).length;
      expect((await fetch(`${server.apiUrl}/api/v1/push`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: pad(200 - base) })).status).to.equal(200);
      expect((await fetch(`${server.apiUrl}/api/v1/push`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: pad(201 - base) })).status).to.equal(413);
    });

    it('signed requests remembered: at MAX_REMEMBERED_SIGNATURES a new one is 503 with Retry-After, a replay still 401', async () => {
      const server = await startServer({ pushSecret: PUSH_SECRET, maxRememberedSignatures: 3 });
      const c = await connectClient('v4', server.ioUrl);
      await c.login('u');
      const legacy = (content: string) => signed(server, 'POST', '/', `type=publish&to=u&content=${content}`);
      const first = legacy('s1');
      for (const request of [first, legacy('s2'), legacy('s3')]) expect((await rawRequest(request.url, request.options)).body).to.equal('ok');
      const reason = '3 signed requests are already remembered against replay; retry later, or send the secret as a Bearer header';
      const full = legacy('s4');
      const refused = await rawRequest(full.url, full.options);
      expect([refused.status, refused.body]).to.deep.equal([503, reason]);
      expect(Number(refused.headers['retry-after'])).to.be.within(290, 301);
      const v1 = signed(server, 'POST', '/api/v1/push', JSON.stringify({ to: 'u', data: 's4' }));
      const refusedV1 = await rawRequest(v1.url, v1.options);
      expect([refusedV1.status, JSON.parse(refusedV1.body)]).to.deep.equal([503, { error: { code: 'unavailable', message: reason } }]);
      expect(Number(refusedV1.headers['retry-after'])).to.be.within(290, 301);
      // still remembered, not forgotten to make room
      const replay = await rawRequest(first.url, first.options);
      expect([replay.status, replay.body]).to.deep.equal([401, 'fail']);
      expect((await legacyPush(server.apiUrl, { type: 'publish', to: 'u', content: 'bearer', secret: PUSH_SECRET })).body).to.equal('ok');
      await c.waitFor('new_msg', (d) => d === 'bearer');
      expect(c.received('new_msg').map(([d]) => d)).to.deep.equal(['s1', 's2', 's3', 'bearer']);
    });

    it('a remembered signature is forgotten once its own timestamp leaves the window, and makes room then', () => {
      const auth = new PushAuth(PUSH_SECRET, { maxSignatures: 2 });
      const t0 = 1_700_000_000; // unix seconds
      const request = (ts: number, content: string): AuthRequest => {
        const target = `/?type=publish&to=u&content=${content}`;
        const signature = signRequest(PUSH_SECRET, String(ts), 'GET', target, '');
        return { authorization: '', signature, timestamp: String(ts), method: 'GET', target, rawBody: '', fieldSecret: undefined };
      };
      // signed 100 s in the past, arriving now: remembered until t0 - 100 + 300
      expect(auth.verify(request(t0 - 100, 'a'), t0 * 1000)).to.equal(null);
      expect(auth.verify(request(t0, 'b'), t0 * 1000)).to.equal(null);
      const full = () => auth.verify(request(t0 + 150, 'c'), (t0 + 150) * 1000);
      expect(full).to.throw(SignaturesFull).with.property('retryAfterSeconds', 51);
      // the last millisecond `a` could be accepted: still remembered, so still a replay, still full
      const lastMs = (t0 + 200) * 1000;
      expect(auth.verify(request(t0 - 100, 'a'), lastMs)).to.equal('this signed request was made before (replay)');
      expect(() => auth.verify(request(t0 + 150, 'c'), lastMs)).to.throw(SignaturesFull);
      // one millisecond later `a` is stale by its timestamp, and its room is free
      expect(auth.verify(request(t0 - 100, 'a'), lastMs + 1)).to.match(/^X-Push-Timestamp is more than 300 s/);
      expect(auth.verify(request(t0 + 150, 'c'), lastMs + 1)).to.equal(null);
      expect(auth.verify(request(t0, 'b'), lastMs + 1)).to.equal('this signed request was made before (replay)');
    });

    it('push requests per IP: the burst passes, then 429 with Retry-After, other work goes on', async () => {
      const server = await startServer({ pushRatePerIp: 5 });
      const c = await connectClient('v4', server.ioUrl);
      await c.login('u');
      // all at once, so the bucket (burst = 2 x rate) has no time to refill meaningfully
      const answers = await Promise.all(
        Array.from({ length: 14 }, (_, i) => fetch(`${server.apiUrl}/?type=publish&to=u&content=${i}`)),
      );
      const ok = answers.filter((r) => r.status === 200);
      const limited = answers.filter((r) => r.status === 429);
      expect(ok.length + limited.length).to.equal(14);
      // the burst of 10, plus what the bucket refilled (5/s) while the 14 were answered
      expect(ok.length).to.be.within(10, 12);
      expect(limited.length).to.be.at.least(2);
      expect(Number(limited[0]!.headers.get('retry-after'))).to.be.within(1, 2);
      expect(await limited[0]!.text()).to.equal('more than 5 requests a second from 127.0.0.1; retry later');
      await c.waitFor('new_msg', () => c.received('new_msg').length === ok.length);
      expect(await c.request('subscribe', 'still-served')).to.deep.include({ ok: true });
    });

    it('events per socket: the burst passes, then refused by ack or request_error; others unaffected', async () => {
      const server = await startServer({ socketEventsPerSecond: 5 });
      const noisy = (await connectClient('v4', server.ioUrl)).track('request_error');
      const quiet = await connectClient('v4', server.ioUrl);
      const replies = await Promise.all(
        Array.from({ length: 14 }, (_, i) => noisy.request<{ ok: boolean; error?: unknown }>('subscribe', `t${i}`)),
      );
      const passed = replies.filter((r) => r.ok).length;
      expect(passed).to.be.within(10, 12); // burst = 2 x rate, plus a refill on a slow machine
      for (const r of replies.filter((r) => !r.ok)) {
        expect(r.error).to.deep.equal({ code: 'rate_limited', message: 'more than 5 events a second' });
      }
      noisy.emit('subscribe', 'no-ack');
      expect((await noisy.waitFor('request_error'))[0]).to.deep.equal({
        code: 'rate_limited',
        message: 'more than 5 events a second',
        event: 'subscribe',
      });
      expect(await quiet.request('login', 'quiet')).to.deep.include({ ok: true });
    });

    it('connections per IP: at the limit connects, one more is refused until one closes', async () => {
      const server = await startServer({ maxConnectionsPerIp: 2 });
      const a = await connectClient('v4', server.ioUrl);
      await connectClient('v2', server.ioUrl, ['websocket']);
      const refused = ioV4(server.ioUrl, { forceNew: true, reconnection: false, transports: ['websocket'] });
      onCleanup(() => refused.close());
      await new Promise<void>((resolve) => refused.once('connect_error', () => resolve()));
      a.close();
      await until(async () => {
        const retry = ioV4(server.ioUrl, { forceNew: true, reconnection: false });
        onCleanup(() => retry.close());
        return new Promise<boolean>((resolve) => {
          retry.once('connect', () => resolve(true));
          retry.once('connect_error', () => resolve(false));
        });
      }, 'a free connection slot');
    });

    it('CORS_ORIGINS: a listed origin connects, another is refused on every transport', async () => {
      const server = await startServer({ corsOrigins: ['https://app.example'] });
      for (const transports of [['polling'], ['websocket']] as const) {
        const ok = ioV4(server.ioUrl, { forceNew: true, reconnection: false, transports: [...transports], extraHeaders: { origin: 'https://app.example' } });
        const bad = ioV4(server.ioUrl, { forceNew: true, reconnection: false, transports: [...transports], extraHeaders: { origin: 'https://evil.example' } });
        onCleanup(() => (ok.close(), bad.close()));
        // both listeners attached before either outcome can arrive
        const okConnected = new Promise<void>((resolve, reject) => (ok.once('connect', resolve), ok.once('connect_error', reject)));
        const badRefused = new Promise<void>((resolve, reject) => (bad.once('connect_error', () => resolve()), bad.once('connect', () => reject(new Error('evil origin connected')))));
        await Promise.all([okConnected, badRefused]);
      }
      const preflight = await fetch(`${server.ioUrl}/socket.io/?EIO=4&transport=polling`, { headers: { origin: 'https://app.example' } });
      expect(preflight.headers.get('access-control-allow-origin')).to.equal('https://app.example');
    });

    it('CORS_ORIGINS: a list refuses JSONP polling (a script tag sends no Origin), * keeps it for old browsers', async () => {
      const jsonp = '/socket.io/?EIO=3&transport=polling&j=0';
      const listed = await startServer({ corsOrigins: ['https://app.example'] });
      for (const headers of [{}, { origin: 'https://app.example' }, { referer: 'https://evil.example/page' }] as Record<string, string>[]) {
        const res = await fetch(listed.ioUrl + jsonp, { headers });
        expect(res.status, JSON.stringify(headers)).to.equal(403);
        expect(await res.json()).to.deep.equal({
          code: 4,
          message: 'JSONP polling is refused because CORS_ORIGINS lists origins; use XHR polling or WebSocket',
        });
      }
      // XHR polling of 2.x clients still connects under the list
      const xhr = await fetch(`${listed.ioUrl}/socket.io/?EIO=3&transport=polling`);
      expect(xhr.status).to.equal(200);
      expect(await xhr.text()).to.match(/"sid":"/);

      const open = await startServer();
      const res = await fetch(open.ioUrl + jsonp);
      expect(res.status).to.equal(200);
      expect(await res.text()).to.match(/^___eio\[0\]\(".*\\"sid\\":\\"/);
    });
  });
});
