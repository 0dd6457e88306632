// Delivers webhook events (events.ts) to the backend's URLs: at least once, in order per uid,
// with retries and a bounded queue, never throwing into or slowing its callers.
import { randomUUID } from 'node:crypto';
import type { LogFields, Logger } from '../log.ts';
import type { WebhookDropReason, WebhookEvent, WebhookEventInput, WebhookObserver } from './events.ts';
import { senderOptions, type WebhookSenderOptions } from './sender-options.ts';
import { postWebhook, webhookTarget, type WebhookTarget } from './targets.ts';

/** One event on its way to one url. */
interface Attempt {
  readonly event: WebhookEvent;
  readonly body: string;
  readonly queue: UidQueue;
  /** Attempts started so far. */
  attempts: number;
  /** Delivered or dropped; an attempt that ends after this changes nothing. */
  done: boolean;
}

/**
 * One (url, uid) FIFO. Only its head is ever in flight, so a uid's events reach a url in the
 * order they were sent; other uids' queues are independent of it.
 */
interface UidQueue {
  readonly target: Target;
  readonly uid: string;
  readonly items: Attempt[];
  /** idle: empty; ready: head waits for a slot; inflight: head posted; backoff: head waits to retry. */
  state: 'idle' | 'ready' | 'inflight' | 'backoff';
  retryTimer: NodeJS.Timeout | null;
  inflight: AbortController | null;
}

interface Target extends WebhookTarget {
  readonly queues: Map<string, UidQueue>;
  /** Queues whose head waits for a slot, oldest first. */
  readonly ready: Set<UidQueue>;
  active: number;
  pumpQueued: boolean;
}

/** Throttles drop logging: a receiver that is down for an hour must not write a line per event. */
const DROP_LOG_INTERVAL_MS = 10_000;

/**
 * Delivers events to every url, at least once, signed when a secret is set.
 *
 * send() returns at once; each event is POSTed to every url with its own per-(url, uid) FIFO.
 * A non-2xx answer (redirects are not followed), a network error or a timeout is retried with
 * backoff until maxAttempts, then dropped and reported. Pending deliveries are bounded by
 * maxQueue (oldest dropped first). Timers are not unref'd: a sender that is never closed keeps
 * the process (and mocha) alive, which shows the leak.
 */
export class WebhookSender {
  private readonly targets: Target[];
  private readonly options: Required<WebhookSenderOptions>;
  /** Every delivery not yet done, in the order sent: the first is the oldest. */
  private readonly pending = new Set<Attempt>();
  /** Body bytes of `pending`, and the part of both that are client messages. */
  private pendingBytes = 0;
  private clientMessages = 0;
  private clientMessageBytes = 0;
  private readonly running = new Set<Promise<void>>();
  private accepting = true;
  private stopped = false;
  private closing: Promise<void> | null = null;
  private onDrained: (() => void) | null = null;
  private nextDropLogAt = 0;
  private dropsNotLogged = 0;

  /**
   * @param urls where every event is POSTed (http or https); none makes send() a no-op.
   * @param secret HMAC key for `X-Signature`; null sends no signature.
   * @throws Error for a url that is not http(s): a configuration error, found at start.
   */
  constructor(
    urls: readonly string[],
    private readonly secret: string | null,
    options: WebhookSenderOptions,
    private readonly log: Logger,
    private readonly observer?: WebhookObserver,
  ) {
    this.options = senderOptions(options);
    this.targets = urls.map((url, i) => ({
      ...webhookTarget(url, i, urls.length, this.options.concurrency),
      queues: new Map(),
      ready: new Set(),
      active: 0,
      pumpQueued: false,
    }));
  }

  /** Deliveries waiting or in flight (an event for N urls counts N). */
  get queued(): number {
    return this.pending.size;
  }

  /**
   * Queues `input` for every url and returns at once (O(urls), no I/O). Never throws: after
   * close() the event is reported dropped ('closed').
   */
  send(input: WebhookEventInput): void {
    try {
      if (this.targets.length === 0) return;
      const event: WebhookEvent = { ...input, id: randomUUID(), time: new Date().toISOString() };
      if (!this.accepting) {
        for (let i = 0; i < this.targets.length; i++) this.notify('dropped', (o) => o.dropped(event, 'closed'));
        return;
      }
      const body = JSON.stringify(event);
      for (const target of this.targets) this.enqueue(target, event, body);
    } catch (err) {
      this.log.error('webhook send failed', err);
    }
  }

