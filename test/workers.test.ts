// WORKERS=n against hostile clients: a real start.ts primary and its workers, a real
// redis-server on a free port, real sockets. The primary owns the Socket.IO port and hands
// each connection over; what it holds while it does, and the limits the workers share
// through it, are measured here on the real processes.
import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { io as ioV4 } from 'socket.io-client';
import ioV2 from 'socket.io-client-v2';
import { signRequest } from '../src/api/push-auth.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { connectClient, type ClientVersion, type Transports } from './support/clients.ts';
import { rawRequest } from './support/http.ts';
import { REDIS_SERVER, startRedis, type TestRedis } from './support/redis-server.ts';
import { legacyPush, startServer } from './support/server.ts';
import { SseClient } from './support/sse-client.ts';
import { startNodeProcess, type NodeProcess } from './support/start-process.ts';
import { until } from './support/until.ts';

const MiB = 1024 * 1024;

/** The resident memory of process `pid`, bytes (VmRSS). */
function rssOf(pid: number): number {
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!kb) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kb[1]) * 1024;
}

/** The worker processes of the primary `pid`: its children that run start.ts (tsx has a child of its own). */
function workersOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // pid (comm) state ppid ...: the comm may hold spaces and parentheses, so from the last ')'
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid && readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes('start.ts')) children.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return children;
}

