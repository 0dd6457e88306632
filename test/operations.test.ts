// What operators and backends see of a running server: online/offline webhooks to a real
// receiver, /metrics moving with the traffic, and the health probes.
import { expect } from 'chai';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { connectClient, withDeadline } from './support/clients.ts';
import { forEachEngine } from './support/engines.ts';
import { legacyPush, startServer } from './support/server.ts';
import { until } from './support/until.ts';
import { closedPortUrl, startWebhookReceiver, type ReceivedRequest } from './support/webhook-receiver.ts';

const SECRET = 'webhook-secret-0123456789';

function verified(request: ReceivedRequest): { type: string; uid: string; id: string; time: string } {
  const ts = String(request.headers['x-webhook-timestamp']);
  const expected = 'sha256=' + createHmac('sha256', SECRET).update(`${ts}.${request.body}`).digest('hex');
  expect(request.headers['x-signature']).to.equal(expected);
  const event = JSON.parse(request.body) as { type: string; uid: string; id: string; time: string };
  expect(request.headers['x-webhook-id']).to.equal(event.id);
  return event;
}

/** The samples of /metrics by name and labels; fails on a line Prometheus would not parse. */
async function scrape(apiUrl: string): Promise<Map<string, number>> {
  const res = await fetch(`${apiUrl}/metrics`);
  expect(res.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4/);
  const samples = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (-?[\d.e+-]+|[Nn]a[Nn]|\+Inf|-Inf)$/.exec(line); // Prometheus parses NaN in any case
    expect(m, `not a Prometheus sample: ${line}`).to.not.equal(null);
    samples.set(m![1]!, Number(m![2]));
  }
  return samples;
}

