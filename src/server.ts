// Composition root: createServer(config, components) wires the listeners and components
// and returns a handle with the bound ports and close(). A push goes:
//   http-api.ts -> legacy-api.ts (legacy) or push-api.ts (/api/v1) -> delivery.ts
//   -> Socket.IO rooms joined in socket-handlers.ts, and message-store.ts for stored ones
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { Server } from 'socket.io';
import type { Config } from './config.ts';
import { Delivery } from './delivery.ts';
import type { PushIo } from './events.ts';
import { createApiApp } from './http-api.ts';
import { consoleLogger, type Logger } from './log.ts';
import { OnlineCountBroadcaster } from './online-count.ts';
import { MemoryMessageStore, type MessageStore } from './message-store.ts';
import { MemoryPresence, type Presence } from './presence.ts';
import { PushApi } from './push-api.ts';
import { Scheduler } from './scheduler.ts';
import { registerSocketHandlers } from './socket-handlers.ts';
import { demoHandler } from './web.ts';

/** Swappable parts; in-memory defaults. */
export interface Components {
  presence?: Presence;
  store?: MessageStore;
  log?: Logger;
}

export interface ServerHandle {
  ports: { io: number; api: number; web: number | null };
  io: PushIo;
  /** Stops accepting, disconnects every socket, lets requests finish; idempotent. */
  close(): Promise<void>;
}

/** A listener that could not start; its message is the one line to show. */
export class StartupError extends Error {
  override name = 'StartupError';
}

function listen(server: HttpServer, port: number, host: string, setting: string): Promise<number> {
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

function closeHttp(server: HttpServer): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}

export async function createServer(config: Config, components: Components = {}): Promise<ServerHandle> {
  const log = components.log ?? consoleLogger;
  const presence = components.presence ?? new MemoryPresence();
  const store =
    components.store ??
    new MemoryMessageStore({
      maxPendingPerUid: config.maxPendingPerUid,
      maxBytes: config.maxStoreBytes,
      maxScheduled: config.maxScheduled,
    });

  const ioHttp = createHttpServer((_req, res) => {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
  });
  const allowed = config.corsOrigins === '*' ? null : new Set(config.corsOrigins);
  const io: PushIo = new Server(ioHttp, {
    allowEIO3: true, // socket.io-client 2.x pages
    cors: { origin: allowed === null ? true : [...allowed], credentials: true },
    // CORS does not cover WebSocket: an origin list is enforced on every request.
    allowRequest: (req, cb) => {
      const origin = req.headers.origin;
      cb(null, allowed === null || origin === undefined || allowed.has(origin));
    },
    maxHttpBufferSize: config.maxSocketMessageBytes,
  });
  const delivery = new Delivery(io, presence, store, config.ackTimeoutMs, log);
  registerSocketHandlers(io, { presence, delivery, maxTopicsPerSocket: config.maxTopicsPerSocket, log });
  const pushApi = new PushApi(delivery, store, config);
  const api = createApiApp({ delivery, pushApi, maxBodyBytes: config.maxBodyBytes, log });
  const apiHttp = createHttpServer(api.callback());
  let webHttp: HttpServer | null = null;

  const listening: HttpServer[] = [];
  let ports: ServerHandle['ports'];
  try {
    const ioPort = await listen(ioHttp, config.ioPort, config.host, 'IO_PORT');
    listening.push(ioHttp);
    const apiPort = await listen(apiHttp, config.apiPort, config.host, 'API_PORT');
    listening.push(apiHttp);
    let webPort: number | null = null;
    if (config.webPort !== null) {
      webHttp = createHttpServer(await demoHandler({ io: ioPort, api: apiPort }));
      webPort = await listen(webHttp, config.webPort, config.host, 'WEB_PORT');
      listening.push(webHttp);
    }
    ports = { io: ioPort, api: apiPort, web: webPort };
  } catch (err) {
    io.engine.close();
    await Promise.all(listening.map(closeHttp));
    await Promise.all([presence.close(), store.close()]);
    throw err;
  }

  // Each node tells its own sockets (io.local), so a cluster does not multiply broadcasts.
  const counter = new OnlineCountBroadcaster(
    presence,
    (html) => io.local.emit('update_online_count', html),
    config.onlineCountIntervalMs,
    log,
  );
  const scheduler = new Scheduler(store, delivery, log);

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      counter.close();
      scheduler.close();
      const servers = [ioHttp, apiHttp, ...(webHttp ? [webHttp] : [])];
      const cut = setTimeout(() => servers.forEach((s) => s.closeAllConnections()), config.shutdownTimeoutMs);
      cut.unref();
      await Promise.all([
        new Promise<void>((resolve) => io.close(() => resolve())),
        closeHttp(apiHttp),
        ...(webHttp ? [closeHttp(webHttp)] : []),
      ]);
      clearTimeout(cut);
      await Promise.all([presence.close(), store.close()]);
    })();
    return closing;
  };

  return { ports, io, close };
}
