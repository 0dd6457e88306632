// The three HTTP listeners of a server: made (with TLS when configured, and the same header
// and request timeouts), bound with one clear line when a port cannot be had, closed gracefully.
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type RequestListener, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Config } from './config.ts';

/** A listener that could not start; its message is the one line to show. */
export class StartupError extends Error {
  override name = 'StartupError';
}

export type Tls = { cert: Buffer; key: Buffer } | null;

/** The certificate and key when TLS is on; an unreadable file stops the start. */
export function readTls(config: Config): Tls {
  if (config.tlsCert === null || config.tlsKey === null) return null;
  const read = (setting: string, path: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new StartupError(`${setting} ${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  };
  return { cert: read('TLS_CERT', config.tlsCert), key: read('TLS_KEY', config.tlsKey) };
}

/** HEADERS_TIMEOUT_MS and REQUEST_TIMEOUT_MS, the same on every listening port. */
export type RequestTimeouts = Pick<Config, 'headersTimeoutMs' | 'requestTimeoutMs'>;

/**
 * The options of http(s).createServer that cut a client that trickles its request (slowloris)
 * or sends nothing: `408` once its head took HEADERS_TIMEOUT_MS, or its whole request (body
 * included) REQUEST_TIMEOUT_MS. Node checks only every connectionsCheckingInterval (30 s by
 * default: a 10 s headers timeout cut at 30 s), so it is checked every second here, or at a
 * quarter of a shorter headers timeout. A request counts until it has been received whole, so
 * a long-poll or an SSE stream (a GET whose answer takes its time) is never cut by these.
 * For every listener of the server; the WORKERS primary's Socket.IO listener takes them too.
 */
export function timeoutOptions(t: RequestTimeouts): { headersTimeout: number; requestTimeout: number; connectionsCheckingInterval: number } {
  return {
    headersTimeout: t.headersTimeoutMs,
    requestTimeout: t.requestTimeoutMs,
    connectionsCheckingInterval: Math.min(1000, Math.ceil(t.headersTimeoutMs / 4)),
  };
}

/**
 * An HTTP server, or HTTPS with `tls`; not listening yet. Each has timeoutOptions(), and with
 * TLS a handshake gets HEADERS_TIMEOUT_MS too (Node's default is 120 s, before any header).
 */
export function httpServer(tls: Tls, handler: RequestListener, timeouts: RequestTimeouts, maxHeaderSize?: number): HttpServer {
  const options = { ...timeoutOptions(timeouts), ...(maxHeaderSize === undefined ? {} : { maxHeaderSize }) };
  return tls
    ? (createHttpsServer({ ...tls, ...options, handshakeTimeout: timeouts.headersTimeoutMs }, handler) as unknown as HttpServer)
    : createHttpServer(options, handler);
}

/** Binds `server`; resolves the port bound (the one picked for port 0), or rejects with one line. */
export function listen(server: HttpServer, port: number, host: string, setting: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const where = `${setting} ${port} on ${host}`;
      if (err.code === 'EADDRINUSE') reject(new StartupError(`${where}: port is already in use`));
      else if (err.code === 'EACCES') reject(new StartupError(`${where}: permission denied`));
      else if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND')
        reject(new StartupError(`HOST ${host} is not an address of this machine`));
      else reject(new StartupError(`${where}: ${err.message}`));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : port);
    });
  });
}

/** Stops accepting and closes idle connections; resolves once the requests under way have ended. */
export function closeHttp(server: HttpServer): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}
