// A WORKERS worker's side of the Socket.IO port: it takes the connections the primary hands
// over (@socket.io/sticky's setupWorker: the socket with the bytes the primary read) and names
// each Engine.IO session after itself, so the primary sends every later request of a session
// here from its id alone. A map the worker fills by IPC came after the session's first answer:
// a polling client's next request, sent at once, could reach the primary first and go to
// another worker, which answered 400 (unknown session).
import { setupWorker } from '@socket.io/sticky';
import cluster from 'node:cluster';
import { randomBytes } from 'node:crypto';
import type { PushIo } from '../events.ts';

/** `<worker id>-<20 characters of base64url>`, as an Engine.IO session id. */
const SESSION = /[?&]sid=(\d{1,9})-[\w-]{20}(?:&|$)/;

/** The id of the worker whose session the request target names, if it names one. */
export function workerOfTarget(target: string): number | null {
  const id = SESSION.exec(target)?.[1];
  return id === undefined ? null : Number(id);
}

/** Takes handed-over connections into `io`; session ids name this worker. */
export function serveHandedOver(io: PushIo): void {
  const worker = cluster.worker;
  if (!worker) throw new Error('serveHandedOver() runs in a cluster worker');
  setupWorker(io as unknown as Parameters<typeof setupWorker>[0]);
  // Engine.IO's own ids are 15 random bytes in base64 as well
  io.engine.generateId = () => `${worker.id}-${randomBytes(15).toString('base64url')}`;
}
