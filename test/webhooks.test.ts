// Webhooks against a real HTTP receiver: signatures, retries, order per uid, timeouts, a
// receiver that is down, the bounded queue, close(), and the presence grace period. mocha
// runs without --exit, so a timer or request left after close() shows as a hang.
import { createHmac } from 'node:crypto';
import { expect } from 'chai';
import { MemoryPresence, type Presence } from '../src/presence.ts';
import type { WebhookSenderOptions } from '../src/webhooks/sender-options.ts';
import { WebhookSender } from '../src/webhooks/sender.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import {
  closedPortUrl,
  startWebhookReceiver,
  type ReceivedRequest,
  type WebhookReceiver,
} from './support/webhook-receiver.ts';
import { until } from './support/until.ts';
import { recordingLogger, type RecordingLogger } from './support/logger.ts';
import type { WebhookDropReason, WebhookEvent, WebhookObserver } from '../src/webhooks/events.ts';
import { MemoryAnnouncedState, PresenceWebhooks } from '../src/webhooks/presence-webhooks.ts';

const SECRET = 'a-webhook-secret-of-some-length';
/** Short delays keep retries fast; the schedule's shape is the same as with the defaults. */
const FAST: WebhookSenderOptions = { baseDelayMs: 20, maxDelayMs: 200, timeoutMs: 2000 };

/** Records what the sender reports, as Metrics would count it. */
class RecordingObserver implements WebhookObserver {
  readonly sentEvents: WebhookEvent[] = [];
  readonly failures: { event: WebhookEvent; error: string }[] = [];
  readonly drops: { event: WebhookEvent; reason: WebhookDropReason }[] = [];

  sent(event: WebhookEvent): void {
    this.sentEvents.push(event);
  }

  failed(event: WebhookEvent, error: string): void {
    this.failures.push({ event, error });
  }

  dropped(event: WebhookEvent, reason: WebhookDropReason): void {
    this.drops.push({ event, reason });
  }
}

function startSender(
  urls: string[],
  options: WebhookSenderOptions = FAST,
  secret: string | null = SECRET,
): { sender: WebhookSender; observer: RecordingObserver; log: RecordingLogger } {
  const observer = new RecordingObserver();
  const log = recordingLogger();
  const sender = new WebhookSender(urls, secret, options, log, observer);
  onCleanup(() => sender.close());
  return { sender, observer, log };
}


function parse(request: ReceivedRequest): WebhookEvent {
  return JSON.parse(request.body) as WebhookEvent;
}

/** The types delivered (2xx) for `uid`, in arrival order. */
function deliveredTypes(receiver: WebhookReceiver, uid: string): string[] {
  return receiver
    .delivered()
    .map(parse)
    .filter((e) => e.uid === uid)
    .map((e) => e.type);
}

function messageIds(requests: readonly ReceivedRequest[]): string[] {
  return requests.map(parse).map((e) => (e.type === 'message.stored_expired' ? e.messageId : e.type));
}

