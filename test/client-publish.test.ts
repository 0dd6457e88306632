// Client messages in topics (CLIENT_PUBLISH_TOPICS): off by default; subscribers of a matching
// topic talk to each other through `publish`, bounded by size and the socket event rate, with a
// publish right in the token under LOGIN_SECRET, across a cluster, and never on new_msg.
import { expect } from 'chai';
import { SignJWT } from 'jose';
import { loginToken, publishKey, topicKey } from '../src/login-auth.ts';
import { cleanupAll } from './support/cleanup.ts';
import { connectClient, type TestClient } from './support/clients.ts';
import { REDIS_SERVER, startRedis, type TestRedis } from './support/redis-server.ts';
import { legacyPush, startServer, type TestServer } from './support/server.ts';
import { startWebhookReceiver } from './support/webhook-receiver.ts';
import type { Config } from '../src/config.ts';

interface Reply {
  ok: boolean;
  id?: string;
  error?: { code: string; message: string };
}
interface Meta {
  id: string;
  ts: number;
  uid: string;
  client: boolean;
}

const LOGIN_SECRET = 'publish-test-login-secret';

function chat(overrides: Partial<Config> = {}): Promise<TestServer> {
  return startServer({ clientPublishTopics: ['chat-*'], ...overrides });
}

/** A page logged in as `uid` and subscribed to `topic` (4.x unless said). */
async function member(server: TestServer, uid: string, topic = 'chat-1', version: 'v2' | 'v4' = 'v4'): Promise<TestClient> {
  const client = await connectClient(version, server.ioUrl);
  await client.login(uid);
  expect(await client.request('subscribe', topic)).to.deep.include({ ok: true });
  return client;
}

function publish(client: TestClient, message: unknown): Promise<Reply> {
  return client.request<Reply>('publish', message);
}

