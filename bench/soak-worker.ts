// A soak client process: some of the soak's pages, each one the page SDK itself
// (client-demo/sdk/push-client.ts) on socket.io-client 4.x with reconnection on, so the
// soak proves what an SDK user gets: login again after every reconnect, ack after the
// handler returns, duplicates dropped by id. It records what reached the handlers and,
// through a second listener on the same socket, every arrival before de-duplication.
import { io } from 'socket.io-client';
import { PushClient } from '../packages/push-client/src/index.ts';
import type { LoginReply } from '../src/events.ts';
import type { PageEvent, SoakCommand, SoakReply } from './soak-ipc.ts';

/** Events kept per page for the lost-push diagnosis: the latest ones. */
const HISTORY = 40;

/** A login answered ok: false (e.g. `unavailable` while Redis is away) is sent again after this. */
const LOGIN_RETRY_MS = 500;

const loggedIn = new Set<number>();
const clients = new Map<number, PushClient>();
const asleep = new Set<number>();
let churnTimer: NodeJS.Timeout | undefined;
// Pages logged in at the last mark, those that lost their connection since (not on purpose),
// and those logged in again since: together they say when every page is back after a kill.
let marked = new Set<number>();
const disturbed = new Set<number>();
const relogged = new Set<number>();
const received = new Set<number>();
const arrivals = new Map<string, number>();
let handlerRepeats = 0;
let loginFailures = 0;
let logins = 0;
let unreadable = 0;
let total = 0;
const histories = new Map<number, PageEvent[]>();

function record(uid: number, what: PageEvent['what']): void {
  let events = histories.get(uid);
  if (!events) histories.set(uid, (events = []));
  events.push({ at: Date.now(), what });
  if (events.length > HISTORY) events.shift();
}

function send(reply: SoakReply): void {
  if (!process.send) throw new Error('soak-worker must be started with an IPC channel');
  process.send(reply);
}

function seqOf(data: unknown): number | null {
  const seq: unknown = typeof data === 'object' && data !== null ? (data as { seq?: unknown }).seq : undefined;
  return typeof seq === 'number' && Number.isInteger(seq) ? seq : null;
}

/** Starts one page; resolves at its first ok login (or never: the runner's deadline covers that). */
function startClient(url: string, uid: number): Promise<void> {
  return new Promise((firstLogin) => {
    const client = new PushClient(url, {
      uid,
      transports: ['websocket'],
      // forceNew: one connection per page, as separate browsers have; the SDK leaves
      // socket.io-client's reconnection on, with its default backoff (1 s to 5 s, jittered)
      io: (target, options) => {
        const socket = io(target, { ...options, forceNew: true });
        // Beside the SDK's own listener: counts arrivals before its de-duplication.
        socket.on('message', (_data: unknown, meta: unknown) => {
          const id = typeof meta === 'object' && meta !== null ? (meta as { id?: unknown }).id : undefined;
          if (typeof id === 'string') arrivals.set(id, (arrivals.get(id) ?? 0) + 1);
        });
        return socket;
      },
    });
    clients.set(uid, client);
    client.on('message', (data) => {
      const seq = seqOf(data);
      if (seq === null) unreadable += 1;
      else if (received.has(seq)) handlerRepeats += 1;
      else received.add(seq);
    });
    client.onStatus((status, detail?: LoginReply) => {
      if (status === 'disconnected') {
        record(uid, 'disconnect');
        loggedIn.delete(uid);
        if (!asleep.has(uid) && marked.has(uid)) disturbed.add(uid);
      }
      if (status === 'connected' && detail === undefined) record(uid, 'connect');
      if (status !== 'connected' || detail === undefined) return;
      record(uid, detail.ok ? 'login' : 'login refused');
      if (detail.ok) {
        logins += 1;
        loggedIn.add(uid);
        relogged.add(uid);
        firstLogin();
      } else {
        // The SDK reports a refused login and leaves the retry to the page: a page retries.
        loginFailures += 1;
        setTimeout(() => void client.login(uid), LOGIN_RETRY_MS);
      }
    });
  });
}

function start(command: Extract<SoakCommand, { type: 'start' }>): void {
  const { urls, uids, window } = command;
  total = uids.length;
  let next = 0;
  const launch = () => {
    if (next >= uids.length) return;
    const uid = uids[next++]!;
    void startClient(urls[uid % urls.length]!, uid).then(launch);
  };
  for (let i = 0; i < Math.min(window, uids.length); i++) launch();
}

/** Once a second, sends pages offline so that about `percent` % are offline at any moment. */
function churn(command: Extract<SoakCommand, { type: 'churn' }>): void {
  clearInterval(churnTimer);
  const { percent, offlineMs } = command;
  if (percent <= 0) return;
  // Each page goes offline for offlineMs; at chance c a second, the share offline is c*s/(1+c*s).
  const share = percent / 100;
  const chance = share / ((offlineMs / 1000) * (1 - share));
  churnTimer = setInterval(() => {
    for (const [uid, client] of clients) {
      // only logged-in pages: one a kill cut off is left to come back by itself
      if (!loggedIn.has(uid) || asleep.has(uid) || Math.random() >= chance) continue;
      asleep.add(uid);
      record(uid, 'offline (churn)');
      loggedIn.delete(uid);
      client.disconnect();
      setTimeout(() => {
        asleep.delete(uid);
        client.connect();
      }, offlineMs);
    }
  }, 1000);
}

function awakeLoggedIn(): number {
  let count = 0;
  for (const uid of loggedIn) if (!asleep.has(uid)) count += 1;
  return count;
}

function mark(): void {
  marked = new Set([...loggedIn].filter((uid) => !asleep.has(uid)));
  disturbed.clear();
  relogged.clear();
}

function backCount(): number {
  let count = 0;
  for (const uid of marked) if (!disturbed.has(uid) || relogged.has(uid)) count += 1;
  return count;
}

function report(): SoakReply {
  let duplicates = 0;
  for (const count of arrivals.values()) duplicates += count - 1;
  return { type: 'report', received: [...received], duplicates, handlerRepeats, loginFailures, logins, unreadable };
}

// The runner is this process's only peer and is trusted: its messages are SoakCommands.
process.on('message', (message: SoakCommand) => {
  if (message.type === 'start') start(message);
  else if (message.type === 'churn') churn(message);
  else if (message.type === 'mark') mark();
  else if (message.type === 'status') {
    send({ type: 'status', loggedIn: awakeLoggedIn(), awake: total - asleep.size, total, marked: marked.size, back: backCount() });
  }
  else if (message.type === 'history') {
    const pages = message.uids.filter((uid) => clients.has(uid)).map((uid) => ({ uid, events: histories.get(uid) ?? [] }));
    send({ type: 'history', pages });
  }
  else send(report());
});
// Without the runner there is nothing to do: a runner that died must not leave clients behind.
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
