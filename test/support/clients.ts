// Real socket.io-client 4.x and 2.x behind one small interface that records every event
// from the moment it connects, so a test can wait for an event that may already have come.
import { io as ioV4 } from 'socket.io-client';
import ioV2 from 'socket.io-client-v2';
import { onCleanup } from './cleanup.ts';

export type ClientVersion = 'v2' | 'v4';
export type Transports = ('polling' | 'websocket')[];

/** Events recorded from the start; `track()` adds more (v1 pushes name their own). */
const RECORDED = ['connect', 'disconnect', 'new_msg', 'message', 'update_online_count', 'login_error'];

/** The surface both client versions share. */
interface RawSocket {
  connected: boolean;
  io: { engine: { transport: { name: string }; write(data: string): void } };
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  emit(event: string, ...args: unknown[]): unknown;
  close(): unknown;
}

export class TestClient {
  private readonly seen = new Map<string, { args: unknown[]; taken: boolean }[]>();
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly version: ClientVersion,
    readonly raw: RawSocket,
  ) {
    for (const event of RECORDED) this.track(event);
  }

  /** Records `event` from now on. An ack callback, when sent, is the last argument. */
  track(event: string): this {
    if (this.seen.has(event)) return this;
    this.seen.set(event, []);
    this.raw.on(event, (...args: unknown[]) => {
      this.log(event).push({ args, taken: false });
      for (const wake of this.waiters) wake();
    });
    return this;
  }

  private log(event: string): { args: unknown[]; taken: boolean }[] {
    const log = this.seen.get(event);
    if (!log) throw new Error(`event ${event} is not tracked; call track('${event}') first`);
    return log;
  }

  get transport(): string {
    return this.raw.io.engine.transport.name;
  }

  emit(event: string, ...args: unknown[]): void {
    this.raw.emit(event, ...args);
  }

  /** Emits with an ack callback (both versions support one) and resolves its answer. */
  request<T>(event: string, ...args: unknown[]): Promise<T> {
    return withDeadline(
      new Promise<T>((resolve) => this.raw.emit(event, ...args, (reply: T) => resolve(reply))),
      `${this.version} client: no ack for ${event}`,
    );
  }

  /** Resolves with the arguments of the first not yet taken `event` matching `match`. */
  waitFor(event: string, match: (...args: unknown[]) => boolean = () => true, timeoutMs = 5000): Promise<unknown[]> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = this.log(event).find((e) => !e.taken && match(...e.args));
        if (!hit) return false;
        hit.taken = true;
        finish();
        resolve(hit.args);
        return true;
      };
      const timer = setTimeout(() => {
        finish();
        const got = this.log(event).map((e) => e.args);
        reject(new Error(`${this.version} client: no ${event} within ${timeoutMs} ms; got ${JSON.stringify(got)}`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(wake);
      };
      const wake = () => void check();
      if (!check()) this.waiters.add(wake);
    });
  }

  /** Every `event` received so far, taken or not. */
  received(event: string): unknown[][] {
    return this.log(event).map((e) => e.args);
  }

  /**
   * Logs in and resolves the count the server sent in answer. The server emits that count
   * before it acks, so it is the last one received when the ack arrives.
   */
  async login(uid: string | number): Promise<string> {
    const reply = await this.request<{ ok: boolean }>('login', uid);
    if (!reply.ok) throw new Error(`login ${uid} refused: ${JSON.stringify(reply)}`);
    const counts = this.log('update_online_count');
    for (const c of counts) c.taken = true;
    return counts[counts.length - 1]?.args[0] as string;
  }

  /** Logs in as legacy pages do, with no ack, and waits for the first count after it. */
  async legacyLogin(uid: string | number): Promise<string> {
    for (const c of this.log('update_online_count')) c.taken = true;
    this.emit('login', uid);
    const [html] = await this.waitFor('update_online_count');
    return html as string;
  }

  close(): void {
    this.raw.close();
  }
}

export function withDeadline<T>(promise: Promise<T>, message: string, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${message} within ${ms} ms`)), ms);
    }),
  ]);
}

/** Connects a real client and waits until it is connected. */
export async function connectClient(
  version: ClientVersion,
  url: string,
  transports?: Transports,
): Promise<TestClient> {
  const options = { forceNew: true, reconnection: false, ...(transports ? { transports } : {}) };
  const raw = (version === 'v4' ? ioV4(url, options) : ioV2(url, options)) as unknown as RawSocket;
  const client = new TestClient(version, raw);
  onCleanup(() => client.close());
  await client.waitFor('connect');
  return client;
}

export function countsHtml(users: number, pages: number): string {
  return `当前<b>${users}</b>人在线，共打开<b>${pages}</b>个页面`;
}