describe('WebhookSender', () => {
  afterEach(cleanupAll);

  it('posts the event as JSON, signed with HMAC-SHA256 over timestamp "." body', async () => {
    const receiver = await startWebhookReceiver();
    const { sender } = startSender([receiver.url]);
    sender.send({ type: 'user.online', uid: '42' });

    const [request] = await receiver.waitFor(1);
    if (!request) throw new Error('no request');
    expect(request.method).to.equal('POST');
    expect(request.headers['content-type']).to.equal('application/json');

    const event = parse(request);
    expect(event).to.have.all.keys('id', 'type', 'time', 'uid');
    expect(event).to.include({ type: 'user.online', uid: '42' });
    expect(event.id).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Date(event.time).toISOString()).to.equal(event.time);
    expect(request.headers['x-webhook-id']).to.equal(event.id);

    const timestamp = String(request.headers['x-webhook-timestamp']);
    expect(timestamp).to.match(/^\d+$/);
    expect(Math.abs(Number(timestamp) - Date.now() / 1000)).to.be.below(60);
    const expected = 'sha256=' + createHmac('sha256', SECRET).update(`${timestamp}.${request.body}`).digest('hex');
    expect(request.headers['x-signature']).to.equal(expected);
  });

  it('sends no X-Signature without a secret', async () => {
    const receiver = await startWebhookReceiver();
    const { sender } = startSender([receiver.url], FAST, null);
    sender.send({ type: 'message.stored_expired', uid: '7', messageId: 'm1', event: 'order.updated' });

    const [request] = await receiver.waitFor(1);
    if (!request) throw new Error('no request');
    expect(request.headers).not.to.have.property('x-signature');
    expect(parse(request)).to.include({ type: 'message.stored_expired', uid: '7', messageId: 'm1', event: 'order.updated' });
  });

  it('retries a receiver that fails twice, with the same event id, until it answers 2xx', async () => {
    const receiver = await startWebhookReceiver();
    receiver.failNext(2);
    const { sender, observer } = startSender([receiver.url]);
    sender.send({ type: 'user.offline', uid: '42' });

    await receiver.waitFor(() => receiver.delivered().length === 1);
    expect(receiver.requests.map((r) => r.status)).to.deep.equal([500, 500, 200]);
    expect(new Set(receiver.requests.map((r) => r.body)).size).to.equal(1);
    expect(new Set(receiver.requests.map((r) => r.headers['x-webhook-id'])).size).to.equal(1);
    await until(() => observer.sentEvents.length === 1, 'observer.sent');
    expect(observer.failures.map((f) => f.error)).to.deep.equal(['answered 500', 'answered 500']);
    expect(observer.drops).to.deep.equal([]);
    expect(sender.queued).to.equal(0);
  });

  it("keeps one uid's events in order while the receiver fails, and other uids move on", async () => {
    const receiver = await startWebhookReceiver();
    receiver.failNext(5);
    const { sender } = startSender([receiver.url]);
    sender.send({ type: 'user.online', uid: 'u1' });
    sender.send({ type: 'user.offline', uid: 'u1' });
    sender.send({ type: 'user.online', uid: 'u1' });
    sender.send({ type: 'user.online', uid: 'u2' });

    await receiver.waitFor(() => receiver.delivered().length === 4);
    expect(deliveredTypes(receiver, 'u1')).to.deep.equal(['user.online', 'user.offline', 'user.online']);
    expect(deliveredTypes(receiver, 'u2')).to.deep.equal(['user.online']);
    // Not even an attempt of a later u1 event came before the earlier one was delivered.
    const u1Attempts = receiver.requests.map(parse).filter((e) => e.uid === 'u1');
    const order = [...new Set(u1Attempts.map((e) => e.id))];
    const firstDelivered = new Map(receiver.delivered().map((r) => [parse(r).id, receiver.requests.indexOf(r)]));
    for (let i = 1; i < order.length; i++) {
      const firstAttempt = receiver.requests.findIndex((r) => parse(r).id === order[i]);
      expect(firstAttempt).to.be.above(firstDelivered.get(order[i - 1] ?? '') ?? Infinity);
    }
  });

  it('times out a receiver that never answers and retries', async () => {
    const receiver = await startWebhookReceiver();
    receiver.hangNext(1);
    const { sender, observer } = startSender([receiver.url], { ...FAST, timeoutMs: 200 });
    sender.send({ type: 'user.online', uid: '42' });

    await receiver.waitFor(() => receiver.delivered().length === 1);
    expect(receiver.requests.map((r) => r.status)).to.deep.equal([null, 200]);
    expect(receiver.requests[0]?.headers['x-webhook-id']).to.equal(receiver.requests[1]?.headers['x-webhook-id']);
    expect(observer.failures.map((f) => f.error)).to.deep.equal(['timed out after 200 ms']);
  });

  it('queues at once for a receiver that is down, and another url still gets its events', async () => {
    const down = await closedPortUrl();
    const receiver = await startWebhookReceiver();
    const { sender, observer } = startSender([down, receiver.url], { ...FAST, maxAttempts: 1000 });

    for (let i = 0; i < 50; i++) {
      // Returns synchronously, having only queued: nothing was sent yet.
      expect(sender.send({ type: 'user.online', uid: `u${i}` })).to.equal(undefined);
    }
    expect(sender.queued).to.equal(100);
    expect(receiver.requests).to.have.length(0);

    await receiver.waitFor(() => receiver.delivered().length === 50);
    await until(() => observer.failures.length >= 50, 'failures of the down url');
    expect(observer.failures.every((f) => f.error === 'ECONNREFUSED')).to.equal(true);
    await until(() => sender.queued === 50, 'the working url drained');

    await sender.close();
    expect(observer.drops).to.have.length(50);
    expect(observer.drops.every((d) => d.reason === 'closed')).to.equal(true);
  });

  it('gives up after maxAttempts, reports the drop and logs one line', async () => {
    const { sender, observer, log } = startSender([await closedPortUrl()], { ...FAST, maxAttempts: 3 });
    sender.send({ type: 'user.offline', uid: '42' });

    await until(() => observer.drops.length === 1, 'the drop');
    expect(observer.drops[0]?.reason).to.equal('attempts');
    expect(observer.failures).to.have.length(3);
    expect(sender.queued).to.equal(0);
    expect(log.entries).to.have.length(1);
    expect(log.entries[0]).to.deep.include({ level: 'warn', message: 'webhook given up' });
    expect(log.entries[0]?.fields).to.deep.include({ type: 'user.offline', attempts: 3, error: 'ECONNREFUSED' });
    expect(log.entries[0]?.fields?.url).to.match(/^http:\/\/127\.0\.0\.1:\d+\/…$/); // the path may hold a token
  });

  it('drops the oldest past maxQueue and reports it', async () => {
    const receiver = await startWebhookReceiver();
    const { sender, observer, log } = startSender([receiver.url], { ...FAST, maxQueue: 3 });
    for (let i = 1; i <= 5; i++) {
      sender.send({ type: 'message.stored_expired', uid: 'q', messageId: `m${i}`, event: 'e' });
    }
    expect(sender.queued).to.equal(3);
    expect(observer.drops.map((d) => [d.event.type === 'message.stored_expired' && d.event.messageId, d.reason]))
      .to.deep.equal([['m1', 'overflow'], ['m2', 'overflow']]);
    // A burst of drops logs one line; the next line says how many it did not log.
    expect(log.entries.map((l) => l.message)).to.deep.equal(['webhook queue full: dropped the oldest delivery']);

    await receiver.waitFor(3);
    expect(messageIds(receiver.delivered())).to.deep.equal(['m3', 'm4', 'm5']);
  });

  it('bounds the queue in bytes too: events that carry data drop the oldest past maxQueueBytes', async () => {
    const receiver = await startWebhookReceiver();
    receiver.hangNext(1);
    const data = 'd'.repeat(1000);
    const { sender, observer } = startSender([receiver.url], { ...FAST, maxQueue: 1000, maxQueueBytes: 3500, timeoutMs: 60_000 });
    for (let i = 1; i <= 5; i++) sender.send({ type: 'message.stored_expired', uid: `b${i}`, messageId: `m${i}`, event: data });
    // each body is over 1000 bytes: three fit in 3500, the two oldest went
    expect(sender.queued).to.equal(3);
    expect(observer.drops.map((d) => [d.event.type === 'message.stored_expired' && d.event.messageId, d.reason]))
      .to.deep.equal([['m1', 'overflow'], ['m2', 'overflow']]);
  });

  it('lets client messages take at most half the queue: a chat flood drops its own newest, not presence events', async () => {
    const receiver = await startWebhookReceiver();
    receiver.hangNext(10);
    const { sender, observer } = startSender([receiver.url], { ...FAST, maxQueue: 4, timeoutMs: 60_000 });
    for (let i = 1; i <= 5; i++) sender.send({ type: 'client.message', uid: 'chatty', topic: 'chat-1', messageId: `c${i}`, data: i });
    sender.send({ type: 'user.online', uid: 'alice' });
    sender.send({ type: 'user.online', uid: 'bob' });
    expect(sender.queued).to.equal(4);
    // c1 and c2 (half of 4) stay; c3-c5 are refused as they come; both presence events stay
    expect(observer.drops.map((d) => [d.event.type === 'client.message' && d.event.messageId, d.reason])).to.deep.equal([
      ['c3', 'overflow'],
      ['c4', 'overflow'],
      ['c5', 'overflow'],
    ]);
  });

  it('drops the oldest even while it is in flight, and the rest follow in order', async () => {
    const receiver = await startWebhookReceiver();
    receiver.hangNext(1);
    const { sender, observer } = startSender([receiver.url], { ...FAST, maxQueue: 2, timeoutMs: 60_000 });
    sender.send({ type: 'message.stored_expired', uid: 'q', messageId: 'm1', event: 'e' });
    await receiver.waitFor(1); // m1 hangs in flight
    sender.send({ type: 'message.stored_expired', uid: 'q', messageId: 'm2', event: 'e' });
    sender.send({ type: 'message.stored_expired', uid: 'q', messageId: 'm3', event: 'e' });

    await receiver.waitFor(() => receiver.delivered().length === 2);
    expect(messageIds(receiver.delivered())).to.deep.equal(['m2', 'm3']);
    expect(messageIds(receiver.requests)).to.deep.equal(['m1', 'm2', 'm3']); // m1 never again
    expect(observer.drops.map((d) => d.reason)).to.deep.equal(['overflow']);
  });

  it('close({flushMs}) lets pending deliveries finish first', async () => {
    const receiver = await startWebhookReceiver();
    receiver.failNext(1);
    const { sender, observer } = startSender([receiver.url]);
    sender.send({ type: 'user.online', uid: '42' });
    await sender.close({ flushMs: 5000 });

    expect(observer.sentEvents).to.have.length(1);
    expect(receiver.delivered()).to.have.length(1);
    expect(observer.drops).to.deep.equal([]);
  });

  it('close() aborts requests in flight, cancels retries and drops what is left', async () => {
    const receiver = await startWebhookReceiver();
    receiver.hangNext(1);
    const down = await closedPortUrl();
    // maxDelayMs high: the down url's retry waits on a long timer that close() must clear.
    const { sender, observer, log } = startSender([receiver.url, down], {
      ...FAST,
      timeoutMs: 60_000,
      baseDelayMs: 30_000,
      maxDelayMs: 60_000,
    });
    sender.send({ type: 'user.online', uid: '42' });
    await receiver.waitFor(1);
    await until(() => observer.failures.length >= 1, 'the down url failing');

    await sender.close({ flushMs: 50 });
    expect(observer.drops.map((d) => d.reason)).to.deep.equal(['closed', 'closed']);
    expect(sender.queued).to.equal(0);
    expect(log.entries).to.deep.equal([
      { level: 'warn', message: 'webhooks closed: undelivered deliveries dropped', fields: { dropped: 2, unlogged: 0 } },
    ]);

    // After close: no throw, reported dropped, nothing sent.
    expect(sender.send({ type: 'user.offline', uid: '42' })).to.equal(undefined);
    expect(observer.drops).to.have.length(4);
    expect(sender.queued).to.equal(0);
  });

  it('survives an observer that throws', async () => {
    const receiver = await startWebhookReceiver();
    const log = recordingLogger();
    const observer: WebhookObserver = {
      sent() {
        throw new Error('observer bug');
      },
      failed() {},
      dropped() {},
    };
    const sender = new WebhookSender([receiver.url], SECRET, FAST, log, observer);
    onCleanup(() => sender.close());
    sender.send({ type: 'user.online', uid: 'a' });
    sender.send({ type: 'user.online', uid: 'a' });

    await receiver.waitFor(2);
    await until(() => log.entries.length === 2, 'two logged observer errors');
    expect(log.lines).to.deep.equal(['error: webhook observer sent threw', 'error: webhook observer sent threw']);
    expect((log.entries[0]?.err as Error).message).to.equal('observer bug');
  });

  it('refuses a url that is not http(s) when built', () => {
    expect(() => new WebhookSender(['ftp://example.com/'], null, {}, recordingLogger())).to.throw(/http or https/);
  });
});

