// The webhook events as the backend receives them, and how they are signed: the contract of
// WEBHOOK_URL, shared by the sender, the presence policy, the metrics and the tests.
import { createHmac } from 'node:crypto';

export type WebhookEventType = 'user.online' | 'user.offline' | 'message.stored_expired' | 'client.message';

interface EventBase {
  /** Unique per event (randomUUID); the same on every retry and every url: dedupe by it. */
  id: string;
  /** When the event happened, ISO 8601. Across nodes of a cluster, order by it. */
  time: string;
  uid: string;
}

/** The JSON body of a webhook request. */
export type WebhookEvent =
  | (EventBase & { type: 'user.online' | 'user.offline' })
  | (EventBase & {
      type: 'message.stored_expired';
      /** The kept message's id (the push's id). */
      messageId: string;
      /** Its socket event name. */
      event: string;
    })
  | (EventBase & {
      /** A client published to a topic (CLIENT_PUBLISH_TOPICS, WEBHOOK_CLIENT_MESSAGES=on); `uid` sent it. */
      type: 'client.message';
      topic: string;
      /** The id its subscribers got in meta. */
      messageId: string;
      /** As the client sent it: at most MAX_CLIENT_MESSAGE_BYTES of JSON. */
      data: unknown;
    });

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** What a caller passes to send(); the sender stamps `id` and `time`. */
export type WebhookEventInput = DistributiveOmit<WebhookEvent, 'id' | 'time'>;

/** Why a delivery was given up. */
export type WebhookDropReason = 'attempts' | 'overflow' | 'closed';

/** Told about every outcome, e.g. by Metrics; must not throw (a throw is logged and ignored). */
export interface WebhookObserver {
  /** `event` was answered 2xx by one url. */
  sent(event: WebhookEvent): void;
  /** One attempt to one url failed; it is retried unless attempts are used up. */
  failed(event: WebhookEvent, error: string): void;
  /** `event` was given up for one url: attempts used up, queue full or sender closed. */
  dropped(event: WebhookEvent, reason: WebhookDropReason): void;
}

/**
 * The `X-Signature` header value for one attempt: `sha256=` + hex HMAC-SHA256 with key
 * `secret` over the string `timestamp + "." + rawBody`, where `timestamp` is the
 * `X-Webhook-Timestamp` header (unix seconds, decimal) and `rawBody` the request body bytes
 * exactly as received (UTF-8 JSON). Each attempt is signed with its own timestamp, so a
 * receiver may refuse timestamps older than a few minutes to stop replays.
 */
export function webhookSignature(secret: string, timestamp: number, rawBody: string): string {
  return 'sha256=' + createHmac('sha256', secret).update(`${timestamp}.${rawBody}`).digest('hex');
}