/** A Socket.IO client and its first outcome: connected, or refused (connect_error). Closed in cleanup. */
async function tryConnect(version: ClientVersion, url: string, transports: Transports): Promise<{ outcome: 'connected' | 'refused'; close(): void }> {
  const options = { forceNew: true, reconnection: false, transports };
  const socket = (version === 'v4' ? ioV4(url, options) : ioV2(url, options)) as unknown as {
    once(event: string, fn: () => void): void;
    close(): void;
  };
  const close = () => socket.close();
  onCleanup(close);
  const outcome = await new Promise<'connected' | 'refused'>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${version} ${transports.join(',')} client: neither connected nor refused in 10 s`)), 10_000);
    const settle = (outcome: 'connected' | 'refused') => () => {
      clearTimeout(timer);
      resolve(outcome);
    };
    socket.once('connect', settle('connected'));
    socket.once('connect_error', settle('refused'));
    socket.once('error', settle('refused')); // 2.x on a refused handshake
  });
  return { outcome, close };
}

/** What a streaming client saw: the status line's code (null when none came), the body bytes it could send. */
interface Streamed {
  status: number | null;
  sent: number;
}

/**
 * Sends a `POST target` (after `prelude`, if given) whose body of `total` bytes is announced by Content-Length, or sent
 * chunked, as fast as the server takes it, until it is all sent or the server has closed the
 * connection; an answer and the server's end of sending do not stop it. `stop()` cuts it
 * short (the test's own bound was passed).
 */
function streamBody(
  port: number,
  target: string,
  total: number,
  framing: 'length' | 'chunked',
  /** Sent first on the same connection: a request before this one (keep-alive). */
  prelude = '',
): { done: Promise<Streamed>; stop(): void } {
  // half-open: it goes on sending after the server's answer and end, as an attacker would
  const socket: Socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  onCleanup(() => socket.destroy());
  let answer = '';
  let sent = 0;
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => (answer = (answer + chunk).slice(0, 4096)));
  const done = new Promise<Streamed>((resolve) => {
    let closed = false;
    const finish = () => {
      const status = /^HTTP\/1\.1 (\d{3}) /.exec(answer);
      resolve({ status: status ? Number(status[1]) : null, sent });
    };
    socket.once('close', () => {
      closed = true;
      finish();
    });
    socket.on('error', () => {}); // a reset after the server's answer is expected: 'close' follows
    socket.once('connect', async () => {
      const head = framing === 'length' ? `content-length: ${total}` : 'transfer-encoding: chunked';
      socket.write(`${prelude}POST ${target} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: text/plain\r\n${head}\r\n\r\n`);
      const block = Buffer.alloc(64 * 1024, 'a');
      const frame = framing === 'length' ? block : Buffer.concat([Buffer.from(`${block.length.toString(16)}\r\n`), block, Buffer.from('\r\n')]);
      while (!closed && sent < total) {
        sent += block.length;
        if (!socket.write(frame)) {
          await new Promise<void>((resolve) => {
            const go = () => {
              socket.off('drain', go);
              socket.off('close', go);
              resolve();
            };
            socket.on('drain', go);
            socket.on('close', go);
          });
        }
      }
      if (!closed) socket.end(framing === 'chunked' ? '0\r\n\r\n' : '');
    });
  });
  return { done, stop: () => socket.destroy() };
}

/**
 * Opens a connection and sends `bytes` of a request head that never ends (no blank line);
 * `answered` resolves the status the server answers with, or null when it closes without one.
 */
function openHead(port: number, bytes: number): { answered: Promise<number | null> } {
  const socket: Socket = connect(port, '127.0.0.1');
  onCleanup(() => socket.destroy());
  const start = 'GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nhost: 127.0.0.1\r\nx-pad: ';
  socket.write(start + 'a'.repeat(bytes - start.length));
  let answer = '';
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => (answer += chunk));
  socket.on('error', () => {});
  return {
    answered: new Promise((resolve) => {
      socket.once('close', () => {
        const status = /^HTTP\/1\.1 (\d{3}) /.exec(answer);
        resolve(status ? Number(status[1]) : null);
      });
    }),
  };
}

/** A logged-in page on the primary's Socket.IO port gets a legacy push made at the API port. */
async function pushReachesALogin(primary: NodeProcess, uid: string): Promise<void> {
  const client = await connectClient('v4', primary.ioUrl);
  await client.login(uid);
  const { status, body } = await legacyPush(primary.apiUrl, { type: 'publish', to: uid, content: `to ${uid}` });
  expect([status, body]).to.deep.equal([200, 'ok']);
  expect((await client.waitFor('new_msg'))[0]).to.equal(`to ${uid}`);
  client.close();
}

/** Engine.IO's handshake on `primary`: a polling session's id. */
async function pollingSession(primary: NodeProcess): Promise<string> {
  const res = await fetch(`${primary.ioUrl}/socket.io/?EIO=4&transport=polling`);
  const text = await res.text();
  const sid = /"sid":"([\w-]+)"/.exec(text);
  if (!sid) throw new Error(`no sid in the handshake: ${text}`);
  return sid[1]!;
}

describe('WORKERS against hostile clients (start.ts primary and workers, a real redis-server)', function () {
  // a primary and its workers start under tsx: several seconds on a loaded machine
  this.timeout(90_000);
  let redis: TestRedis;

  beforeEach(async function () {
    if (!REDIS_SERVER) return this.skip();
    redis = await startRedis();
    onCleanup(() => redis.stop());
  });
  afterEach(cleanupAll);

  describe('the primary holds a bounded amount of what clients send (finding 1)', () => {
    it('500 MB bodies streamed at /events and at a polling session leave the primary under +64 MiB, and pushes and logins go on during and after', async () => {
      const primary = await startNodeProcess('W', redis.url, { WORKERS: '2' });
      // this Node's handle stops reading before a hand-over (node-internals.ts checked it at start)
      expect(primary.output()).not.to.include('node internals');
      const port = Number(new URL(primary.ioUrl).port);
      await pushReachesALogin(primary, 'before');
      const base = rssOf(primary.pid);
      const sid = await pollingSession(primary);
      const polling = `/socket.io/?EIO=4&transport=polling&sid=${sid}`;
      const total = 500 * 1000 * 1000;
      const streams = [
        streamBody(port, '/events', total, 'length'),
        streamBody(port, polling, total, 'length'),
        streamBody(port, '/events', total, 'chunked'),
        streamBody(port, `/socket.io/?EIO=4&transport=polling&sid=${await pollingSession(primary)}`, total, 'chunked'),
        // keep-alive: a small request first, so the primary sees only its head
        streamBody(port, '/events', total, 'length', `POST /events HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-length: 2\r\n\r\nhi`),
      ];
      // the primary's memory, watched while they stream: past the bound, they are cut at once
      let peak = base;
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          peak = Math.max(peak, rssOf(primary.pid));
          if (peak - base >= 64 * MiB) {
            for (const s of streams) s.stop();
            return;
          }
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })();
      await pushReachesALogin(primary, 'during');
      const results = await Promise.all(streams.map((s) => s.done));
      watching = false;
      await watcher;
      expect(peak - base, `primary RSS ${(base / MiB).toFixed(1)} -> peak ${(peak / MiB).toFixed(1)} MiB`).to.be.below(64 * MiB);
      // each cut well before 500 MB: announced by Content-Length, answered 413 by the primary
      // before any worker saw it; chunked, or after a first request on the connection, handed
      // over and refused by the worker (its answer may be lost to the reset that follows it, as
      // Node's own server closes such a connection)
      for (const r of results) expect(r.sent, JSON.stringify(results)).to.be.below(total / 10);
      expect(results.slice(0, 2).map((r) => r.status)).to.deep.equal([413, 413]);
      for (const r of results.slice(2)) expect(r.status, JSON.stringify(results)).to.be.oneOf([null, 405, 413]);
      await pushReachesALogin(primary, 'after');
      expect(primary.running()).to.equal(true);
      console.log(`      primary RSS ${(base / MiB).toFixed(1)} MiB -> peak ${(peak / MiB).toFixed(1)} MiB; sent ${results.map((r) => (r.sent / MiB).toFixed(1)).join(', ')} MiB`);
    });

    it('request heads are bounded: over 16 KiB answered 431, unfinished after 10 s 408, and past 16 MiB held in all the oldest cut, while logins go on', async () => {
      const primary = await startNodeProcess('W', redis.url, { WORKERS: '2' });
      const port = Number(new URL(primary.ioUrl).port);
      const base = rssOf(primary.pid);
      const tooLarge = openHead(port, 17 * 1024);
      expect(await tooLarge.answered).to.equal(431);
      // 1100 heads of 16 000 bytes that never end: 17.6 MB, more than the 16 MiB held at most
      const slow = Array.from({ length: 1100 }, () => openHead(port, 16_000));
      const cutEarly = await Promise.race([
        Promise.any(slow.map((h) => h.answered)),
        new Promise<null>((resolve) => setTimeout(() => resolve(null), 8000)),
      ]);
      expect(cutEarly, 'a head cut for room before the 10 s of its time').to.equal(408);
      const rssWhileHeld = rssOf(primary.pid);
      await pushReachesALogin(primary, 'during');
      const statuses = await Promise.all(slow.map((h) => h.answered));
      expect(new Set(statuses)).to.deep.equal(new Set([408]));
      expect(rssWhileHeld - base).to.be.below(64 * MiB);
      await pushReachesALogin(primary, 'after');
      console.log(`      primary RSS ${(base / MiB).toFixed(1)} MiB -> ${(rssWhileHeld / MiB).toFixed(1)} MiB holding the heads`);
    });
  });

  describe('limits that hold for the machine, kept by the primary for every worker (finding 8)', () => {
    it('one signed push is accepted once with WORKERS=4, whichever worker each of 8 copies reaches', async () => {
      const secret = 'workers-test-secret-0123';
      const primary = await startNodeProcess('W', redis.url, { WORKERS: '4', PUSH_SECRET: secret });
      const page = await connectClient('v4', primary.ioUrl);
      await page.login('u');
      const ts = String(Math.floor(Date.now() / 1000));
      const target = '/?type=publish&to=u&content=once';
      // each on a new connection: the cluster module deals them to the workers in turn
      const headers = { 'x-push-timestamp': ts, 'x-push-signature': signRequest(secret, ts, 'GET', target, ''), connection: 'close' };
      const answers: string[] = [];
      for (let i = 0; i < 8; i++) {
        const { status, body } = await rawRequest(primary.apiUrl + target, { headers });
        answers.push(`${status} ${body}`);
      }
      expect(answers.filter((a) => a === '200 ok')).to.have.length(1, answers.join(', '));
      expect(answers.filter((a) => a === '401 fail')).to.have.length(7, answers.join(', '));
      // the page got it once: a later push arrives after it, and nothing else came between
      expect((await legacyPush(primary.apiUrl, { type: 'publish', to: 'u', content: 'next', secret })).body).to.equal('ok');
      await page.waitFor('new_msg', (m) => m === 'next');
      expect(page.received('new_msg').map(([m]) => m)).to.deep.equal(['once', 'next']);
    });

    it('MAX_CONNECTIONS_PER_IP=2 with WORKERS=3: 2 connect over Socket.IO and SSE together, and a place comes back when a connection closes or its worker dies', async () => {
      const primary = await startNodeProcess('W', redis.url, { WORKERS: '3', MAX_CONNECTIONS_PER_IP: '2' });
      // least-connection sends each new session to another worker
      const outcomes: string[] = [];
      const kinds: [ClientVersion, Transports][] = [
        ['v4', ['websocket']],
        ['v2', ['polling']],
        ['v4', ['polling']],
        ['v2', ['websocket']],
        ['v4', ['websocket']],
        ['v2', ['polling']],
      ];
      const connected: { close(): void }[] = [];
      for (const [version, transports] of kinds) {
        const attempt = await tryConnect(version, primary.ioUrl, transports);
        outcomes.push(`${version} ${transports.join()} ${attempt.outcome}`);
        if (attempt.outcome === 'connected') connected.push(attempt);
      }
      expect(connected, outcomes.join('; ')).to.have.length(2);
      const stream = await SseClient.open(`${primary.ioUrl}/events?uid=s`);
      await stream.waitForEnd();
      expect([stream.status, stream.error().code]).to.deep.equal([429, 'too_many_connections']);

      // one closed: its place is given back (over IPC), and a stream, at whichever worker, takes it
      connected[0]!.close();
      let opened: SseClient | null = null;
      await until(async () => {
        const attempt = await SseClient.open(`${primary.ioUrl}/events?uid=s`);
        if (attempt.status === 200) opened = attempt;
        else attempt.close();
        return opened !== null;
      }, 'a stream to take the place given back');
      expect((await tryConnect('v4', primary.ioUrl, ['websocket'])).outcome).to.equal('refused');

      // every worker killed: the primary gives back the places they held, their replacements serve
      const workers = workersOf(primary.pid);
      expect(workers).to.have.length(3);
      for (const pid of workers) process.kill(pid, 'SIGKILL');
      await primary.waitForOutput(/starting another/, 10_000, 3);
      const again: string[] = [];
      await until(async () => {
        const attempt = await tryConnect('v4', primary.ioUrl, ['websocket']).catch(() => null);
        if (attempt?.outcome === 'connected') again.push('connected');
        return again.length === 2;
      }, 'two connections after the workers were replaced', 40_000, 200);
      expect((await tryConnect('v2', primary.ioUrl, ['polling'])).outcome).to.equal('refused');
    });

    it('a handshake that fails after taking its place (an upgrade ws refuses) gives the place back', async () => {
      // the place is taken before the handshake is let through, as it may be the primary's to give
      const server = await startServer({ maxConnectionsPerIp: 1 });
      const port = Number(new URL(server.ioUrl).port);
      for (let i = 0; i < 3; i++) {
        const socket = connect(port, '127.0.0.1');
        onCleanup(() => socket.destroy());
        let answer = '';
        socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
        socket.write(
          'GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: websocket\r\nconnection: Upgrade\r\n' +
            'sec-websocket-version: 13\r\nsec-websocket-key: not-a-key\r\n\r\n',
        );
        await new Promise((resolve) => socket.once('close', resolve));
        expect(answer).to.match(/^HTTP\/1\.1 400 /);
      }
      await until(async () => (await tryConnect('v4', server.ioUrl, ['websocket'])).outcome === 'connected', 'the one place to be free');
    });
  });
});
