// Certificates for TLS tests, made with openssl in a temp dir: a CA, a server certificate it
// signed for 127.0.0.1 and localhost, and a second CA that signed nothing (the wrong CA).
// Where openssl is missing the tests skip loudly (a failure under PUSH_TEST_STRICT=1).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findBinary } from './requirements.ts';

export const OPENSSL = findBinary('openssl', ['/usr/bin/openssl', '/usr/local/bin/openssl']);

/** Paths of PEM files. */
export interface TestCertificates {
  /** The CA that signed `cert`. */
  ca: string;
  /** The server certificate, for 127.0.0.1 and localhost, and its key. */
  cert: string;
  key: string;
  /** A CA that signed nothing here: a server's certificate does not check against it. */
  otherCa: string;
  /** Removes the files. Idempotent. */
  close(): void;
}

export function makeCertificates(): TestCertificates {
  if (!OPENSSL) throw new Error('openssl is missing');
  const openssl = OPENSSL;
  const dir = mkdtempSync(join(tmpdir(), 'push-certs-'));
  const path = (name: string) => join(dir, name);
  const run = (args: string[]) => execFileSync(openssl, args, { stdio: 'ignore' });
  try {
    for (const ca of ['ca', 'other-ca']) {
      run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=push test ${ca}`, '-keyout', path(`${ca}.key`), '-out', path(`${ca}.pem`)]);
    }
    run(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', path('server.key'), '-out', path('server.csr')]);
    writeFileSync(path('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    run([
      'x509', '-req', '-in', path('server.csr'), '-CA', path('ca.pem'), '-CAkey', path('ca.key'), '-CAcreateserial',
      '-days', '1', '-extfile', path('server.ext'), '-out', path('server.pem'),
    ]);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    ca: path('ca.pem'),
    cert: path('server.pem'),
    key: path('server.key'),
    otherCa: path('other-ca.pem'),
    close: () => rmSync(dir, { recursive: true, force: true }),
  };
}
