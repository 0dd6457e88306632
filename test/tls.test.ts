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