describe('PresenceWebhooks', () => {
  afterEach(cleanupAll);

  const GRACE_MS = 100;

  /**
   * One node in this process, no server: presence, the webhooks on a real sender, and what
   * socket-handlers does as pages log in and go.
   */
  async function startInProcessNode(options: { presence?: Presence; announced?: MemoryAnnouncedState; url?: string } = {}) {
    const receiver = options.url ? null : await startWebhookReceiver();
    const presence: Presence = options.presence ?? new MemoryPresence();
    const url = options.url ?? receiver?.url;
    if (!url) throw new Error('no receiver url');
    const { sender } = startSender([url]);
    let hold: { reached: () => void; release: Promise<void> } | null = null;
    const isOnline = async (uid: string): Promise<boolean> => {
      const online = await presence.isOnline(uid);
      if (hold) {
        // A slow backend: the answer is from before the wait.
        const h = hold;
        hold = null;
        h.reached();
        await h.release;
      }
      return online;
    };
    const hooks = new PresenceWebhooks(
      sender,
      isOnline,
      options.announced ?? new MemoryAnnouncedState(),
      { graceMs: GRACE_MS },
      recordingLogger(),
    );
    onCleanup(() => hooks.close());
    return {
      receiver,
      presence,
      sender,
      hooks,
      /** What socket-handlers does at login: online() for the uid's first page. */
      async connect(uid: string) {
        if (await presence.addPage(uid)) hooks.online(uid);
      },
      /** What it does at disconnect: offline() for the uid's last page. */
      async disconnect(uid: string) {
        if (await presence.removePage(uid)) hooks.offline(uid);
      },
      /** The next isOnline call answers, then waits for the returned release(). */
      holdNextIsOnline(): { reached: Promise<void>; release: () => void } {
        let reached!: () => void;
        let release!: () => void;
        const reachedPromise = new Promise<void>((r) => (reached = r));
        hold = { reached, release: new Promise<void>((r) => (release = r)) };
        return { reached: reachedPromise, release };
      },
    };
  }

  function receiverOf(node: { receiver: WebhookReceiver | null }): WebhookReceiver {
    if (!node.receiver) throw new Error('node has no receiver');
    return node.receiver;
  }

  it('announces a first page as user.online, and only once for more pages', async () => {
    const node = await startInProcessNode();
    const receiver = receiverOf(node);
    await node.connect('alice');
    await node.connect('alice');
    await node.disconnect('alice'); // a page left, not the user
    expect(node.hooks.inGrace).to.equal(0);

    // The barrier: the last page goes, and a uid's events are delivered in order, so any
    // second online (or an offline for s1) would arrive before this offline.
    await node.disconnect('alice');
    await receiver.waitFor((r) => r.some((x) => parse(x).type === 'user.offline'));
    expect(deliveredTypes(receiver, 'alice')).to.deep.equal(['user.online', 'user.offline']);
  });

  it('sends nothing for a refresh within the grace period', async () => {
    const node = await startInProcessNode();
    const receiver = receiverOf(node);
    await node.connect('alice');
    await receiver.waitFor(1);

    await node.disconnect('alice');
    expect(node.hooks.inGrace).to.equal(1);
    await node.connect('alice'); // the refreshed page
    expect(node.hooks.inGrace).to.equal(0);

    // The uid's events are ordered, so anything the refresh sent would come before this.
    await node.disconnect('alice');
    await receiver.waitFor(() => deliveredTypes(receiver, 'alice').length === 2);
    expect(deliveredTypes(receiver, 'alice')).to.deep.equal(['user.online', 'user.offline']);
  });

  it('sends user.offline once the grace period passes, then user.online at the next page', async () => {
    const node = await startInProcessNode();
    const receiver = receiverOf(node);
    await node.connect('alice');
    await node.disconnect('alice');
    await receiver.waitFor(2);
    expect(node.hooks.inGrace).to.equal(0);

    await node.connect('alice');
    await receiver.waitFor(3);
    expect(deliveredTypes(receiver, 'alice')).to.deep.equal(['user.online', 'user.offline', 'user.online']);
  });

  it('in a cluster, a uid that moves to another node within the grace period is not announced', async () => {
    const receiver = await startWebhookReceiver();
    // Shared, as a cluster shares them through Redis.
    const presence = new MemoryPresence();
    const announced = new MemoryAnnouncedState();
    const a = await startInProcessNode({ presence, announced, url: receiver.url });
    const b = await startInProcessNode({ presence, announced, url: receiver.url });

    await a.connect('alice');
    await receiver.waitFor(1);
    await a.disconnect('alice'); // node A starts its grace period
    await b.connect('alice'); // the refresh lands on node B: announced already
    await until(() => a.hooks.inGrace === 0, "node A's grace period to end");
    await b.disconnect('alice');

    await receiver.waitFor(2);
    expect(deliveredTypes(receiver, 'alice')).to.deep.equal(['user.online', 'user.offline']);
  });

  it('follows an offline with an online when the uid came back while presence was slow to answer', async () => {
    const node = await startInProcessNode();
    const receiver = receiverOf(node);
    await node.connect('alice');
    await receiver.waitFor(1);

    const slow = node.holdNextIsOnline();
    await node.disconnect('alice');
    await slow.reached; // the grace period ended; its isOnline answered "offline" and stalls
    await node.connect('alice');
    slow.release();

    await receiver.waitFor(3);
    await node.disconnect('alice');
    await receiver.waitFor(4);
    expect(deliveredTypes(receiver, 'alice')).to.deep.equal([
      'user.online',
      'user.offline',
      'user.online',
      'user.offline',
    ]);
  });

  it('close() clears every grace timer: nothing is sent after it', async () => {
    const node = await startInProcessNode();
    const receiver = receiverOf(node);
    await node.connect('alice');
    await node.connect('bob');
    await receiver.waitFor(2);
    await node.disconnect('alice');
    await node.disconnect('bob');
    expect(node.hooks.inGrace).to.equal(2);
    node.hooks.close();
    expect(node.hooks.inGrace).to.equal(0);
    node.hooks.offline('carol'); // after close: ignored, no new timer
    expect(node.hooks.inGrace).to.equal(0);

    // The barrier. Another node's offline, begun after close(), arrives after the grace
    // period: by then the closed hooks' timers would have fired. Then an event of each uid
    // on the same sender: a uid's events are delivered in order, so an offline would come first.
    const other = await startInProcessNode({ url: receiver.url });
    await other.connect('zed');
    await other.disconnect('zed');
    await receiver.waitFor((r) => r.some((x) => parse(x).type === 'user.offline'));
    for (const uid of ['alice', 'bob', 'carol']) {
      node.sender.send({ type: 'message.stored_expired', uid, messageId: 'barrier', event: 'barrier' });
    }
    await receiver.waitFor((r) => r.filter((x) => parse(x).type === 'message.stored_expired').length === 3);
    expect(receiver.delivered().map(parse).map((e) => [e.type, e.uid])).to.have.deep.members([
      ['user.online', 'alice'],
      ['user.online', 'bob'],
      ['user.online', 'zed'],
      ['user.offline', 'zed'],
      ['message.stored_expired', 'alice'],
      ['message.stored_expired', 'bob'],
      ['message.stored_expired', 'carol'],
    ]);
  });
});
