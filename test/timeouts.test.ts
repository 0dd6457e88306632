// HEADERS_TIMEOUT_MS and REQUEST_TIMEOUT_MS on every listening port, from one place
// (listeners.ts): a client that trickles its request, or sends nothing, is cut on the
// Socket.IO, API and web ports alike; a long-poll and an SSE stream, requests received whole
// that wait for their answer, live on past both.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../src/config.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { connectClient } from './support/clients.ts';
import { findBinary } from './support/requirements.ts';
import { legacyPush, startServer } from './support/server.ts';
import { SseClient } from './support/sse-client.ts';
import { holdsFor } from './support/until.ts';

const OPENSSL = findBinary('openssl', ['/usr/bin/openssl', '/usr/local/bin/openssl']);

/** Short timeouts, so the tests take seconds: the defaults are 10 s and 30 s. */
const TIMEOUTS = { headersTimeoutMs: 1000, requestTimeoutMs: 2000 };

/**
 * Node's own timeouts cut a trickled head at 30-60 s (IO port) and a silent TLS connection at
 * 120 s; with the fix the cut comes a check interval (at most 1 s) after the timeout. The
 * bound leaves room for a loaded machine and stays far below Node's figures.
 */
const CUT_WITHIN_MS = 8000;

interface Cut {
  /** What the server answered before it closed the connection. */
  answer: string;
  ms: number;
}

/**
 * Connects to `port` and runs `send` on the socket; resolves once the server closes the
 * connection, or rejects after CUT_WITHIN_MS with it still open.
 */
function cutOf(port: number, send: (socket: Socket) => void): Promise<Cut> {
  return new Promise((resolve, reject) => {
    const startedAt = Date.now();
    const socket = connect(port, '127.0.0.1', () => send(socket));
    onCleanup(() => socket.destroy());
    let answer = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (answer += chunk));
    socket.on('error', () => {}); // a reset is a cut too
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`port ${port}: still open after ${CUT_WITHIN_MS} ms; answered ${JSON.stringify(answer)}`));
    }, CUT_WITHIN_MS);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ answer, ms: Date.now() - startedAt });
    });
  });
}

/** Writes `first`, then `more` every 100 ms while the connection is open. */
function trickle(first: string, more: string): (socket: Socket) => void {
  return (socket) => {
    socket.write(first);
    const timer = setInterval(() => socket.write(more), 100);
    socket.on('close', () => clearInterval(timer));
  };
}

describe('request timeouts on every listening port (HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS)', function () {
  this.timeout(30_000);
  afterEach(cleanupAll);

  it('cuts a trickled request head, a silent connection and a trickled body on the Socket.IO, API and web ports', async () => {
    const server = await startServer({ ...TIMEOUTS, webPort: 0, adminToken: 'admin-token-0123456789' });
    const { io, api, web } = server.ports;
    const head = trickle('GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n', 'X-Slow: 1\r\n');
    const silent = () => {};
    // bodies the handler waits for: a legacy push form, the admin sign-in form
    const body = (path: string) =>
      trickle(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n`, 'a');
    const cuts = await Promise.all([
      cutOf(io, head), cutOf(api, head), cutOf(web!, head),
      cutOf(io, silent), cutOf(api, silent), cutOf(web!, silent),
      cutOf(api, body('/')), cutOf(web!, body('/admin')),
    ]);
    for (const [i, cut] of cuts.entries()) {
      expect(cut.answer, `cut ${i}`).to.match(/^HTTP\/1\.1 408 Request Timeout\r\n/);
      // not before its timeout: the head's for the first six, the whole request's for the bodies
      expect(cut.ms, `cut ${i}`).to.be.at.least(i < 6 ? TIMEOUTS.headersTimeoutMs - 50 : TIMEOUTS.requestTimeoutMs - 50);
    }
  });

  it('refuses HEADERS_TIMEOUT_MS above REQUEST_TIMEOUT_MS at start, and below 1000 ms', () => {
    expect(() => loadConfig({ HEADERS_TIMEOUT_MS: '40000' }, [])).to.throw(ConfigError, 'HEADERS_TIMEOUT_MS must not be above REQUEST_TIMEOUT_MS');
    expect(() => loadConfig({ HEADERS_TIMEOUT_MS: '999' }, [])).to.throw(ConfigError, 'HEADERS_TIMEOUT_MS must be an integer 1000-600000, got "999"');
    expect(loadConfig({}, [])).to.include({ headersTimeoutMs: 10_000, requestTimeoutMs: 30_000 });
  });

  it('cuts a TLS connection that never finishes its handshake', async function () {
    if (!OPENSSL) return this.skip();
    const dir = mkdtempSync(join(tmpdir(), 'push-timeouts-'));
    onCleanup(() => rmSync(dir, { recursive: true, force: true }));
    execFileSync(OPENSSL, [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    const server = await startServer({ ...TIMEOUTS, webPort: 0, tlsCert: join(dir, 'cert.pem'), tlsKey: join(dir, 'key.pem') });
    // no ClientHello at all: Node's https server waits 120 s for one by default
    const cuts = await Promise.all([server.ports.io, server.ports.api, server.ports.web!].map((port) => cutOf(port, () => {})));
    for (const cut of cuts) expect(cut.ms).to.be.at.least(TIMEOUTS.headersTimeoutMs - 50);
  });

  it('lets a long-poll (socket.io-client 2.x and 4.x) and an SSE stream live past REQUEST_TIMEOUT_MS', async () => {
    const server = await startServer({ ...TIMEOUTS });
    const v4 = await connectClient('v4', server.ioUrl, ['polling']);
    await v4.login('long');
    const v2 = await connectClient('v2', server.ioUrl, ['polling']);
    await v2.login('long');
    const sse = await SseClient.open(`${server.ioUrl}/events?uid=long`);
    expect(sse.status).to.equal(200);
    // nothing is sent for three request timeouts (the ping comes every 25 s, the SSE heartbeat
    // every 15 s): each client's GET waits for its answer all along
    await holdsFor(() => v4.raw.connected && v2.raw.connected && !sse.ended, 'the long-polls and the stream open', 3 * TIMEOUTS.requestTimeoutMs);
    expect(await legacyPush(server.apiUrl, { type: 'publish', to: 'long', content: 'still here' })).to.deep.equal({ status: 200, body: 'ok' });
    expect(await v4.waitFor('new_msg')).to.deep.equal(['still here']);
    expect(await v2.waitFor('new_msg')).to.deep.equal(['still here']);
    await sse.waitFor((e) => e.event === 'new_msg' && e.data === 'still here', 'the push on the stream');
    expect(v4.received('disconnect')).to.deep.equal([]);
    expect(v2.received('disconnect')).to.deep.equal([]);
  });
});