describe('client messages in topics', function () {
  this.timeout(20_000);
  afterEach(cleanupAll);

  it('are off by default: publish answers forbidden and the socket stays connected', async () => {
    const server = await startServer();
    const a = await member(server, 'a');
    const reply = await publish(a, { topic: 'chat-1', data: 'hi' });
    expect(reply.ok).to.equal(false);
    expect(reply.error!.code).to.equal('forbidden');
    expect(reply.error!.message).to.match(/CLIENT_PUBLISH_TOPICS/);
    expect(a.raw.connected).to.equal(true);
  });

  it('reach the other subscribers as `message` with the sender uid, an id and client: true; the sender only with echo', async () => {
    const server = await chat();
    const a = await member(server, 'alice');
    const b = await member(server, 'bob');
    const outsider = await connectClient('v4', server.ioUrl);
    await outsider.login('carol');
    const sent = await publish(a, { topic: 'chat-1', data: { text: 'hello' } });
    expect(sent.ok).to.equal(true);
    const [data, meta] = await b.waitFor('message');
    expect(data).to.deep.equal({ text: 'hello' });
    expect(meta).to.deep.include({ id: sent.id, uid: 'alice', client: true });
    const echoed = await publish(a, { topic: 'chat-1', data: 'again', echo: true });
    const [mine, myMeta] = await a.waitFor('message');
    expect(mine).to.equal('again');
    expect((myMeta as Meta).id).to.equal(echoed.id); // the first message never came back to its sender
    await b.waitFor('message', (d) => d === 'again');
    expect(outsider.received('message')).to.deep.equal([]);
  });

  it('are refused with a reason: a topic no pattern matches, a socket not subscribed or not logged in, bad shapes', async () => {
    const server = await chat();
    const a = await member(server, 'a');
    expect((await publish(a, { topic: 'news', data: 1 })).error!.code).to.equal('forbidden');
    expect((await publish(a, { topic: 'chat-2', data: 1 })).error!.code).to.equal('not_subscribed');
    expect((await publish(a, { topic: 'chat-1' })).error!.code).to.equal('invalid_message');
    expect((await publish(a, { topic: 'chat-1', data: 1, extra: 2 })).error!.code).to.equal('invalid_message');
    expect((await publish(a, 'chat-1')).error!.code).to.equal('invalid_message');
    expect((await publish(a, { topic: 'chat 1', data: 1 })).error!.code).to.equal('invalid_topic');
    const anonymous = await connectClient('v4', server.ioUrl);
    await anonymous.request('subscribe', 'chat-1');
    expect((await publish(anonymous, { topic: 'chat-1', data: 1 })).error!.code).to.equal('not_logged_in');
    expect(a.raw.connected && anonymous.raw.connected).to.equal(true);
  });

  it('are bounded by MAX_CLIENT_MESSAGE_BYTES and the socket event rate; the socket stays', async () => {
    const server = await chat({ maxClientMessageBytes: 100, socketEventsPerSecond: 2 });
    const a = await member(server, 'a');
    const big = await publish(a, { topic: 'chat-1', data: 'x'.repeat(100) }); // 102 bytes as JSON
    expect(big.error!.code).to.equal('payload_too_large');
    expect(big.error!.message).to.match(/102 bytes.*MAX_CLIENT_MESSAGE_BYTES/);
    const replies: Reply[] = [];
    for (let i = 0; i < 6; i++) replies.push(await publish(a, { topic: 'chat-1', data: i }));
    expect(replies.some((r) => r.error?.code === 'rate_limited')).to.equal(true);
    expect(a.raw.connected).to.equal(true);
  });

  it('CLIENT_PUBLISH_PER_SECOND bounds a uid over all its sockets, and a topic over all its publishers', async () => {
    // the socket event rate is high: only the publish rates can refuse here
    const server = await chat({ clientPublishPerSecond: 1, socketEventsPerSecond: 1000 });
    const sockets = [await member(server, 'many'), await member(server, 'many'), await member(server, 'many')];
    const replies: Reply[] = [];
    for (let i = 0; i < 3; i++) for (const s of sockets) replies.push(await publish(s, { topic: 'chat-1', data: i }));
    // a burst of 2 for the uid, then refused whichever socket sends (1 a second refills)
    expect(replies.filter((r) => r.ok).length).to.be.within(2, 3);
    expect(replies.filter((r) => r.error?.code === 'rate_limited').length).to.be.within(6, 7);
    expect(replies.find((r) => !r.ok)!.error!.message).to.match(/CLIENT_PUBLISH_PER_SECOND/);
    // the topic: 40 in a burst from all its publishers together (20 x 1 a second, twice that)
    const crowd = await Promise.all(Array.from({ length: 30 }, (_, i) => member(server, `u${i}`, 'chat-2')));
    const sent: Reply[] = [];
    for (const c of crowd) for (let k = 0; k < 2; k++) sent.push(await publish(c, { topic: 'chat-2', data: k }));
    // (refilled at 20 a second while the 60 are sent: a few more than 40 may pass, never all)
    expect(sent.filter((r) => r.ok).length).to.be.within(40, 55);
    expect(sent.filter((r) => r.error?.code === 'rate_limited').length).to.be.greaterThan(0);
    for (const c of [...sockets, ...crowd]) expect(c.raw.connected).to.equal(true);
  });

  it('never reach a legacy page on new_msg: a 2.x subscriber gets `message` only', async () => {
    const server = await chat();
    const legacy = await member(server, 'old', 'chat-1', 'v2');
    const a = await member(server, 'a');
    expect((await publish(a, { topic: 'chat-1', data: '<img src=x onerror=alert(1)>' })).ok).to.equal(true);
    await legacy.waitFor('message', (d) => d === '<img src=x onerror=alert(1)>');
    // a legacy push after it: new_msg delivers in order, so anything published on it came before
    await legacyPush(server.apiUrl, { type: 'publish', to: 'old', content: 'barrier' });
    await legacy.waitFor('new_msg', (m) => m === 'barrier');
    expect(legacy.received('new_msg')).to.deep.equal([['barrier']]);
  });

  it('with LOGIN_SECRET need a publish right (publishToken at subscribe, HMAC or JWT); subscribe tokens work unchanged', async () => {
    const server = await chat({ loginSecret: LOGIN_SECRET });
    const login = async (uid: string) => {
      const c = await connectClient('v4', server.ioUrl);
      expect(await c.request('login', { uid, token: loginToken(LOGIN_SECRET, uid) })).to.deep.include({ ok: true });
      return c;
    };
    const reader = await login('reader');
    expect(await reader.request('subscribe', 'chat-1')).to.deep.include({ ok: true });
    expect((await publish(reader, { topic: 'chat-1', data: 1 })).error!.code).to.equal('forbidden');

    const hmac = await login('writer');
    expect(await hmac.request('subscribe', { topic: 'chat-1', publishToken: loginToken(publishKey(LOGIN_SECRET), 'chat-1') })).to.deep.include({ ok: true });
    expect((await publish(hmac, { topic: 'chat-1', data: 'by hmac' })).ok).to.equal(true);
    await reader.waitFor('message', (d) => d === 'by hmac');

    const jwt = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('chat-private-x').setExpirationTime('1h')
      .sign(new TextEncoder().encode(publishKey(LOGIN_SECRET)));
    const jwtWriter = await login('jwt');
    expect(await jwtWriter.request('subscribe', { topic: 'chat-private-x', publishToken: jwt })).to.deep.include({ ok: true });
    expect((await publish(jwtWriter, { topic: 'chat-private-x', data: 'by jwt' })).ok).to.equal(true);

    // a subscribe token is no publish token; an existing private- subscribe token still subscribes
    const wrong = await login('wrong');
    const refused = await wrong.request<Reply>('subscribe', { topic: 'chat-1', publishToken: loginToken(topicKey(LOGIN_SECRET), 'chat-1') });
    expect(refused.error!.code).to.equal('unauthorized');
    expect(await wrong.request('subscribe', { topic: 'private-room', token: loginToken(topicKey(LOGIN_SECRET), 'private-room') })).to.deep.include({ ok: true });
    // unsubscribing gives the right up
    await hmac.request('unsubscribe', 'chat-1');
    await hmac.request('subscribe', 'chat-1');
    expect((await publish(hmac, { topic: 'chat-1', data: 1 })).error!.code).to.equal('forbidden');
  });

  it('are sent to WEBHOOK_URL as client.message with WEBHOOK_CLIENT_MESSAGES=on', async () => {
    const receiver = await startWebhookReceiver();
    const server = await chat({ webhookUrl: [receiver.url], webhookClientMessages: true });
    const a = await member(server, 'a');
    const sent = await publish(a, { topic: 'chat-1', data: { n: 1 } });
    const isClientMessage = (x: { body: string }) => (JSON.parse(x.body) as { type: string }).type === 'client.message';
    const requests = await receiver.waitFor((r) => r.some(isClientMessage));
    const event: unknown = JSON.parse(requests.find(isClientMessage)!.body);
    expect(event).to.deep.include({ type: 'client.message', uid: 'a', topic: 'chat-1', messageId: sent.id, data: { n: 1 } });
  });

  describe('in a cluster of two nodes on a real redis-server', function () {
    let redis: TestRedis;
    before(async function () {
      if (!REDIS_SERVER) this.skip();
      redis = await startRedis();
    });
    after(async () => redis?.close());

    it('a message published on node A reaches the subscribers on node B, not the sender', async () => {
      const one = await chat({ redisUrl: redis.url });
      const two = await chat({ redisUrl: redis.url });
      const a = await member(one, 'a');
      const b = await member(two, 'b');
      const sent = await publish(a, { topic: 'chat-1', data: 'across' });
      const [data, meta] = await b.waitFor('message');
      expect(data).to.equal('across');
      expect(meta).to.deep.include({ id: sent.id, uid: 'a', client: true });
      // b answers; a gets it and never its own
      await publish(b, { topic: 'chat-1', data: 'back' });
      await a.waitFor('message', (d) => d === 'back');
      expect(a.received('message').map((args) => args[0])).to.deep.equal(['back']);
    });
  });
});
