// Thousands of random requests and socket frames, seeded so a failure can be replayed
// (FUZZ_SEED=n). Every HTTP request gets a status below 500, nothing crashes, what the server
// tracks goes back to what the normal clients hold, and a normal push works afterwards.
import { expect } from 'chai';
import { connect } from 'node:net';
import { io as ioV4 } from 'socket.io-client';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { connectClient } from './support/clients.ts';
import { legacyPush, startServer } from './support/server.ts';
import { until } from './support/until.ts';
import { seededRandom } from '../bench/stats.ts';

const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);


const random = seededRandom(SEED);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
const int = (max: number) => Math.floor(random() * max);
const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
const text = (n: number) => Array.from({ length: n }, () => pick(['a', 'é', '你', '🎉', '%', '&', '=', '<', '"', '\\', '/', '?', '#', ' ', '0'])).join('');

function randomBody(contentType: string): Buffer {
  switch (int(6)) {
    case 0: return Buffer.alloc(0);
    case 1: return bytes(int(3000)); // binary, invalid UTF-8
    case 2: return Buffer.from(JSON.stringify({ type: pick(['publish', 'x', 1, null, [], {}]), to: pick(['u', '', 5, [], { a: 1 }]), content: pick([text(50), 3, null, { x: 1 }]), data: text(20), ttl: pick([1, -1, 'x', 1e12]), extra: 1 }));
    case 3: return Buffer.from(`type=publish&to=${encodeURIComponent(text(5))}&content=${encodeURIComponent(text(100))}&a[b][c]=1&to[]=x`);
    case 4: {
      const boundary = /boundary=([^;]+)/.exec(contentType)?.[1] ?? 'B';
      const cut = int(3) === 0;
      const full = `--${boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\npublish\r\n--${boundary}\r\nContent-Disposition: form-data; name="content"; filename="x.bin"\r\nContent-Type: application/octet-stream\r\n\r\n${text(200)}\r\n--${boundary}--\r\n`;
      return Buffer.from(cut ? full.slice(0, int(full.length)) : full);
    }
    default: return Buffer.from(text(int(500)));
  }
}

/** One random request as raw bytes, correctly framed (content-length matches) or garbage. */
function randomRequest(): Buffer {
  if (int(10) === 0) return bytes(1 + int(2000)); // not HTTP at all
  const method = pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'FOO', 'G\u00e9T']);
  const path = pick(['/', '/api/v1/push', '/api/v1/push/batch', '/api/v1/scheduled/x', '/api/v1/users/a/messages', '/api/v1/', '/a/../../etc/passwd', '/%ff%fe', '/?type=publish&to=u&content=' + encodeURIComponent(text(30)), '/?' + text(40)]);
  const contentType = pick(['application/json', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=XyZ', 'multipart/form-data', 'text/plain', 'application/json; charset=latin1', 'garbage/\u00ff', '']);
  const body = randomBody(contentType);
  const headers = [`Host: x`, `Connection: close`, `Content-Length: ${body.length}`];
  if (contentType) headers.push(`Content-Type: ${contentType}`);
  if (int(8) === 0) headers.push(`X-Huge: ${'h'.repeat(20_000 + int(20_000))}`);
  if (int(8) === 0) headers.push(`Authorization: Bearer ${text(10)}`);
  if (int(10) === 0) headers.push('Transfer-Encoding: chunked'); // conflicts with Content-Length: must be refused
  return Buffer.concat([Buffer.from(`${method} ${path} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`, 'latin1'), body]);
}

/** Sends raw bytes; resolves the status of the answer, or 0 when the server closed without one. */
function send(port: number, data: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.setEncoding('latin1');
    socket.setTimeout(10_000, () => reject(new Error('no answer within 10 s')));
    socket.on('data', (c: string) => (answer += c));
    socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' || err.code === 'EPIPE' ? resolve(statusOf(answer)) : reject(err)));
    socket.on('close', () => resolve(statusOf(answer)));
    socket.on('connect', () => socket.end(data));
  });
}

