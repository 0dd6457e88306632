// The webhook sender's bounds (timeouts, retries, queue, concurrency) and their defaults.

export interface WebhookSenderOptions {
  /**
   * How long one attempt may take, connecting to response headers; then it is aborted and
   * counts as failed.
   * @default 5000
   */
  timeoutMs?: number;
  /**
   * Attempts per event and url, the first included; after the last failure it is dropped.
   * @default 8
   */
  maxAttempts?: number;
  /**
   * Backoff before retry n (n = 1 after the first failure) is a uniformly random delay in
   * [0, min(maxDelayMs, baseDelayMs * 2^(n-1))] ("full jitter"), so receivers that come back
   * are not hit by every sender at once.
   * @default 500
   */
  baseDelayMs?: number;
  /**
   * Cap on one backoff delay.
   * @default 60000
   */
  maxDelayMs?: number;
  /**
   * Deliveries (an event for N urls counts N) waiting or in flight, in all. Past it the oldest
   * is dropped (reason 'overflow'), so a receiver that is down costs bounded memory.
   * @default 10000
   */
  maxQueue?: number;
  /**
   * Bytes of event bodies waiting or in flight, in all (an event for N urls counts N times):
   * the same bound in bytes, for events that carry data (client.message). Past it the oldest
   * is dropped. Client messages may take at most half of either bound: past that a new one is
   * dropped rather than an older presence or expiry event.
   * @default 33554432 (32 MiB)
   */
  maxQueueBytes?: number;
  /**
   * Requests in flight per url at once. Uids are served round-robin, so one busy uid does
   * not starve the others; a mass disconnect does not open thousands of connections.
   * @default 10
   */
  concurrency?: number;
}

const DEFAULTS: Required<WebhookSenderOptions> = {
  timeoutMs: 5000,
  maxAttempts: 8,
  baseDelayMs: 500,
  maxDelayMs: 60_000,
  maxQueue: 10_000,
  maxQueueBytes: 32 * 1024 * 1024,
  concurrency: 10,
};

/** `options` over the defaults; an option given as undefined takes its default. */
export function senderOptions(options: WebhookSenderOptions): Required<WebhookSenderOptions> {
  const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  return { ...DEFAULTS, ...given };
}
