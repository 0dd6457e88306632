// The Socket.IO server of a node, on its own HTTP listener: which requests it accepts (the
// CORS_ORIGINS list, MAX_CONNECTIONS_PER_IP) and how much may wait to be sent to a connection
// (MAX_SOCKET_BUFFER_BYTES). What a connected socket may do is in socket-handlers.ts.
import type { IncomingMessage, RequestListener } from 'node:http';
import { Server } from 'socket.io';
import type { RedisCluster } from './cluster/components.ts';
import type { Config } from './config.ts';
import { ConnectionCounter } from './connection-limit.ts';
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
) {
  const ioHttp = httpServer(tls, otherRequests, config);
  const cors = new CorsRule(config.corsOrigins); // the rule SSE streams follow too (cors.ts)
  const connections = new ConnectionCounter(config.maxConnectionsPerIp, log);
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
      if (isHandshake && !connections.allows(addressOf(req))) {
        return cb('too many connections from this address', false);
      }
      cb(null, true);
    },
    maxHttpBufferSize: config.maxSocketMessageBytes, // also ws's maxPayload: a bound, no cost per connection
    // Said here because it matters at scale: no permessage-deflate (the engine.io and ws
    // default). On, it keeps a zlib context per connection and deflates every frame, for pushes
    // of a few dozen bytes. Polling answers of 1 KiB or more stay gzip'd (httpCompression's
    // default): they are rare, and the WebSocket path never sees them. docs/performance.md.
    perMessageDeflate: false,
  });
  if (cluster) io.adapter(cluster.adapter); // rooms and broadcasts span the nodes
  // resolved once from the handshake request, so the close is counted against the same address
  io.engine.on('connection', (raw: { request: IncomingMessage; once(event: 'close', fn: () => void): void }) => {
    const address = addressOf(raw.request);
    connections.opened(address);
    raw.once('close', () => connections.closed(address));
  });
  io.engine.on('connection', (conn: Parameters<typeof boundOutgoing>[0] & { request: IncomingMessage }) => {
    boundOutgoing(conn, config.maxSocketBufferBytes, (bytes) => {
      metrics.slowConnectionCut();
      log.warn(`closed a connection from ${addressOf(conn.request)}: ${bytes} bytes waited to be sent to it (MAX_SOCKET_BUFFER_BYTES)`);
    });
  });
  return { io, ioHttp, connections };
}
