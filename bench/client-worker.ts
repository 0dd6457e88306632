// A load-generator process: it holds some of the benchmark's socket.io-client 2.x clients
// (the legacy pages), in its own event loop apart from the server and the runner. It logs
// them in on command and records, per message key, which messages arrived and how late;
// the runner collects those receipts over IPC (the messages are in ./ipc.ts).
import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { isBroadcastKey, parseMessageContent, type WorkerCommand, type WorkerReply } from './ipc.ts';

/** The part of a socket.io-client 2.x socket used here (the package ships no types). */
interface LegacySocket {
  on(event: string, listener: (...args: unknown[]) => void): LegacySocket;
  once(event: string, listener: (...args: unknown[]) => void): LegacySocket;
  emit(event: string, ...args: unknown[]): LegacySocket;
  close(): LegacySocket;
}
type ConnectV2 = (url: string, options: Record<string, unknown>) => LegacySocket;

// socket.io-client-v2 is CommonJS whose module.exports is the io() function itself.
const connectV2 = createRequire(import.meta.url)('socket.io-client-v2') as ConnectV2;

interface Receipts {
  ids: number[];
  latencies: number[];
  lastAt: number;
  /** Set while the runner waits for this key: answers once `ids` reaches `expected`. */
  waiter?: { expected: number; answer: () => void };
}

const receipts = new Map<string, Receipts>();
const sockets: LegacySocket[] = [];
let dropped = 0;

function send(reply: WorkerReply): void {
  if (!process.send) throw new Error('client-worker must be started with an IPC channel');
  process.send(reply);
}

function receiptsOf(key: string): Receipts {
  let entry = receipts.get(key);
  if (!entry) {
    entry = { ids: [], latencies: [], lastAt: 0 };
    receipts.set(key, entry);
  }
  return entry;
}

/**
 * The content string of a `new_msg`: the legacy API sends the string itself; a v1 push may
 * wrap it in an object, so `{data}` and `{content}` holding a string are read too.
 */
function contentOf(arg: unknown): string | null {
  if (typeof arg === 'string') return arg;
  if (typeof arg !== 'object' || arg === null) return null;
  for (const field of ['data', 'content']) {
    const value: unknown = (arg as Record<string, unknown>)[field];
    if (typeof value === 'string') return value;
  }
  return null;
}

function receive(uid: number, arg: unknown): void {
  const arrivedAt = Date.now();
  const content = contentOf(arg);
  const message = content === null ? null : parseMessageContent(content);
  if (!message) return;
  const entry = receiptsOf(message.key);
  // A broadcast carries one seq for everyone; which clients got it is what counts.
  entry.ids.push(isBroadcastKey(message.key) ? uid : message.seq);
  entry.latencies.push(arrivedAt - message.sentAt);
  entry.lastAt = arrivedAt;
  if (entry.waiter && entry.ids.length >= entry.waiter.expected) entry.waiter.answer();
}

/** Connects one client and logs it in as a legacy page does; resolves null or the reason it failed. */
function connectOne(url: string, uid: number, transports: string[], timeoutMs: number, loginSecret?: string): Promise<string | null> {
  // with LOGIN_SECRET the backend hands each page hex(HMAC-SHA256(secret, uid)) (docs/protocol.md)
  const login = loginSecret === undefined ? String(uid) : { uid: String(uid), token: createHmac('sha256', loginSecret).update(String(uid)).digest('hex') };
  return new Promise((resolve) => {
    let loggedIn = false;
    const socket = connectV2(url, { forceNew: true, reconnection: false, transports, timeout: timeoutMs });
    sockets.push(socket);
    // Legacy pages log in without an ack and take the update_online_count that follows as the
    // answer, but the once-a-second broadcast can reach a socket before its own login is done
    // (seen with WORKERS: early pushes answered offline). Both servers ack a login, so the
    // bench waits for that: a client is logged in when the server says so.
    socket.on('connect', () =>
      socket.emit('login', login, (reply: unknown) => {
        if (typeof reply === 'object' && reply !== null && 'error' in reply) {
          resolve(`login refused: ${JSON.stringify(reply.error)}`);
          return;
        }
        loggedIn = true;
        resolve(null);
      }),
    );
    socket.on('new_msg', (arg) => receive(uid, arg));
    socket.on('connect_error', (err) => {
      resolve(`connect_error: ${err instanceof Error ? err.message : String(err)}`);
      socket.close();
    });
    socket.on('disconnect', (reason) => {
      if (loggedIn) dropped += 1;
      else resolve(`disconnected before login: ${String(reason)}`);
    });
  });
}

/** Logs in every uid with at most `window` attempts in flight; answers when all are done or time is up. */
function connectAll(command: Extract<WorkerCommand, { type: 'connect' }>): void {
  const { url, uids, window, transports, timeoutMs, loginSecret } = command;
  let next = 0;
  let inFlight = 0;
  let loggedIn = 0;
  let failed = 0;
  let firstError: string | null = null;
  let answered = false;
  const answer = (timedOut: boolean) => {
    if (answered) return;
    answered = true;
    clearTimeout(timer);
    send({ type: 'connected', loggedIn, failed, firstError, timedOut });
  };
  const timer = setTimeout(() => answer(true), timeoutMs);
  const launch = () => {
    while (!answered && inFlight < window && next < uids.length) {
      const uid = uids[next++]!;
      inFlight += 1;
      void connectOne(url, uid, transports, timeoutMs, loginSecret).then((error) => {
        inFlight -= 1;
        if (error === null) loggedIn += 1;
        else {
          failed += 1;
          firstError ??= error;
        }
        if (next === uids.length && inFlight === 0) answer(false);
        else launch();
      });
    }
  };
  if (uids.length === 0) answer(false);
  else launch();
}

/** Answers with the key's receipts once `expected` have arrived, or when time is up. */
function collect(command: Extract<WorkerCommand, { type: 'collect' }>): void {
  const { key, expected, timeoutMs } = command;
  const entry = receiptsOf(key);
  let answered = false;
  const answer = (timedOut: boolean) => {
    if (answered) return;
    answered = true;
    entry.waiter = undefined;
    clearTimeout(timer);
    receipts.delete(key); // later arrivals of this key start a fresh, uncollected entry
    send({ type: 'collected', key, ids: entry.ids, latencies: entry.latencies, lastAt: entry.lastAt, timedOut, dropped });
  };
  const timer = setTimeout(() => answer(true), timeoutMs);
  if (entry.ids.length >= expected) answer(false);
  else entry.waiter = { expected, answer: () => answer(false) };
}

// The runner is this process's only peer and is trusted: its messages are WorkerCommands.
process.on('message', (message: WorkerCommand) => {
  if (message.type === 'connect') connectAll(message);
  else collect(message);
});
// Without the runner there is nothing to do: a runner that died must not leave clients behind.
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
