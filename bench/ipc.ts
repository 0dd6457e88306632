// The messages between the bench runner and a client worker (bench/client-worker.ts),
// sent over the child_process IPC channel. One shape per message, shared by both sides.

/** Runner -> worker. */
export type WorkerCommand =
  | {
      type: 'connect';
      url: string;
      /** The uids this worker's clients log in with, one client each. */
      uids: number[];
      /** Most connection attempts in flight at once in this worker. */
      window: number;
      transports: string[];
      /** The worker reports what it has when this runs out, logged in or not. */
      timeoutMs: number;
      /** Set when the server has LOGIN_SECRET: each page logs in with its uid's HMAC token. */
      loginSecret?: string;
    }
  | {
      type: 'collect';
      /** Message key: `t` targeted, `v` v1 batch, `b<k>` broadcast number k. */
      key: string;
      /** The worker answers as soon as it holds this many receipts for the key. */
      expected: number;
      timeoutMs: number;
    };

/** Worker -> runner. */
export type WorkerReply =
  | { type: 'ready' }
  | {
      type: 'connected';
      loggedIn: number;
      failed: number;
      firstError: string | null;
      timedOut: boolean;
    }
  | {
      type: 'collected';
      key: string;
      /** Per receipt: the message seq, or for a broadcast the receiving client's uid. */
      ids: number[];
      /** Per receipt, ms from the push's timestamp to its arrival (same machine clock). */
      latencies: number[];
      /** Date.now() of the last receipt, 0 when none. */
      lastAt: number;
      timedOut: boolean;
      /** Clients that lost their connection after logging in, since the start. */
      dropped: number;
    };

/**
 * The content of every benchmark message: `<key>:<seq>:<Date.now()>`. Letters, digits and
 * colons only, because the server HTML-escapes `& < > " '` and the content must arrive as sent.
 */
export function messageContent(key: string, seq: number, sentAt: number): string {
  return `${key}:${seq}:${sentAt}`;
}

export function parseMessageContent(content: string): { key: string; seq: number; sentAt: number } | null {
  const parts = content.split(':');
  if (parts.length !== 3) return null;
  const [key, seq, sentAt] = parts as [string, string, string];
  const result = { key, seq: Number(seq), sentAt: Number(sentAt) };
  return Number.isFinite(result.seq) && Number.isFinite(result.sentAt) ? result : null;
}

/** Broadcast keys count receipts per client rather than per message. */
export function isBroadcastKey(key: string): boolean {
  return key.startsWith('b');
}
