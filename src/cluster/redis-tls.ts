// TLS to Redis: rediss:// URLs (REDIS_URL, REDIS_CLUSTER), and the master and the sentinels
// with REDIS_TLS and REDIS_SENTINEL_TLS. One CA setting, REDIS_TLS_CA, for all of them.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';

/**
 * The socket options of a TLS connection to Redis: its certificate checked against `ca`
 * (REDIS_TLS_CA) or, without one, the system's CAs (and NODE_EXTRA_CA_CERTS), and always
 * against the host connected to. There is no switch to skip the check.
 */
export function tlsSocket(ca: Buffer | null): { tls: true; ca?: Buffer } {
  return ca === null ? { tls: true } : { tls: true, ca };
}

/**
 * The certificates of REDIS_TLS_CA's file, checked: each PEM block in it must parse. Throws
 * an Error whose message is the one line to show (the path, never a certificate's text).
 */
export function readCa(path: string): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(path);
  } catch (err) {
    throw new Error(`REDIS_TLS_CA ${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const blocks = pem.toString('latin1').match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new Error(`REDIS_TLS_CA ${path}: no PEM certificate in it`);
  blocks.forEach((block, i) => {
    try {
      new X509Certificate(block);
    } catch {
      throw new Error(`REDIS_TLS_CA ${path}: certificate ${i + 1} does not parse`);
    }
  });
  return pem;
}

/**
 * True for a failed check of a Redis's certificate (not signed by a trusted CA, expired, made
 * out to another host), as opposed to a connection that failed: the start line then names
 * REDIS_TLS_CA.
 */
export function isCertificateError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('ERR_TLS_CERT') || /CERT|SIGNATURE|ISSUER/.test(code));
}