  /**
   * Stops accepting events. Waits up to `flushMs` for every pending delivery to finish
   * (retries keep running meanwhile), then aborts requests in flight, clears every timer and
   * drops what is left (observer.dropped with 'closed', one summary log line). With the
   * default flushMs 0 everything pending is dropped at once. Idempotent.
   */
  close(options: { flushMs?: number } = {}): Promise<void> {
    this.closing ??= (async () => {
      this.accepting = false;
      const flushMs = options.flushMs ?? 0;
      if (flushMs > 0 && this.pending.size > 0) await this.drained(flushMs);
      this.stopped = true;
      const left = this.pending.size;
      // In sending order each one is the head of its queue when reached (see overflow()).
      for (const delivery of [...this.pending]) this.drop(delivery, 'closed');
      for (const target of this.targets) {
        target.ready.clear();
        target.queues.clear();
      }
      await Promise.allSettled([...this.running]);
      for (const target of this.targets) target.agent.destroy(); // idle keep-alive connections
      if (left > 0 || this.dropsNotLogged > 0) {
        this.log.warn('webhooks closed: undelivered deliveries dropped', { dropped: left, unlogged: this.dropsNotLogged });
      }
      this.dropsNotLogged = 0;
    })();
    return this.closing;
  }

  private enqueue(target: Target, event: WebhookEvent, body: string): void {
    const bytes = body.length; // UTF-16 units: at most 3 UTF-8 bytes each, near enough for a bound
    const { maxQueue, maxQueueBytes } = this.options;
    if (event.type === 'client.message' && (this.clientMessages + 1 > maxQueue / 2 || this.clientMessageBytes + bytes > maxQueueBytes / 2)) {
      // a chat flood drops its own newest, never an older presence or expiry event
      this.notify('dropped', (o) => o.dropped(event, 'overflow'));
      this.logDrop('webhook queue: client messages hold half of it; dropped the newest', () => ({ type: event.type, id: event.id, url: target.shown }));
      return;
    }
    while (this.pending.size > 0 && (this.pending.size >= maxQueue || this.pendingBytes + bytes > maxQueueBytes)) this.overflow();
    let queue = target.queues.get(event.uid);
    if (!queue) {
      queue = { target, uid: event.uid, items: [], state: 'idle', retryTimer: null, inflight: null };
      target.queues.set(event.uid, queue);
    }
    const delivery: Attempt = { event, body, queue, attempts: 0, done: false };
    queue.items.push(delivery);
    this.pending.add(delivery);
    this.pendingBytes += bytes;
    if (event.type === 'client.message') {
      this.clientMessages++;
      this.clientMessageBytes += bytes;
    }
    if (queue.state === 'idle') this.markReady(queue);
  }

  /**
   * Drops the oldest pending delivery. It is always the head of its queue: a queue is FIFO and
   * `pending` keeps sending order, so nothing older of that queue can still be pending.
   */
  private overflow(): void {
    const oldest = this.pending.values().next().value;
    if (!oldest) return;
    this.drop(oldest, 'overflow');
    this.logDrop('webhook queue full: dropped the oldest delivery', () => ({
      maxQueue: this.options.maxQueue,
      maxQueueBytes: this.options.maxQueueBytes,
      type: oldest.event.type,
      id: oldest.event.id,
      url: oldest.queue.target.shown,
    }));
  }

  /**
   * Removes `delivery`, the head of its queue, from outside its own attempt (overflow, close),
   * whatever the queue is doing.
   */
  private drop(delivery: Attempt, reason: WebhookDropReason): void {
    const queue = delivery.queue;
    this.finish(delivery);
    this.notify('dropped', (o) => o.dropped(delivery.event, reason));
    if (queue.state === 'inflight') {
      // The attempt ends with an abort error soon, sees `done` and advances the queue.
      queue.inflight?.abort(new Error('dropped'));
    } else if (queue.state === 'backoff') {
      if (queue.retryTimer) clearTimeout(queue.retryTimer);
      queue.retryTimer = null;
      this.advance(queue);
    } else if (queue.items.length === 0) {
      // 'ready' with nothing left behind the dropped head.
      queue.target.ready.delete(queue);
      this.retire(queue);
    }
  }

  /** Takes the head `delivery` off its queue and the pending set. */
  private finish(delivery: Attempt): void {
    delivery.done = true;
    delivery.queue.items.shift();
    if (this.pending.delete(delivery)) {
      this.pendingBytes -= delivery.body.length;
      if (delivery.event.type === 'client.message') {
        this.clientMessages--;
        this.clientMessageBytes -= delivery.body.length;
      }
    }
    if (this.pending.size === 0) this.onDrained?.();
  }