describe('operations', () => {
  afterEach(cleanupAll);

  describe('online-status webhooks', () => {
    it('sends signed user.online at the first page and user.offline after the last page and the grace', async () => {
      const receiver = await startWebhookReceiver();
      const server = await startServer({ webhookUrl: [receiver.url], webhookSecret: SECRET, webhookGraceMs: 200 });
      const page1 = await connectClient('v4', server.ioUrl);
      await page1.login('ann');
      const page2 = await connectClient('v2', server.ioUrl);
      await page2.login('ann'); // a second page: nothing new
      const [online] = await receiver.waitFor(1);
      expect(verified(online!)).to.deep.include({ type: 'user.online', uid: 'ann' });
      page1.close();
      page2.close();
      const requests = await receiver.waitFor(2);
      expect(requests.map((r) => verified(r)).map((e) => [e.type, e.uid])).to.deep.equal([
        ['user.online', 'ann'],
        ['user.offline', 'ann'],
      ]);
    });

    it('sends nothing for a page refresh within the grace period', async () => {
      const receiver = await startWebhookReceiver();
      const server = await startServer({ webhookUrl: [receiver.url], webhookSecret: SECRET, webhookGraceMs: 400 });
      const before = await connectClient('v4', server.ioUrl);
      await before.login('bea');
      await receiver.waitFor(1);
      before.close(); // the refresh: the old page goes, the new one comes
      const after = await connectClient('v4', server.ioUrl);
      await after.login('bea');
      // another uid's transition after the grace shows the grace has passed with nothing for bea
      const other = await connectClient('v4', server.ioUrl);
      await other.login('cid');
      other.close();
      const requests = await receiver.waitFor((r) => r.some((x) => x.body.includes('"user.offline"')), 3000);
      expect(requests.map((r) => verified(r)).map((e) => [e.type, e.uid])).to.deep.equal([
        ['user.online', 'bea'],
        ['user.online', 'cid'],
        ['user.offline', 'cid'],
      ]);
    });

    it('sends message.stored_expired for a stored message that expired unacked', async () => {
      const receiver = await startWebhookReceiver();
      const server = await startServer({ webhookUrl: [receiver.url], webhookSecret: SECRET });
      const res = await fetch(`${server.apiUrl}/api/v1/push`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ to: 'away', event: 'order.updated', data: 1, ttl: 0.2, id: 'order-9' }),
      });
      expect(res.status).to.equal(200);
      const [request] = await receiver.waitFor(1, 5000); // the store sweeps once a second
      expect(verified(request!)).to.deep.include({ type: 'message.stored_expired', uid: 'away' });
      expect(JSON.parse(request!.body)).to.deep.include({ messageId: 'order-9', event: 'order.updated' });
    });

    it('keeps pushing while the receiver is down', async () => {
      const server = await startServer({ webhookUrl: [await closedPortUrl()], webhookGraceMs: 50 });
      const pages = [];
      for (let i = 0; i < 20; i++) {
        const c = await connectClient('v4', server.ioUrl);
        await c.login(`u${i}`);
        pages.push(c);
      }
      for (let i = 0; i < 20; i++) {
        expect((await legacyPush(server.apiUrl, { type: 'publish', to: `u${i}`, content: 'still' })).body).to.equal('ok');
      }
      for (const c of pages) expect((await c.waitFor('new_msg'))[0]).to.equal('still');
      // the webhooks were tried, and failed, meanwhile: the receiver was in use, and down
      await until(
        async () => (await scrape(server.apiUrl)).get('push_webhook_failed_total{type="user.online"}')! >= 20,
        'a failed user.online attempt for every uid',
      );
      expect((await scrape(server.apiUrl)).get('push_webhook_sent_total{type="user.online"}')).to.equal(0);
    });
  });

  describe('/metrics and probes', () => {
    it('parses, and its counters move with the traffic', async () => {
      const server = await startServer({ pushSecret: 'push-secret-0123456789' }); // metrics need no secret
      const before = await scrape(server.apiUrl);
      expect(before.get('push_online_users')).to.equal(0);
      const ws = await connectClient('v4', server.ioUrl, ['websocket']);
      const polling = await connectClient('v2', server.ioUrl, ['polling']);
      await ws.login('m1');
      await polling.login('m2');
      const refused = await connectClient('v4', server.ioUrl);
      await refused.request('login', '');
      for (let i = 0; i < 3; i++) await legacyPush(server.apiUrl, { type: 'publish', to: 'm1', content: 'x', secret: 'push-secret-0123456789' });
      await legacyPush(server.apiUrl, { type: 'publish', to: 'nobody', content: 'x', secret: 'push-secret-0123456789' });
      await legacyPush(server.apiUrl, { type: 'nope', secret: 'push-secret-0123456789' });
      await fetch(`${server.apiUrl}/api/v1/push`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer push-secret-0123456789' },
        body: JSON.stringify({ to: 'm2', data: 1, ttl: 60 }),
      });
      const [, , ack] = await polling.waitFor('message');
      (ack as () => void)();

      await until(async () => (await scrape(server.apiUrl)).get('push_acks_total') === 1, 'the ack to count');
      const after = await scrape(server.apiUrl);
      expect(after.get('push_online_users')).to.equal(2);
      expect(after.get('push_online_pages')).to.equal(2);
      expect(after.get('push_connections{transport="websocket"}')).to.equal(2);
      expect(after.get('push_connections{transport="polling"}')).to.equal(1);
      expect(after.get('push_logins_total{result="ok"}')).to.equal(2);
      expect(after.get('push_logins_total{result="refused"}')).to.equal(1);
      expect(after.get('push_pushes_total{api="legacy",result="ok"}')).to.equal(3);
      expect(after.get('push_pushes_total{api="legacy",result="offline"}')).to.equal(1);
      expect(after.get('push_pushes_total{api="legacy",result="fail"}')).to.equal(1);
      expect(after.get('push_pushes_total{api="v1",result="stored"}')).to.equal(1);
      expect(after.get('push_emits_total')).to.equal(5);
      expect(after.get('push_stored_messages')).to.equal(0);
      expect(after.get('push_emit_latency_seconds_count')).to.equal(5);
      expect(after.has('nodejs_eventloop_lag_seconds')).to.equal(true);
      expect(after.has('push_redis_up')).to.equal(false); // one node: no Redis to report on
      const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
      expect(after.get(`push_build_info{version="${version}",node_version="${process.version}"}`)).to.equal(1);
    });

    it('answers /healthz, and /readyz only while serving', async () => {
      const server = await startServer();
      expect(await (await fetch(`${server.apiUrl}/healthz`)).json()).to.deep.equal({ status: 'ok' });
      const ready = await fetch(`${server.apiUrl}/readyz`);
      expect(ready.status).to.equal(200);
      expect(await ready.json()).to.deep.equal({ ready: true });

      // A balancer's probe during the drain: a request in flight keeps its connection open
      // while close() runs, and a probe pipelined behind it is answered by the closing server.
      const socket = connect(server.ports.api, '127.0.0.1');
      onCleanup(() => socket.destroy());
      let answers = '';
      const received = new Set<() => void>();
      socket.setEncoding('utf8').on('data', (chunk: string) => {
        answers += chunk;
        for (const wake of received) wake();
      });
      /** Resolves the match once what the API port answered matches `pattern`. */
      const answered = (pattern: RegExp) =>
        withDeadline(
          new Promise<RegExpExecArray>((resolve) => {
            const check = () => {
              const match = pattern.exec(answers);
              if (!match) return;
              received.delete(check);
              resolve(match);
            };
            received.add(check);
            check();
          }),
          `no ${pattern} from the API port`,
        );
      const body = JSON.stringify({ to: 'nobody', data: 1 });
      socket.write(
        `POST /api/v1/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n` +
          'Expect: 100-continue\r\n\r\n',
      );
      await answered(/^HTTP\/1\.1 100 Continue/); // the push is in flight
      const closing = server.close();
      socket.write(body + 'GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      // the push's answer, then the probe's status line and JSON body
      const [, status, probe] = await answered(/HTTP\/1\.1 200 OK[^]*?\r\n\r\n\{"id"[^]*HTTP\/1\.1 (\d+)[^]*?\r\n\r\n(\{[^}]*\})/);
      expect(status).to.equal('503');
      expect(JSON.parse(probe!)).to.include({ ready: false });
      socket.end();
      await withDeadline(closing, 'close()', 3000);
    });
  });
});

