// Bad input gets a clear 4xx (or a closed connection), and the server keeps serving others.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { Agent, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { cleanupAll } from './support/cleanup.ts';
import { connectClient, countsHtml, type TestClient } from './support/clients.ts';
import { recordingLogger } from './support/logger.ts';
import { legacyPush, startServer, type TestServer } from './support/server.ts';

/** Writes raw bytes to a port and resolves what came back before the server closed it. */
function rawExchange(port: number, data: Buffer | string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? resolve(answer) : reject(err)));
    socket.on('close', () => resolve(answer));
    socket.on('connect', () => socket.end(data));
  });
}

describe('robustness', () => {
  let server: TestServer;
  let alice: TestClient;

  beforeEach(async () => {
    server = await startServer({ maxBodyBytes: 4096, maxSocketMessageBytes: 1024 });
    alice = await connectClient('v4', server.ioUrl);
    await alice.login('alice');
  });
  afterEach(cleanupAll);

  /** The server still delivers a normal push to a page that was there all along. */
  async function stillServes(tag: string): Promise<void> {
    expect(await legacyPush(server.apiUrl, { type: 'publish', to: 'alice', content: tag }))
      .to.deep.equal({ status: 200, body: 'ok' });
    expect(await alice.waitFor('new_msg', (c) => c === tag)).to.deep.equal([tag]);
  }

  it('keeps an idle push connection open 65 s, past the 60 s of common proxies, so a reused one is not reset under a push', async () => {
    // Node's default of 5 s closed connections that backends' pools and proxies still held
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const answer = await new Promise<{ keepAlive: string | undefined; body: string }>((resolve, reject) => {
        const req = httpRequest(`${server.apiUrl}/?type=publish&to=alice&content=kept-alive`, { agent }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ keepAlive: res.headers['keep-alive'] as string | undefined, body }));
        });
        req.on('error', reject).end();
      });
      expect(answer).to.deep.equal({ keepAlive: 'timeout=65', body: 'ok' });
    } finally {
      agent.destroy();
    }
  });

  it('answers malformed JSON with 400 and its reason', async () => {
    const res = await fetch(server.apiUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"type": publish' });
    expect(res.status).to.equal(400);
    expect(await res.text()).to.match(/^malformed body: /);
    await stillServes('after bad json');
  });

  it('answers JSON nested 100 000 deep with 400 and its reason, logging nothing (v1 and legacy)', async () => {
    const log = recordingLogger();
    const deepServer = await startServer({}, { log });
    const page = (await connectClient('v4', deepServer.ioUrl)).track('deep');
    await page.login('deep');
    const nest = (levels: number) => '['.repeat(levels) + ']'.repeat(levels);
    const post = (path: string, body: string) =>
      fetch(deepServer.apiUrl + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const reason = 'malformed body: arrays and objects nest deeper than 64 levels';
    for (const body of [`{"to":"deep","data":${nest(100_000)}}`, `{"messages":[{"to":"deep","data":${nest(100_000)}}]}`]) {
      const res = await post(body.startsWith('{"messages"') ? '/api/v1/push/batch' : '/api/v1/push', body);
      expect([res.status, await res.json()]).to.deep.equal([400, { error: { code: 'bad_request', message: reason } }]);
    }
    for (const body of [`{"type":"publish","to":"deep","content":"x","extra":${nest(100_000)}}`, nest(100_000)]) {
      const res = await post('/', body);
      expect([res.status, await res.text()]).to.deep.equal([400, reason]);
    }
    // 64 levels in all pass: the body object and 63 levels of data; brackets inside a string are text
    let data: unknown = [']]]}}[[[{{\\"'];
    for (let level = 1; level < 63; level++) data = [data];
    const ok = await post('/api/v1/push', JSON.stringify({ to: 'deep', event: 'deep', data }));
    expect(ok.status, await ok.text()).to.equal(200);
    expect((await page.waitFor('deep'))[0]).to.deep.equal(data);
    expect(log.lines.filter((line) => line.startsWith('error'))).to.deep.equal([]);
  });

  it('answers a non-string parameter with 400 naming it', async () => {
    const res = await fetch(server.apiUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'publish', to: 'alice', content: { html: 1 } }),
    });
    expect(res.status).to.equal(400);
    expect(await res.text()).to.equal('parameter content must be a string');
    expect(alice.received('new_msg')).to.have.length(0);
    await stillServes('after object content');
  });

  it('answers broken multipart bodies with 400', async () => {
    for (const [contentType, body] of [
      ['multipart/form-data', 'no boundary at all'],
      ['multipart/form-data; boundary=XYZ', '--XYZ\r\nContent-Disposition: form-data; name="type"\r\n\r\npubl'],
      ['multipart/form-data; boundary=XYZ', randomBytes(512).toString('latin1')],
      // a file part cut off mid-way: its own stream errors too (found by the fuzz test: a crash)
      ['multipart/form-data; boundary=XYZ', '--XYZ\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n\r\nhalf a fi'],
    ] as const) {
      const res = await fetch(server.apiUrl, { method: 'POST', headers: { 'content-type': contentType }, body });
      expect(res.status, `${contentType}: ${body.slice(0, 20)}`).to.equal(400);
      expect(await res.text()).to.match(/^malformed multipart body: /);
    }
    await stillServes('after broken multipart');
  });

  it('answers a body over MAX_BODY_BYTES with 413, with or without a content-length', async () => {
    const big = 'x'.repeat(5000);
    for (const body of [
      new URLSearchParams({ type: 'publish', to: 'alice', content: big }),
      JSON.stringify({ type: 'publish', to: 'alice', content: big }),
    ]) {
      const res = await fetch(server.apiUrl, {
        method: 'POST',
        headers: typeof body === 'string' ? { 'content-type': 'application/json' } : {},
        body,
      });
      expect(res.status).to.equal(413);
    }
    const form = new FormData();
    form.append('type', 'publish');
    form.append('content', big);
    expect((await fetch(server.apiUrl, { method: 'POST', body: form })).status).to.equal(413);
    // chunked, so only counting the bytes can catch it
    const chunked = new ReadableStream<Uint8Array>({
      start(controller) {
        const boundary = 'B';
        controller.enqueue(new TextEncoder().encode(`--${boundary}\r\nContent-Disposition: form-data; name="content"\r\n\r\n`));
        for (let i = 0; i < 10; i++) controller.enqueue(new TextEncoder().encode('y'.repeat(1000)));
        controller.enqueue(new TextEncoder().encode(`\r\n--${boundary}--\r\n`));
        controller.close();
      },
    });
    const res = await fetch(server.apiUrl, {
      method: 'POST',
      headers: { 'content-type': 'multipart/form-data; boundary=B' },
      body: chunked,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).to.equal(413);
    expect(alice.received('new_msg')).to.have.length(0);
    await stillServes('after big bodies');
  });

  it('answers a huge query string with 413, 414 or 431, and a flood of parameters with 414', async () => {
    // a query may carry a content of MAX_DATA_BYTES (64 KiB), so this one is read, and refused for its content
    const big = await fetch(`${server.apiUrl}/?type=publish&to=alice&content=${'z'.repeat(100_000)}`);
    expect([big.status, await big.text()]).to.deep.equal([413, 'content is larger than 65536 bytes']);
    const long = await fetch(`${server.apiUrl}/?type=publish&to=alice&content=${'z'.repeat(210_000)}`);
    expect([long.status, await long.text()]).to.deep.equal([414, 'query string is longer than 204800 bytes']);
    expect((await fetch(`${server.apiUrl}/?type=publish&to=alice&content=${'z'.repeat(300_000)}`)).status).to.equal(431);
    // 1000 parameters are read; one more is refused, not cut (PHP's max_input_vars would cut)
    const params = (n: number) => Array.from({ length: n - 3 }, (_, i) => `p${i}=1`).join('&');
    const many = await fetch(`${server.apiUrl}/?type=publish&to=alice&${params(1000)}&content=many`);
    expect(await many.text()).to.equal('ok');
    expect(await alice.waitFor('new_msg')).to.deep.equal(['many']);
    const tooMany = await fetch(`${server.apiUrl}/?type=publish&to=alice&${params(1001)}&content=too-many`);
    expect([tooMany.status, await tooMany.text()]).to.deep.equal([414, 'query string has more than 1000 parameters']);
    expect(alice.received('new_msg')).to.have.length(1);
    await stillServes('after huge query');
  });

  it('survives binary garbage on the API and Socket.IO ports', async () => {
    for (const port of [server.ports.api, server.ports.io]) {
      for (let i = 0; i < 5; i++) {
        const answer = await rawExchange(port, randomBytes(2048));
        expect(answer === '' || answer.startsWith('HTTP/1.1 400')).to.equal(true, answer.slice(0, 40));
      }
    }
    const answer = await rawExchange(server.ports.io, 'GET /socket.io/?EIO=9&transport=nope HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(answer).to.match(/^HTTP\/1.1 400/);
    const late = await connectClient('v2', server.ioUrl);
    expect(await late.login('late')).to.equal(countsHtml(2, 2));
    await stillServes('after garbage');
  });

  it('closes only the connection that sends a broken or oversized packet', async () => {
    for (const packet of ['4garbage-not-a-packet', '42' + JSON.stringify(['login', 'x'.repeat(2000)])]) {
      const bad = await connectClient('v4', server.ioUrl, ['websocket']);
      bad.raw.io.engine.write(packet);
      await bad.waitFor('disconnect');
    }
    const bad2 = await connectClient('v2', server.ioUrl, ['polling']);
    bad2.raw.io.engine.write('42["login"');
    await bad2.waitFor('disconnect');
    await stillServes('after bad packets');
  });
});
