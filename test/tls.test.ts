// TLS_CERT / TLS_KEY: https and wss on every port, with a certificate the test makes itself.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io as ioV4 } from 'socket.io-client';
import ioV2 from 'socket.io-client-v2';
import { ConfigError, loadConfig } from '../src/config.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { TestClient } from './support/clients.ts';
import { rawRequest } from './support/http.ts';
import { findBinary } from './support/requirements.ts';
import { startServer } from './support/server.ts';
import { spawnStart } from './support/start-process.ts';
import { createServer as createHttpsServer } from 'node:https';
import { until } from './support/until.ts';

const OPENSSL = findBinary('openssl', ['/usr/bin/openssl', '/usr/local/bin/openssl']);

describe('TLS', function () {
  let dir: string;
  let cert: Buffer;

  before(function () {
    if (!OPENSSL) return this.skip();
    dir = mkdtempSync(join(tmpdir(), 'push-tls-'));
    execFileSync(OPENSSL, [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    cert = readFileSync(join(dir, 'cert.pem'));
  });
  after(() => dir && rmSync(dir, { recursive: true, force: true }));
  afterEach(cleanupAll);

  it('serves https pushes, wss and https long-polling for both client versions, and the demo page', async () => {
    const server = await startServer({ tlsCert: join(dir, 'cert.pem'), tlsKey: join(dir, 'key.pem'), webPort: 0, adminToken: 'admin-token-0123456789' });
    const base = 'https://127.0.0.1:';
    const clients: TestClient[] = [];
    for (const [version, transports] of [['v4', ['websocket']], ['v4', ['polling']], ['v2', ['websocket']], ['v2', ['polling']]] as const) {
      const options = { forceNew: true, reconnection: false, transports: [...transports], ca: cert.toString() };
      const raw = version === 'v4' ? ioV4(base + server.ports.io, options) : ioV2(base + server.ports.io, options);
      const client = new TestClient(version, raw as never);
      onCleanup(() => client.close());
      await client.waitFor('connect');
      await client.login(`${version}-${transports[0]}`);
      clients.push(client);
    }
    const push = await rawRequest(`${base}${server.ports.api}/?type=publish&to=&content=over-tls`, { ca: cert });
    expect(push).to.include({ status: 200, body: 'ok' });
    for (const c of clients) expect((await c.waitFor('new_msg'))[0]).to.equal('over-tls');
    const page = await rawRequest(`${base}${server.ports.web}/`, { ca: cert });
    expect(page.body).to.include('Push server demo');
    // the admin session cookie is only ever sent back over TLS
    const signIn = await rawRequest(`${base}${server.ports.web}/admin?token=admin-token-0123456789`, { ca: cert });
    expect(signIn.status).to.equal(303);
    expect(String(signIn.headers['set-cookie'])).to.match(/; HttpOnly; SameSite=Strict; Secure$/);
  });

  it('posts webhooks to an https url, with Basic auth from the url and a signature, on one kept-alive connection', async () => {
    const hooks: { auth: string | undefined; signature: string | undefined; body: string }[] = [];
    const connections = new Set<unknown>();
    const receiver = createHttpsServer({ cert, key: readFileSync(join(dir, 'key.pem')) }, (req, res) => {
      connections.add(req.socket);
      let body = '';
      req.setEncoding('utf8').on('data', (c: string) => (body += c));
      req.on('end', () => {
        hooks.push({ auth: req.headers.authorization, signature: req.headers['x-signature'] as string | undefined, body });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    onCleanup(() => new Promise<void>((resolve) => {
      receiver.closeAllConnections();
      receiver.close(() => resolve());
    }));
    const { port } = receiver.address() as { port: number };
    // the server trusts the test's certificate the way an operator would trust a private CA
    const server = spawnStart([], {
      IO_PORT: '0', API_PORT: '0', WEB_PORT: 'off', STORE: 'memory',
      WEBHOOK_URL: `https://hook-user:hook%20pass@localhost:${port}/hooks`, WEBHOOK_SECRET: 'webhook-secret-0123',
      NODE_EXTRA_CA_CERTS: join(dir, 'cert.pem'),
    });
    onCleanup(() => server.stop());
    const { ioUrl } = await server.started();
    for (const uid of ['tls-a', 'tls-b', 'tls-c']) {
      const client = new TestClient('v4', ioV4(ioUrl, { forceNew: true, reconnection: false, transports: ['websocket'] }) as never);
      onCleanup(() => client.close());
      await client.login(uid);
      await until(() => hooks.length === ['tls-a', 'tls-b', 'tls-c'].indexOf(uid) + 1, `user.online of ${uid}`);
    }
    expect(hooks.map((h) => JSON.parse(h.body).uid)).to.deep.equal(['tls-a', 'tls-b', 'tls-c']);
    for (const h of hooks) {
      expect(h.auth).to.equal(`Basic ${Buffer.from('hook-user:hook pass').toString('base64')}`);
      expect(h.signature).to.match(/^sha256=[0-9a-f]{64}$/);
    }
    expect(connections.size, 'TLS connections the webhooks came on').to.equal(1);
  });

  it('refuses half a TLS setting, and names an unreadable file in one line', async () => {
    expect(() => loadConfig({ TLS_CERT: '/x.pem' })).to.throw(ConfigError, 'TLS_CERT and TLS_KEY go together: set both or neither');
    let error: unknown;
    try {
      await startServer({ tlsCert: join(dir, 'missing.pem'), tlsKey: join(dir, 'key.pem') });
    } catch (err) {
      error = err;
    }
    expect((error as Error).message).to.equal(`TLS_CERT ${join(dir, 'missing.pem')}: cannot read (ENOENT)`);
  });
});