  /** After the head is done: the next one waits for a slot, or the queue goes away. */
  private advance(queue: UidQueue): void {
    if (queue.items.length > 0) this.markReady(queue);
    else this.retire(queue);
  }

  private retire(queue: UidQueue): void {
    queue.state = 'idle';
    if (queue.target.queues.get(queue.uid) === queue) queue.target.queues.delete(queue.uid);
  }

  private markReady(queue: UidQueue): void {
    queue.state = 'ready';
    queue.target.ready.add(queue);
    const target = queue.target;
    if (target.pumpQueued) return;
    // Requests start after the caller's synchronous code: send() does no I/O set-up itself,
    // and a burst of sends is started in one go.
    target.pumpQueued = true;
    queueMicrotask(() => {
      target.pumpQueued = false;
      this.pump(target);
    });
  }

  /** Starts the heads of ready queues while the url has free slots. */
  private pump(target: Target): void {
    while (!this.stopped && target.active < this.options.concurrency) {
      const queue = target.ready.values().next().value;
      if (!queue) return;
      target.ready.delete(queue);
      const delivery = queue.items[0];
      if (!delivery) {
        this.retire(queue);
        continue;
      }
      queue.state = 'inflight';
      target.active++;
      delivery.attempts++;
      const run = this.attempt(delivery).catch((err: unknown) => this.log.error('webhook delivery failed', err));
      this.running.add(run);
      void run.finally(() => this.running.delete(run));
    }
  }

  private async attempt(delivery: Attempt): Promise<void> {
    const queue = delivery.queue;
    const target = queue.target;
    const controller = new AbortController();
    queue.inflight = controller;
    const { timeoutMs } = this.options;
    const timer = setTimeout(() => controller.abort(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
    let error: string | null;
    try {
      error = await postWebhook(target, delivery.event.id, delivery.body, this.secret, controller.signal);
    } finally {
      clearTimeout(timer);
      queue.inflight = null;
      target.active--;
    }

    if (delivery.done) {
      // Dropped while in flight (overflow or close): move on to what queued behind it.
      if (!this.stopped) this.advance(queue);
    } else if (error === null) {
      this.finish(delivery);
      this.notify('sent', (o) => o.sent(delivery.event));
      this.advance(queue);
    } else {
      const failure = error;
      this.notify('failed', (o) => o.failed(delivery.event, failure));
      if (delivery.attempts >= this.options.maxAttempts) {
        this.finish(delivery);
        this.notify('dropped', (o) => o.dropped(delivery.event, 'attempts'));
        this.logDrop('webhook given up', () => ({
          type: delivery.event.type,
          id: delivery.event.id,
          url: target.shown,
          attempts: delivery.attempts,
          error: failure,
        }));
        this.advance(queue);
      } else {
        queue.state = 'backoff';
        queue.retryTimer = setTimeout(() => {
          queue.retryTimer = null;
          this.markReady(queue);
        }, this.backoff(delivery.attempts));
      }
    }
    this.pump(target);
  }

  /** Full jitter: uniform in [0, min(maxDelayMs, baseDelayMs * 2^(failures-1))]. */
  private backoff(failures: number): number {
    const { baseDelayMs, maxDelayMs } = this.options;
    return Math.random() * Math.min(maxDelayMs, baseDelayMs * 2 ** (failures - 1));
  }

  private drained(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.onDrained = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.onDrained = done;
    });
  }

  /**
   * One line now, then at most one per DROP_LOG_INTERVAL_MS, which counts the drops not
   * logged since the last (`unlogged`); `fields` are only built when written.
   */
  private logDrop(message: string, fields: () => LogFields): void {
    const now = Date.now();
    if (now < this.nextDropLogAt) {
      this.dropsNotLogged++;
      return;
    }
    const unlogged = this.dropsNotLogged;
    this.log.warn(message, unlogged > 0 ? { ...fields(), unlogged } : fields());
    this.dropsNotLogged = 0;
    this.nextDropLogAt = now + DROP_LOG_INTERVAL_MS;
  }

  /** Tells the observer, if any; its throw is logged and goes no further. */
  private notify(what: keyof WebhookObserver, call: (observer: WebhookObserver) => void): void {
    if (!this.observer) return;
    try {
      call(this.observer);
    } catch (err) {
      this.log.error(`webhook observer ${what} threw`, err);
    }
  }
}
