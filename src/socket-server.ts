// The Socket.IO server of a node, on its own HTTP listener: which requests it accepts (the
// CORS_ORIGINS list, MAX_CONNECTIONS_PER_IP) and how much may wait to be sent to a connection
// (MAX_SOCKET_BUFFER_BYTES). What a connected socket may do is in socket-handlers.ts.
import type { IncomingMessage, RequestListener } from 'node:http';
import { Server } from 'socket.io';
import type { RedisCluster } from './cluster/components.ts';
import type { Config } from './config.ts';
import { ConnectionCounter, type ConnectionPlaces } from './connection-limit.ts';
import { CorsRule, isEngineIo3 } from './cors.ts';
import type { PushIo } from './events.ts';
import { httpServer, type Tls } from './listeners.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import { boundOutgoing } from './outgoing-bound.ts';

/**
 * The Socket.IO server on its own listener (not yet listening): CORS_ORIGINS enforced on every
 * request, MAX_CONNECTIONS_PER_IP, MAX_SOCKET_BUFFER_BYTES, rooms across nodes with Redis.
 * `connections` counts them per address; SSE streams on the same listener count there too.
 */
export function createSockets(
  config: Config,
  tls: Tls,
  log: Logger,
  metrics: Metrics,
  addressOf: (req: IncomingMessage) => string,
  cluster: RedisCluster | null,
  /** Requests outside /socket.io/ (GET /events, sse/endpoint.ts); called only once listening. */
  otherRequests: RequestListener,
  /** MAX_CONNECTIONS_PER_IP's count: under WORKERS the primary's. @default this process's own */
  connections: ConnectionPlaces = new ConnectionCounter(config.maxConnectionsPerIp, log),
) {
  const ioHttp = httpServer(tls, otherRequests, config);
  const cors = new CorsRule(config.corsOrigins); // the rule SSE streams follow too (cors.ts)
  // A handshake takes its place before it is let through (the count may be the primary's, an
  // IPC answer away), and its Engine.IO connection claims it; one that fails on the way
  // (Engine.IO's own checks, a refused upgrade, a client gone) gives it back.
  const taken = new WeakMap<IncomingMessage, { address: string; giveBack: () => void }>();
  const take = (req: IncomingMessage, address: string) => {
    const giveBack = () => {
      if (taken.get(req)?.giveBack !== giveBack) return;
      taken.delete(req);
      req.socket.off('close', giveBack);
      connections.release(address);
    };
    taken.set(req, { address, giveBack });
    req.socket.once('close', giveBack);
  };
  const claim = (req: IncomingMessage): string | null => {
    const place = taken.get(req);
    if (!place) return null;
    taken.delete(req);
    req.socket.off('close', place.giveBack);
    return place.address;
  };
  const io: PushIo = new Server(ioHttp, {
    allowEIO3: true, // socket.io-client 2.x pages
    cors: (req, cb) => {
      const answer = cors.answer(req.headers.origin, isEngineIo3(req as IncomingMessage));
      if (answer.kind !== 'allowed') cb(null, { origin: false }); // refused below, or no Origin
      else cb(null, answer.origin === '*' ? { origin: '*' } : { origin: answer.origin, credentials: true });
    },
    allowRequest: (req, cb) => {
      // CORS does not cover WebSocket: an origin list is enforced on every request.
      if (cors.answer(req.headers.origin).kind === 'refused') return cb('origin not allowed', false);
      // JSONP polling (`j`, socket.io-client 2.x in old browsers) is a script tag: it sends no
      // Origin and reads across origins, so with an origin list it would bypass the list.
      if (cors.isList && new URLSearchParams((req.url ?? '').split('?')[1] ?? '').has('j')) {
        return cb('JSONP polling is refused because CORS_ORIGINS lists origins; use XHR polling or WebSocket', false);
      }
      const isHandshake = !new URLSearchParams((req.url ?? '').split('?')[1] ?? '').has('sid');
      if (!isHandshake) return cb(null, true);
      const address = addressOf(req);
      connections.acquire(address).then(
        (ok) => {
          if (!ok) return cb('too many connections from this address', false);
          take(req, address);
          cb(null, true);
        },
        (err: unknown) => {
          log.warn(`a connection was refused: MAX_CONNECTIONS_PER_IP could not be counted (${err instanceof Error ? err.message : String(err)})`);
          cb('the server could not take the connection; retry', false);
        },
      );
    },
    maxHttpBufferSize: config.maxSocketMessageBytes, // also ws's maxPayload: a bound, no cost per connection
    // Said here because it matters at scale: no permessage-deflate (the engine.io and ws
    // default). On, it keeps a zlib context per connection and deflates every frame, for pushes
    // of a few dozen bytes. Polling answers of 1 KiB or more stay gzip'd (httpCompression's
    // default): they are rare, and the WebSocket path never sees them. docs/performance.md.
    perMessageDeflate: false,
  });
  if (cluster) io.adapter(cluster.adapter); // rooms and broadcasts span the nodes
  // the place its handshake took, given back against the same address when it closes
  io.engine.on('connection', (raw: { request: IncomingMessage; once(event: 'close', fn: () => void): void }) => {
    const address = claim(raw.request);
    if (address !== null) raw.once('close', () => connections.release(address));
  });
  io.engine.on('connection_error', (err: { req: IncomingMessage }) => taken.get(err.req)?.giveBack());
  io.engine.on('connection', (conn: Parameters<typeof boundOutgoing>[0] & { request: IncomingMessage }) => {
    boundOutgoing(conn, config.maxSocketBufferBytes, (bytes) => {
      metrics.slowConnectionCut();
      log.warn(`closed a connection from ${addressOf(conn.request)}: ${bytes} bytes waited to be sent to it (MAX_SOCKET_BUFFER_BYTES)`);
    });
  });
  return { io, ioHttp, connections };
}
