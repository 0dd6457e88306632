// Thousands of random requests and socket frames, seeded so a failure can be replayed
// (FUZZ_SEED=n). Every HTTP request gets a status below 500, nothing crashes, what the server
// tracks goes back to what the normal clients hold, and a normal push works afterwards.
import { expect } from 'chai';
import { connect } from 'node:net';
import { io as ioV4 } from 'socket.io-client';
import { PushClient } from '../packages/push-client/src/index.ts';
import { signRequest } from '../src/api/push-auth.ts';
import { escapeHtml } from '../src/names.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { connectClient } from './support/clients.ts';
import { rawRequest } from './support/http.ts';
import { recordingLogger } from './support/logger.ts';
import { legacyPush, startServer, type PushMethod } from './support/server.ts';
import { SseClient } from './support/sse-client.ts';
import { until } from './support/until.ts';
import { startWebhookReceiver } from './support/webhook-receiver.ts';
import { seededRandom } from '../bench/stats.ts';

const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);


const random = seededRandom(SEED);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
const int = (max: number) => Math.floor(random() * max);
const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
const text = (n: number) => Array.from({ length: n }, () => pick(['a', 'é', '你', '🎉', '%', '&', '=', '<', '"', '\\', '/', '?', '#', ' ', '0'])).join('');

/**
 * Object.prototype's own names (constructor, toString, __proto__, ...). As a key of a plain
 * object holding user text, such a uid, topic, event or id found the member rather than nothing,
 * or (`__proto__`) set the object's prototype rather than a key.
 */
const PROTOTYPE_NAMES = Object.getOwnPropertyNames(Object.prototype);
/** A uid, topic or id from the corpus: a prototype member's name, or random text. */
const name = (n: number) => (int(3) === 0 ? pick(PROTOTYPE_NAMES) : text(n));

