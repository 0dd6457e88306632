// The replies and message meta a page sees on the socket. Declared once, here: the server's
// src/events.ts re-exports them, so the SDK's published types are the server's own.

/** What a failed request on the socket answers (in an ack or a `login_error` event). */
export interface SocketError {
  code:
    | 'invalid_uid'
    | 'already_logged_in'
    | 'invalid_topic'
    | 'too_many_topics'
    | 'unauthorized'
    | 'token_expired'
    | 'rate_limited'
    /** publish: the topic is not open to clients (CLIENT_PUBLISH_TOPICS), or no publish right. */
    | 'forbidden'
    | 'not_logged_in'
    | 'not_subscribed'
    | 'invalid_message'
    | 'payload_too_large'
    /** The server failed (presence or store away); nothing was changed, try again. */
    | 'unavailable';
  message: string;
}

export type LoginReply =
  | {
      ok: true;
      uid: string;
      /**
       * Messages stored for the uid at this login. They are sent oldest first, a window at a
       * time (REDELIVERY_WINDOW): the first window right before this reply, the rest as acks come.
       */
      pending: number;
    }
  | { ok: false; error: SocketError };

export type PublishReply = { ok: true; id: string } | { ok: false; error: SocketError };

export type SubscribeReply = { ok: true; topics: string[] } | { ok: false; error: SocketError };

/** The second argument of every v1 message: `event(data, meta)`. */
export interface MessageMeta {
  /** The push id: the same message delivered twice has the same id. */
  id: string;
  /** When the push was accepted, ms since the epoch. */
  ts: number;
  /** Kept until acked: call the ack callback to have it removed. */
  stored?: true;
  /** Sent from the store at login, not live. */
  redelivery?: true;
  /** Published by a client to a topic (never on new_msg): `uid` is its sender. */
  client?: true;
  uid?: string;
}

/** Topics whose name starts with this need a token to subscribe. */
export const PRIVATE_TOPIC_PREFIX = 'private-';
