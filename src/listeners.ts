// The three HTTP listeners of a server: made (with TLS when configured), bound with one clear
// line when a port cannot be had, closed gracefully.
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

/** An HTTP server, or HTTPS with `tls`; not listening yet. */
export function httpServer(tls: Tls, handler: RequestListener, maxHeaderSize?: number): HttpServer {
  const options = maxHeaderSize === undefined ? {} : { maxHeaderSize };
  return tls ? (createHttpsServer({ ...tls, ...options }, handler) as unknown as HttpServer) : createHttpServer(options, handler);
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
