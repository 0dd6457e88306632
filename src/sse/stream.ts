// One SSE stream (text/event-stream) to a client: events in order, a bound in bytes on what
// waits to be sent to it, and a hold while its stored messages are replayed, so live events
// that come meanwhile go out after the replay and not in the middle of it.
import type { ServerResponse } from 'node:http';
import { legacySafe } from '../delivery.ts';

/** Event names and ids that may go on an SSE line: no CR, LF or NUL, which would end or void it. */
const SSE_FIELD = /^[^\r\n\0]{1,256}$/;

/**
 * One event as it goes on the wire: `event:` the name, `data:` the JSON data on one line
 * (JSON.stringify escapes CR and LF, so it is one line), `id:` the message id when it has one.
 * Text on new_msg is HTML-escaped here too (legacySafe, the one guard for new_msg). Null when
 * the name cannot go on an SSE line (never for names the push API accepts).
 */
export function formatEvent(event: string, data: unknown, id?: string): string | null {
  if (!SSE_FIELD.test(event)) return null;
  const json = JSON.stringify(legacySafe(event, data)) ?? 'null';
  const idLine = id !== undefined && SSE_FIELD.test(id) ? `id: ${id}\n` : '';
  return `event: ${event}\ndata: ${json}\n${idLine}\n`;
}

/** A comment line: ignored by EventSource, keeps proxies and NATs from closing an idle stream. */
export const HEARTBEAT = ': heartbeat\n\n';

export class SseStream {
  /** Events that came while held: sent after the replay, in order. Null once released. */
  private held: { frame: string; id: string | undefined }[] | null = [];
  private heldBytes = 0;
  private ended = false;
  /** Bytes waiting at the last heartbeat, and heartbeats in a row at which none went out. */
  private waitingAtBeat = 0;
  private stalledBeats = 0;

  /**
   * `res`: the response, its head written by the caller. `maxBytes`: MAX_SOCKET_BUFFER_BYTES;
   * past it the stream is destroyed and `onCut` told how many bytes were waiting.
   */
  constructor(
    readonly id: string,
    readonly uid: string,
    private readonly res: ServerResponse,
    private readonly maxBytes: number,
    private readonly onCut: (bytes: number) => void,
  ) {
    res.once('close', () => {
      this.ended = true;
      this.held = null;
    });
  }

  get closed(): boolean {
    return this.ended;
  }

  /** A live event: after everything held while the replay runs, else written now. */
  deliver(frame: string, id: string | undefined): void {
    if (this.ended) return;
    if (this.held === null) {
      this.write(frame);
      return;
    }
    this.held.push({ frame, id });
    this.heldBytes += Buffer.byteLength(frame);
    this.bound(this.heldBytes + this.res.writableLength);
  }

  /**
   * Written now, ahead of what is held (the online count, the replay). Resolves true once the
   * client may take more (at once, or after a drain), false when the stream is gone. A client
   * that takes nothing for `drainTimeoutMs` is cut: a replay waiting on it holds a copy of the
   * uid's stored messages.
   */
  async writeNow(frame: string, drainTimeoutMs = Infinity): Promise<boolean> {
    if (this.ended) return false;
    if (this.write(frame)) return !this.ended;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.res.off('drain', done);
        this.res.off('close', done);
        resolve();
      };
      const timer = Number.isFinite(drainTimeoutMs) ? setTimeout(() => this.cut(this.res.writableLength), drainTimeoutMs) : undefined;
      this.res.on('drain', done);
      this.res.on('close', done);
    });
    return !this.ended;
  }

  /**
   * The heartbeat: a comment line, and the check for a client that has stopped reading. Bytes
   * waiting at two heartbeats in a row with none of them sent in between (the client's TCP
   * window shut) cut the stream, as Socket.IO's ping timeout cuts a socket: the byte bound
   * alone, filled by heartbeats of 15 bytes, would keep such a page counted online for weeks.
   */
  beat(): void {
    if (this.ended) return;
    const waiting = this.res.writableLength;
    this.stalledBeats = waiting > 0 && waiting >= this.waitingAtBeat ? this.stalledBeats + 1 : 0;
    if (this.stalledBeats >= 2) {
      this.cut(waiting);
      return;
    }
    this.deliver(HEARTBEAT, undefined);
    this.waitingAtBeat = this.res.writableLength;
  }

  /**
   * Ends the hold: what came meanwhile is written, except messages the replay already sent
   * (`replayed` ids: a push stored and emitted while the store was being read).
   */
  release(replayed: ReadonlySet<string>): void {
    const held = this.held;
    this.held = null;
    this.heldBytes = 0;
    if (held === null) return;
    for (const { frame, id } of held) {
      if (this.ended) return;
      if (id === undefined || !replayed.has(id)) this.write(frame);
    }
  }

  /** Ends the stream; an EventSource reconnects (with Last-Event-ID) after its retry delay, or `retryMs`. */
  end(retryMs?: number): void {
    if (this.ended) return;
    this.ended = true;
    // a retry field sets EventSource's reconnection delay (whole ms): spread over many streams,
    // their reconnects do not all read the store at once
    this.res.end(retryMs === undefined ? undefined : `retry: ${Math.round(retryMs)}\n\n`);
  }

  /** Writes; false when the client should be let drain first. Cuts a client past the bound. */
  private write(frame: string): boolean {
    const more = this.res.write(frame);
    this.bound(this.res.writableLength);
    return more;
  }

  private bound(waiting: number): void {
    if (waiting <= this.maxBytes || this.ended) return;
    this.cut(waiting);
  }

  /** Destroys the stream of a client that does not read, and tells `onCut`. */
  private cut(waiting: number): void {
    if (this.ended) return;
    this.ended = true;
    this.held = null;
    // destroy, not end: the bytes waiting are dropped now instead of draining to a client
    // that does not read
    this.res.destroy();
    this.onCut(waiting);
  }
}