function statusOf(answer: string): number {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(answer);
  return m ? Number(m[1]) : 0;
}

describe(`fuzz (FUZZ_SEED=${SEED})`, function () {
  this.timeout(120_000);
  afterEach(cleanupAll);

  it('answers 3000 random HTTP requests with a status below 500, and still pushes', async () => {
    const server = await startServer({ maxBodyBytes: 16_384 });
    const page = await connectClient('v4', server.ioUrl);
    await page.login('u');
    const statuses = new Map<number, number>();
    const requests = Array.from({ length: 3000 }, randomRequest);
    for (let i = 0; i < requests.length; i += 25) {
      const batch = await Promise.all(requests.slice(i, i + 25).map((r) => send(server.ports.api, r)));
      for (const s of batch) statuses.set(s, (statuses.get(s) ?? 0) + 1);
    }
    const serverErrors = [...statuses.keys()].filter((s) => s >= 500);
    expect(serverErrors, `statuses: ${JSON.stringify([...statuses])}`).to.deep.equal([]);
    // 0 (closed without an answer) only for requests that were not HTTP at all
    expect(statuses.get(0) ?? 0).to.be.below(requests.filter((r) => !/^[A-Z\u00c9]+ \//.test(r.toString('latin1', 0, 12))).length + 1);
    expect(await legacyPush(server.apiUrl, { type: 'publish', to: 'u', content: 'after fuzz' })).to.deep.equal({ status: 200, body: 'ok' });
    await page.waitFor('new_msg', (c) => c === 'after fuzz');
  });

  it('survives 2000 random socket frames and events, and tracks only the sockets still open', async () => {
    const server = await startServer({ socketEventsPerSecond: 100_000, maxSocketMessageBytes: 8192 });
    const page = await connectClient('v2', server.ioUrl);
    await page.login('steady');
    const events = ['login', 'subscribe', 'unsubscribe', 'new_msg', 'x', '', 'disconnect', '__proto__', 'constructor'];
    const values = () => pick<unknown>([text(20), int(1e6), null, [], {}, { uid: text(5), token: text(64) }, { topic: 'private-' + text(3) }, [text(3), { topic: 1 }], 'x'.repeat(300), -0, true]);
    let sent = 0;
    while (sent < 2000) {
      const fuzzer = ioV4(server.ioUrl, { forceNew: true, reconnection: false, transports: [pick(['websocket', 'polling'] as const)] });
      onCleanup(() => fuzzer.close());
      await new Promise<void>((resolve, reject) => (fuzzer.once('connect', resolve), fuzzer.once('connect_error', reject)));
      for (let i = 0; i < 200 && sent < 2000; i++, sent++) {
        if (int(20) === 0) {
          fuzzer.io.engine.write(pick([text(50), '4' + text(20), '42[' + text(10), '2probe', 'x'.repeat(9000), '']));
        } else {
          // as a raw packet, so names the client itself refuses (disconnect, ...) reach the server
          fuzzer.io.engine.write('42' + JSON.stringify([pick(events), values(), values()]));
        }
      }
      fuzzer.close();
    }
    const raw = await Promise.all(Array.from({ length: 50 }, () => send(server.ports.io, randomRequest())));
    expect(raw.filter((s) => s >= 500)).to.deep.equal([]);

    // only the steady page is left, counted once
    await until(() => server.io.engine.clientsCount === 1, 'fuzzing sockets to be gone', 10_000);
    expect((await legacyPush(server.apiUrl, { type: 'publish', to: 'steady', content: 'still here' })).body).to.equal('ok');
    await page.waitFor('new_msg', (c) => c === 'still here');
    const counts = await page.request<{ ok: boolean }>('login', 'again'); // a second login: refused, nothing counted
    expect(counts.ok).to.equal(false);
  });
});
