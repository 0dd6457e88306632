// The client SDK against a real server, in Node with the real socket.io-client 4.x.
import { expect } from 'chai';
import { io } from 'socket.io-client';
import { PushClient } from '../packages/push-client/src/index.ts';
import type { MessageMeta } from '../src/events.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { withDeadline } from './support/clients.ts';
import { startServer, type TestServer } from './support/server.ts';
import { until } from './support/until.ts';

function sdk(server: TestServer, uid: string): PushClient {
  const client = new PushClient(server.ioUrl, { uid, io: (url, opts) => io(url, { ...opts, forceNew: true }) });
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