// The presence routes read what presence holds: on both engines.
forEachEngine('presence API', (startServer, engine) => {
  afterEach(cleanupAll);

  const SECRET_HEADER = { authorization: 'Bearer push-secret-0123456789' };
  const get = async (apiUrl: string, path: string) => {
    const res = await fetch(`${apiUrl}/api/v1${path}`, { headers: SECRET_HEADER });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  it('answers counts, one uid, a paged list and a batch check, behind the push secret', async () => {
    const server = await startServer({ pushSecret: 'push-secret-0123456789' });
    for (const uid of ['p1', 'p1', 'p2', 'p3']) {
      const c = await connectClient('v4', server.ioUrl);
      await c.login(uid);
    }
    expect(await get(server.apiUrl, '/online')).to.deep.equal({ status: 200, body: { users: 3, pages: 4 } });
    expect(await get(server.apiUrl, '/users/p1')).to.deep.equal({ status: 200, body: { uid: 'p1', online: true, pages: 2 } });
    expect(await get(server.apiUrl, '/users/ghost')).to.deep.equal({ status: 200, body: { uid: 'ghost', online: false, pages: 0 } });

    const pages: Record<string, unknown>[] = [];
    let cursor: unknown = '';
    while (cursor !== null && pages.length < 10) {
      const page = await get(server.apiUrl, `/users?online=true&limit=2&cursor=${cursor}`);
      pages.push(page.body);
      cursor = page.body.cursor;
    }
    expect(pages.flatMap((p) => p.uids as string[]).sort()).to.deep.equal(['p1', 'p2', 'p3']);
    // the limit is exact in memory; with Redis it is a hint, and a small set comes whole
    if (engine === 'memory') {
      expect(pages).to.deep.equal([{ uids: ['p1', 'p2'], cursor: 'p2' }, { uids: ['p3'], cursor: null }]);
    }

    const check = await fetch(`${server.apiUrl}/api/v1/users/online`, {
      method: 'POST',
      headers: { ...SECRET_HEADER, 'content-type': 'application/json' },
      body: JSON.stringify({ uids: ['p2', 'ghost', 'p3', 'p2'] }),
    });
    expect(await check.json()).to.deep.equal({ online: ['p2', 'p3'], offline: ['ghost'] });

    expect((await fetch(`${server.apiUrl}/api/v1/online`)).status).to.equal(401);
    expect((await get(server.apiUrl, '/users?online=false')).status).to.equal(400);
    expect((await get(server.apiUrl, '/users?limit=0')).status).to.equal(400);
    const wrongMethod = await fetch(`${server.apiUrl}/api/v1/online`, { method: 'POST', headers: SECRET_HEADER });
    expect(wrongMethod.status).to.equal(405);
  });
});
