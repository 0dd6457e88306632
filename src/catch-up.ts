// Stored messages that logged-in sockets may have missed while they stayed connected: a login
// that could not read the store (Redis or the disk away) answers ok and owes the page its
// stored messages; live emits lost while a Redis outage cut the adapter's publish or subscribe
// leave them stored too. Both are sent once the store answers again, without the page logging
// in again. Duplicates are fine: the page drops a message id it has seen (docs/protocol.md §6).
import type { Delivery, RedeliveryWindow } from './delivery.ts';
import type { PushIo, PushSocket } from './events.ts';
import type { Logger } from './log.ts';
import { PeriodicTask } from './periodic.ts';

/** How often sockets still owed their stored messages are tried again, ms. */
const RETRY_MS = 1000;
/** Stored-message reads in flight at once in one pass. */
const READS_AT_ONCE = 64;

function reasonOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class CatchUp {
  /**
   * Logged-in sockets whose stored messages are to be (re)sent, each with a mark that changes
   * whenever it is owed again: a read that began before the latest mark does not settle it.
   */
  private readonly owed = new Map<PushSocket, number>();
  private marks = 0;
  private readonly retry: PeriodicTask;

  constructor(
    private readonly io: PushIo,
    private readonly delivery: Delivery,
    private readonly window: RedeliveryWindow,
    /** The client address a socket counts under (its share of MAX_REDELIVERY_BYTES). */
    private readonly addressOf: (socket: PushSocket) => string,
    private readonly log: Logger,
    retryMs = RETRY_MS,
  ) {
    this.retry = new PeriodicTask(() => this.pass(), {
      everyMs: retryMs,
      failing: (err) => log.warn(`stored messages owed to logged-in pages could not be read (${reasonOf(err)}); retrying every ${retryMs} ms`),
      recovered: () => log.info('stored messages owed to logged-in pages were sent'),
    });
  }

  /** The socket's login could not read its stored messages: sent as soon as the store answers. */
  owe(socket: PushSocket): void {
    this.owed.set(socket, ++this.marks);
  }

  /**
   * Every socket logged in on this node gets its stored messages again, now and until a read
   * works: after an outage that may have lost live emits to them.
   */
  everyone(why: string): void {
    let count = 0;
    for (const socket of this.io.of('/').sockets.values()) {
      if (socket.data.uid === undefined) continue;
      this.owe(socket);
      count++;
    }
    if (count > 0) this.log.info(`${why}: sending the stored messages of ${count} logged-in pages again`);
    void this.retry.run();
  }

  close(): Promise<void> {
    this.owed.clear();
    return this.retry.close();
  }

  /** One try for every owed socket; throws (once, for the log) when some read failed. */
  private async pass(): Promise<void> {
    const sockets = [...this.owed.keys()];
    let failure: unknown = null;
    for (let i = 0; i < sockets.length; i += READS_AT_ONCE) {
      await Promise.all(
        sockets.slice(i, i + READS_AT_ONCE).map(async (socket) => {
          const uid = socket.data.uid;
          const mark = this.owed.get(socket);
          if (socket.disconnected || uid === undefined) {
            this.owed.delete(socket); // gone, or its login was undone: a new login reads anew
            return;
          }
          try {
            await this.delivery.redeliver(socket, uid, {
              window: this.window,
              address: this.addressOf(socket),
              failed: () => this.owe(socket), // a later page could not be read: tried again
            });
            if (this.owed.get(socket) === mark) this.owed.delete(socket);
          } catch (err) {
            failure ??= err;
          }
        }),
      );
    }
    if (failure !== null) throw failure;
  }
}