/** Arrays and objects nested `depth` deep, sometimes unbalanced. */
function nested(depth: number): string {
  const open = Array.from({ length: depth }, () => pick(['[', '{"k":'])).join('');
  const close = [...open.matchAll(/\[|\{/g)].reverse().map((m) => (m[0] === '[' ? ']' : '}')).join('');
  return open + '1' + (int(5) === 0 ? close.slice(int(close.length)) : close);
}

function randomBody(contentType: string): Buffer {
  switch (int(7)) {
    case 6: return Buffer.from(pick([`{"to":"u","data":${nested(int(9000))}}`, `{"type":"publish","to":"u","content":${nested(int(9000))}}`, nested(int(9000))]));
    case 0: return Buffer.alloc(0);
    case 1: return bytes(int(3000)); // binary, invalid UTF-8
    case 2: return Buffer.from(JSON.stringify({ type: pick(['publish', 'x', 1, null, [], {}]), to: pick(['u', '', 5, [], { a: 1 }, name(5), [name(5), name(5)]]), topic: name(5), content: pick([text(50), 3, null, { x: 1 }]), data: text(20), ttl: pick([1, -1, 'x', 1e12]), extra: 1, [pick(PROTOTYPE_NAMES)]: 1 }));
    case 3: return Buffer.from(`type=publish&to=${encodeURIComponent(name(5))}&content=${encodeURIComponent(text(100))}&a[b][c]=1&to[]=x&${pick(PROTOTYPE_NAMES)}=1`);
    case 4: {
      const boundary = /boundary=([^;]+)/.exec(contentType)?.[1] ?? 'B';
      const cut = int(3) === 0;
      const full = `--${boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\npublish\r\n--${boundary}\r\nContent-Disposition: form-data; name="${pick(['to', ...PROTOTYPE_NAMES])}"\r\n\r\n${pick(PROTOTYPE_NAMES)}\r\n--${boundary}\r\nContent-Disposition: form-data; name="content"; filename="x.bin"\r\nContent-Type: application/octet-stream\r\n\r\n${text(200)}\r\n--${boundary}--\r\n`;
      return Buffer.from(cut ? full.slice(0, int(full.length)) : full);
    }
    default: return Buffer.from(text(int(500)));
  }
}

/** Queries at and past the bounds: 1000 parameters, 3 x MAX_DATA_BYTES + 8 KiB, the head's limit. */
function hostileQueryPath(): string {
  switch (int(4)) {
    case 0: return pick(['/', '/api/v1/push', '/x']) + '?' + Array.from({ length: 900 + int(2000) }, () => pick(['a', 'a=1', 'to=u', 'content=x', ''])).join('&');
    case 1: return '/?type=publish&to=u&content=' + 'z'.repeat(150_000 + int(100_000));
    case 2: return '/?' + 'a[b][c]=1&'.repeat(int(1200));
    default: return `/api/v1/users?online=true&cursor=${encodeURIComponent(text(5))}&cursor=x&limit=${pick(['1', '0', 'x', '1001', '1&limit=2'])}`;
  }
}

/** A JSON push whose body nests up to thousands of levels (the limit is 64). */
function deepJsonRequest(): Buffer {
  const path = pick(['/api/v1/push', '/api/v1/push/batch', '/']);
  const deep = nested(int(4000));
  const body = path === '/' ? `{"type":"publish","to":"u","content":"x","extra":${deep}}` : path.endsWith('batch') ? `{"messages":[{"to":"u","data":${deep}}]}` : `{"to":"u","data":${deep}}`;
  return Buffer.from(`POST ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}

/** One random request as raw bytes, correctly framed (content-length matches) or garbage. */
function randomRequest(): Buffer {
  if (int(10) === 0) return bytes(1 + int(2000)); // not HTTP at all
  if (int(20) === 0) return deepJsonRequest();
  const method = pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'FOO', 'G\u00e9T']);
  const uid = encodeURIComponent(name(5));
  const path = int(16) === 0 ? hostileQueryPath() : pick(['/', '/api/v1/push', '/api/v1/push/batch', `/api/v1/scheduled/${uid}`, `/api/v1/users/${uid}/messages`, `/api/v1/users/${uid}`, '/api/v1/users/online', `/api/v1/messages/${uid}`, '/api/v1/', '/a/../../etc/passwd', '/%ff%fe', '/?type=publish&to=' + uid + '&content=' + encodeURIComponent(text(30)), '/?' + text(40)]);
  const contentType = pick(['application/json', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=XyZ', 'multipart/form-data', 'text/plain', 'application/json; charset=latin1', 'garbage/\u00ff', '']);
  const body = randomBody(contentType);
  const headers = [`Host: x`, `Connection: close`, `Content-Length: ${body.length}`];
  if (contentType) headers.push(`Content-Type: ${contentType}`);
  if (int(8) === 0) headers.push(`X-Huge: ${'h'.repeat(20_000 + int(20_000))}`);
  if (int(8) === 0) headers.push(`Authorization: Bearer ${text(10)}`);
  if (int(10) === 0) headers.push('Transfer-Encoding: chunked'); // conflicts with Content-Length: must be refused
  return Buffer.concat([Buffer.from(`${method} ${path} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`, 'latin1'), body]);
}

/** Sends raw bytes; resolves the status of the answer, or 0 when the server closed without one. */
function send(port: number, data: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.setEncoding('latin1');
    socket.setTimeout(10_000, () => reject(new Error('no answer within 10 s')));
    socket.on('data', (c: string) => (answer += c));
    socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' || err.code === 'EPIPE' ? resolve(statusOf(answer)) : reject(err)));
    socket.on('close', () => resolve(statusOf(answer)));
    socket.on('connect', () => socket.end(data));
  });
}

function statusOf(answer: string): number {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(answer);
  return m ? Number(m[1]) : 0;
}

describe(`fuzz (FUZZ_SEED=${SEED})`, function () {
  this.timeout(120_000);
  afterEach(cleanupAll);

  it('answers 3000 random HTTP requests with a status below 500, and still pushes', async () => {
    const log = recordingLogger();
    const server = await startServer({ maxBodyBytes: 16_384 }, { log });
    const page = await connectClient('v4', server.ioUrl);
    await page.login('u');
    const statuses = new Map<number, number>();
    const requests = Array.from({ length: 3000 }, randomRequest);
    for (let i = 0; i < requests.length; i += 25) {
      const batch = await Promise.all(requests.slice(i, i + 25).map((r) => send(server.ports.api, r)));
      for (const s of batch) statuses.set(s, (statuses.get(s) ?? 0) + 1);
    }
    const serverErrors = [...statuses.keys()].filter((s) => s >= 500);
    expect(serverErrors, `statuses: ${JSON.stringify([...statuses])}`).to.deep.equal([]);
    expect(log.lines.filter((line) => line.startsWith('error'))).to.deep.equal([]);
    // 0 (closed without an answer) only for requests that were not HTTP at all
    expect(statuses.get(0) ?? 0).to.be.below(requests.filter((r) => !/^[A-Z\u00c9]+ \//.test(r.toString('latin1', 0, 12))).length + 1);
    expect(await legacyPush(server.apiUrl, { type: 'publish', to: 'u', content: 'after fuzz' })).to.deep.equal({ status: 200, body: 'ok' });
    await page.waitFor('new_msg', (c) => c === 'after fuzz');
  });

  it('accepts each signed request at most once, through random replays, forgeries and a full replay cache', async () => {
    const secret = 'fuzz-push-secret-0123456789';
    const cap = 5 + int(30);
    const server = await startServer({ pushSecret: secret, maxRememberedSignatures: cap });
    const page = await connectClient('v4', server.ioUrl);
    await page.login('u');
    type Signed = { content: string; url: string; options: { method: string; headers: Record<string, string>; body: string } };
    const sign = (content: string, ts = Math.floor(Date.now() / 1000)): Signed => {
      const v1 = int(2) === 0;
      const method = v1 ? 'POST' : pick(['GET', 'POST']);
      const target = v1 ? '/api/v1/push' : method === 'GET' ? `/?type=publish&to=u&content=${content}` : '/';
      const body = v1 ? JSON.stringify({ to: 'u', event: 'new_msg', data: content }) : method === 'POST' ? `type=publish&to=u&content=${content}` : '';
      const headers: Record<string, string> = { 'x-push-timestamp': String(ts), 'x-push-signature': signRequest(secret, String(ts), method, target, body) };
      if (body !== '') headers['content-type'] = v1 ? 'application/json' : 'application/x-www-form-urlencoded';
      return { content, url: server.apiUrl + target, options: { method, headers, body } };
    };
    const made: Signed[] = [];
    const accepted = new Map<string, number>();
    let fresh = 0;
    for (let round = 0; round < 20; round++) {
      const batch = Array.from({ length: 15 }, (_, i): { signed: Signed; original: boolean } => {
        const roll = int(6);
        if (roll <= 1 || made.length === 0) {
          const signed = sign(`r${round}-${i}`);
          made.push(signed);
          return { signed, original: true };
        }
        const earlier = pick(made);
        if (roll <= 3) return { signed: earlier, original: false }; // a replay, maybe racing its original
        const forged = structuredClone(earlier);
        if (roll === 4) forged.options.headers['x-push-timestamp'] = String(Number(forged.options.headers['x-push-timestamp']) + pick([-400, 1, 400]));
        else forged.options.headers['x-push-signature'] = forged.options.headers['x-push-signature']!.replace(/^./, (c) => (c === '0' ? '1' : '0'));
        return { signed: forged, original: false };
      });
      const answers = await Promise.all(batch.map(({ signed }) => rawRequest(signed.url, signed.options)));
      answers.forEach((res, i) => {
        const { signed, original } = batch[i]!;
        expect([200, 401, 503], res.body).to.include(res.status);
        if (original) fresh++;
        if (res.status === 200) accepted.set(signed.content, (accepted.get(signed.content) ?? 0) + 1);
        if (res.status === 503) {
          expect(Number(res.headers['retry-after'])).to.be.within(1, 301);
          expect(res.body).to.include(`${cap} signed requests are already remembered`);
        }
      });
    }
    // nothing expires within the run: exactly the first `cap` distinct signatures got through, once each
    expect([...accepted.values()].every((n) => n === 1), JSON.stringify([...accepted])).to.equal(true);
    expect(accepted.size).to.equal(Math.min(cap, fresh));
    await until(() => page.received('new_msg').length >= accepted.size, 'accepted pushes to arrive');
    expect(page.received('new_msg').map(([c]) => c).sort()).to.deep.equal([...accepted.keys()].sort());
  });

  it('survives 2000 random socket frames and events, and tracks only the sockets still open', async () => {
    const server = await startServer({ socketEventsPerSecond: 100_000, maxSocketMessageBytes: 8192 });
    const page = await connectClient('v2', server.ioUrl);
    await page.login('steady');
    const events = ['login', 'subscribe', 'unsubscribe', 'publish', 'new_msg', 'x', '', 'disconnect', ...PROTOTYPE_NAMES];
    const values = () => pick<unknown>([text(20), int(1e6), null, [], {}, { uid: name(5), token: text(64) }, { topic: 'private-' + text(3) }, { topic: name(5), data: 1 }, [name(3), { topic: 1 }], pick(PROTOTYPE_NAMES), 'x'.repeat(300), -0, true]);
    let sent = 0;
    while (sent < 2000) {
      const fuzzer = ioV4(server.ioUrl, { forceNew: true, reconnection: false, transports: [pick(['websocket', 'polling'] as const)] });
      onCleanup(() => fuzzer.close());
      await new Promise<void>((resolve, reject) => (fuzzer.once('connect', resolve), fuzzer.once('connect_error', reject)));
      for (let i = 0; i < 200 && sent < 2000; i++, sent++) {
        if (int(20) === 0) {
          fuzzer.io.engine.write(pick([text(50), '4' + text(20), '42[' + text(10), '2probe', 'x'.repeat(9000), '']));
        } else {
          // as a raw packet, so names the client itself refuses (disconnect, ...) reach the server
          fuzzer.io.engine.write('42' + JSON.stringify([pick(events), values(), values()]));
        }
      }
      fuzzer.close();
    }
    const raw = await Promise.all(Array.from({ length: 50 }, () => send(server.ports.io, randomRequest())));
    expect(raw.filter((s) => s >= 500)).to.deep.equal([]);

    // only the steady page is left, counted once
    await until(() => server.io.engine.clientsCount === 1, 'fuzzing sockets to be gone', 10_000);
    expect((await legacyPush(server.apiUrl, { type: 'publish', to: 'steady', content: 'still here' })).body).to.equal('ok');
    await page.waitFor('new_msg', (c) => c === 'still here');
    const counts = await page.request<{ ok: boolean }>('login', 'again'); // a second login: refused, nothing counted
    expect(counts.ok).to.equal(false);
  });

  it('takes uids, topics, event names and push ids named like Object.prototype members through every API that takes one', async () => {
    const secret = 'fuzz-push-secret-0123456789';
    const adminToken = 'fuzz-admin-token-0123456789';
    const hook = await startWebhookReceiver();
    const server = await startServer({ pushSecret: secret, webPort: 0, adminToken, clientPublishTopics: ['*'], webhookUrl: [hook.url], ackTimeoutMs: 300 });
    const call = async <T>(path: string, body?: unknown, method = body === undefined ? 'GET' : 'POST'): Promise<{ status: number; body: T }> => {
      const headers = { authorization: `Bearer ${secret}`, 'content-type': 'application/json' };
      const res = await fetch(server.apiUrl + path, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
      return { status: res.status, body: (await res.json()) as T };
    };
    const lookup = async (uid: string) => {
      const res = await fetch(`${server.webUrl}/admin/users?uid=${encodeURIComponent(uid)}`, { headers: { authorization: `Bearer ${adminToken}` } });
      return (await res.json()) as { online: boolean; pages: number; transports: { sse: number }; stored: { count: number } | null };
    };
    type Status = { kind: string; topic?: string; sockets?: number; uids?: Record<string, { state: string }> };
    /** The state of `uid` in a status answer: own keys only, so a missing `constructor` is not Object. */
    const stateIn = (status: Status, uid: string) => (status.uids && Object.hasOwn(status.uids, uid) ? status.uids[uid]!.state : undefined);
    const at = (uid: string) => encodeURIComponent(uid);

    // each of Object.prototype's names and two random uids; topics, events and ids take the name where they may
    const uids = [...PROTOTYPE_NAMES, text(1 + int(30)), text(1 + int(30))];
    const topicOf = (uid: string, i: number) => (/^[A-Za-z0-9_.:@/-]{1,128}$/.test(uid) ? uid : `topic-${i}`);
    const eventOf = (uid: string) => (/^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/.test(uid) ? uid : 'message');
    const idOf = (uid: string, i: number) => (/^[A-Za-z0-9_.:-]{1,128}$/.test(uid) ? uid : `id-${i}`);

    // offline: stored, scheduled, presence, the admin lookup
    for (const uid of uids) {
      const kept = await call<{ id: string; offline: string[] }>('/api/v1/push', { to: [uid, 'nobody'], data: `kept for ${uid}`, ttl: 600 });
      expect(kept.body.offline, uid).to.deep.equal([uid, 'nobody']);
      const status = (await call<Status>(`/api/v1/messages/${kept.body.id}`)).body;
      expect(Object.keys(status.uids ?? {}).sort(), uid).to.deep.equal([uid, 'nobody'].sort());
      expect(stateIn(status, uid), uid).to.equal('stored');
      const later = await call<{ id: string }>('/api/v1/push', { to: uid, data: 'later', delay: 3600 });
      expect(later.status, uid).to.equal(202);
      const scheduled = (await call<{ scheduled: { id: string; to?: string[] }[] }>('/api/v1/scheduled')).body.scheduled;
      expect(scheduled.find((p) => p.id === later.body.id)?.to, uid).to.deep.equal([uid]);
      expect((await call(`/api/v1/scheduled/${later.body.id}`, undefined, 'DELETE')).status, uid).to.equal(200);
      const messages = (await call<{ uid: string; messages: { data: unknown }[] }>(`/api/v1/users/${at(uid)}/messages`)).body;
      expect(messages.uid, uid).to.equal(uid);
      expect(messages.messages.map((m) => m.data), uid).to.deep.equal([`kept for ${uid}`]);
      expect((await call(`/api/v1/users/${at(uid)}`)).body, uid).to.deep.equal({ uid, online: false, pages: 0 });
      const looked = await lookup(uid);
      expect(looked, uid).to.deep.include({ online: false, pages: 0 });
      expect(looked.stored?.count, uid).to.equal(1);
    }
    expect((await call('/api/v1/users/online', { uids })).body).to.deep.equal({ online: [], offline: uids });

    // online: a page (2.x or 4.x), an SSE stream and the SDK per uid, each pushed to every way
    for (const [i, uid] of uids.entries()) {
      const topic = topicOf(uid, i);
      const event = eventOf(uid);
      const page = await connectClient(pick(['v2', 'v4'] as const), server.ioUrl);
      page.track(event);
      await page.login(uid);
      expect(await page.request('subscribe', topic), uid).to.deep.include({ ok: true });
      const sse = await SseClient.open(`${server.ioUrl}/events?${new URLSearchParams({ uid, topics: topic })}`);
      expect(sse.status, `${uid}: ${sse.body}`).to.equal(200);
      const sdk = new PushClient(server.ioUrl, { uid, io: (url, opts) => ioV4(url, { ...opts, forceNew: true }) });
      onCleanup(() => sdk.close());
      const got: unknown[] = [];
      sdk.on(event, (data) => void got.push(data));
      if (event !== 'message') sdk.on('message', (data) => void got.push(data)); // client messages
      expect(await sdk.subscribe(topic), uid).to.deep.include({ ok: true });
      await until(async () => (await call<{ pages: number }>(`/api/v1/users/${at(uid)}`)).body.pages === 3, `three pages of ${uid}`);
      expect((await call(`/api/v1/users/${at(uid)}`)).body, uid).to.deep.equal({ uid, online: true, pages: 3 });
      expect((await call('/api/v1/users/online', { uids: [uid, 'nobody'] })).body, uid).to.deep.equal({ online: [uid], offline: ['nobody'] });
      const looked = await lookup(uid);
      expect(looked, uid).to.deep.include({ online: true, pages: 3 });
      expect(looked.transports.sse, uid).to.equal(1);

      const content = `<b>${uid}</b>`;
      const method = pick<PushMethod>(['get', 'form', 'multipart', 'json']);
      expect(await legacyPush(server.apiUrl, { type: 'publish', to: uid, content, secret }, method), `${method} ${uid}`).to.deep.equal({ status: 200, body: 'ok' });
      await page.waitFor('new_msg', (c) => c === escapeHtml(content));

      const id = idOf(uid, i);
      const pushed = await call<{ id: string; online: string[]; offline: string[] }>('/api/v1/push', { to: [uid, 'nobody'], event, data: `v1 ${uid}`, ttl: 600, id });
      expect(pushed.body, uid).to.deep.include({ id, online: [uid], offline: ['nobody'] });
      await page.waitFor(event, (data) => data === `v1 ${uid}`);
      await sse.waitFor((e) => e.id === id, `the push ${id} on the SSE stream`);
      await until(() => got.includes(`v1 ${uid}`), `the push ${id} in the SDK`);
      // the SDK acks it after its handler
      await until(async () => stateIn((await call<Status>(`/api/v1/messages/${id}`)).body, uid) === 'acked', `${uid} acked in the status of ${id}`);
      const status = (await call<Status>(`/api/v1/messages/${id}`)).body;
      expect(Object.keys(status.uids ?? {}).sort(), uid).to.deep.equal([uid, 'nobody'].sort());
      expect(stateIn(status, 'nobody'), uid).to.equal('stored');

      const batch = await call('/api/v1/push/batch', { messages: [{ to: uid, event, data: `batch ${uid}` }] });
      expect(batch.status, uid).to.equal(200);
      await page.waitFor(event, (data) => data === `batch ${uid}`);

      const topical = await call<{ id: string }>('/api/v1/push', { topic, event, data: `topic ${uid}` });
      await page.waitFor(event, (data) => data === `topic ${uid}`);
      await sse.waitFor((e) => e.data === `topic ${uid}`, `the topic push on the SSE stream of ${uid}`);
      await until(() => got.includes(`topic ${uid}`), `the topic push in the SDK of ${uid}`);
      expect((await call<Status>(`/api/v1/messages/${topical.body.id}`)).body, uid).to.deep.include({ kind: 'topic', topic, sockets: 3 });

      expect(await page.request('publish', { topic, data: `published ${uid}` }), uid).to.deep.include({ ok: true });
      await until(() => got.includes(`published ${uid}`), `the client message in the SDK of ${uid}`);
      await hook.waitFor((requests) => requests.some((r) => {
        const event = JSON.parse(r.body) as { type: string; uid: string };
        return event.type === 'user.online' && event.uid === uid;
      }));
      expect(await page.request('unsubscribe', topic), uid).to.deep.include({ ok: true });
    }

    const listed: string[] = [];
    let cursor: string | null = '';
    while (cursor !== null) {
      const page: { uids: string[]; cursor: string | null } = (await call<{ uids: string[]; cursor: string | null }>(`/api/v1/users?online=true&cursor=${at(cursor)}`)).body;
      listed.push(...page.uids);
      cursor = page.cursor;
    }
    expect(listed.sort()).to.deep.equal([...uids].sort());
  });
});
