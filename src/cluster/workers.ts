// WORKERS=n: n server processes on one machine sharing the ports. The primary process owns
// the Socket.IO port and hands each connection to a worker by its Engine.IO session id
// (sticky-primary.ts; the workers take them with @socket.io/sticky's setupWorker), so
// long-polling requests of one client always reach the same worker. The workers listen on the
// push API and web ports themselves (Node's cluster module shares them) and share rooms,
// presence and stored messages through Redis.
import cluster, { type Worker } from 'node:cluster';
import { createServer as createNetServer } from 'node:net';
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import { StartupError } from '../listeners.ts';
import { stopReadingForHandOver } from './node-internals.ts';
import { SharedLimitsHost } from './shared-limits.ts';
import { HAND_OVER_LIMITS, StickyPrimary } from './sticky-primary.ts';

/** The environment variable a worker reads the primary's Socket.IO port from. */
export const STICKY_IO_PORT_ENV = 'PUSH_STICKY_IO_PORT';

/** What a worker tells the primary once it serves. */
export interface WorkerReady {
  type: 'push:ready';
  ports: { io: number; api: number; web: number | null };
}

export function isWorkerReady(message: unknown): message is WorkerReady {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === 'push:ready';
}

export interface Primary {
  ports: WorkerReady['ports'];
  /** Stops every worker gracefully (SIGTERM), then the Socket.IO listener. */
  close(): Promise<void>;
}

export async function startPrimary(config: Config, log: Logger): Promise<Primary> {
  // Under a burst of 5000 connections, handing a connection over while it was still read lost
  // the client's first frame after the upgrade answer: a 2.x page's login (about 1 in 7000) or a
  // 4.x client's namespace connect (about 1 in 20 000). So each connection stops reading first.
  const stopReading = await stopReadingForHandOver(log);
  // only workers that have said they serve take connections: a replacement still starting has
  // no server to take one yet
  const serving = new Set<Worker>();
  const sticky = new StickyPrimary(() => [...serving], stopReading, { ...HAND_OVER_LIMITS, headTimeoutMs: config.headersTimeoutMs, maxBodyBytes: config.maxSocketMessageBytes }, log);
  const io = createNetServer({ allowHalfOpen: true }, sticky.connection);
  // MAX_CONNECTIONS_PER_IP and the signatures remembered against replay, for every worker
  const limits = new SharedLimitsHost(config, log);
  const ioPort = await new Promise<number>((resolve, reject) => {
    io.once('error', (err: NodeJS.ErrnoException) => {
      sticky.close();
      limits.close();
      reject(new StartupError(`IO_PORT ${config.ioPort} on ${config.host}: ${err.code === 'EADDRINUSE' ? 'port is already in use' : err.message}`));
    });
    io.listen(config.ioPort, config.host, () => resolve((io.address() as { port: number }).port));
  });

  // the first request bytes travel to the worker with the socket: Buffers must survive IPC
  cluster.setupPrimary({ serialization: 'advanced' });
  let closing = false;
  const fork = (): Worker => {
    const worker = cluster.fork({ [STICKY_IO_PORT_ENV]: String(ioPort) });
    worker.on('message', (message: unknown) => {
      if (isWorkerReady(message)) serving.add(worker);
    });
    worker.on('exit', (code, signal) => {
      serving.delete(worker);
      if (closing) return;
      log.error(`worker ${worker.process.pid} exited (${signal ?? `code ${code}`}); starting another`);
      fork();
    });
    return worker;
  };

  // every worker must come up once; a worker that fails at start fails the start
  const workers = Array.from({ length: config.workers }, fork);
  const ready = await Promise.all(
    workers.map(
      (worker) =>
        new Promise<WorkerReady>((resolve, reject) => {
          const onExit = (code: number | null) =>
            reject(new StartupError(`a worker could not start (exit code ${code}); its error is above`));
          worker.once('exit', onExit);
          worker.on('message', (message: unknown) => {
            if (!isWorkerReady(message)) return;
            worker.off('exit', onExit);
            resolve(message);
          });
        }),
    ),
  ).catch(async (err: unknown) => {
    closing = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGKILL');
    sticky.close();
    limits.close();
    await new Promise<void>((resolve) => io.close(() => resolve()));
    throw err;
  });

  return {
    ports: ready[0]!.ports,
    close: async () => {
      closing = true;
      const live = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
      await Promise.all(
        live.map((w) => new Promise<void>((resolve) => (w.once('exit', () => resolve()), w.kill('SIGTERM')))),
      );
      sticky.close();
      limits.close();
      await new Promise<void>((resolve) => io.close(() => resolve()));
    },
  };
}
