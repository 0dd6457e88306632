// The one place that reaches into Node's private parts, where no public way exists. Each use
// is checked once at start on a real connection; where the check fails (a Node that changed),
// one line is logged and the public fallback is used.
import { once } from 'node:events';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import type { Logger } from '../log.ts';

/** Stops a socket reading from the kernel now, before it is handed to another process. */
export type StopReading = (socket: Socket) => void;

/** The libuv stream handle behind a net.Socket (Node's `socket._handle`), as far as used here. */
interface StreamHandle {
  /** Node's own note of whether it started the handle reading. */
  reading: boolean;
  readStop(): number;
}

function handleOf(socket: Socket): StreamHandle | null {
  const handle: unknown = (socket as unknown as { _handle?: unknown })._handle;
  if (typeof handle !== 'object' || handle === null) return null;
  const h = handle as Partial<StreamHandle>;
  return typeof h.readStop === 'function' && typeof h.reading === 'boolean' ? (handle as StreamHandle) : null;
}

/**
 * socket.pause() only stops delivering: the handle goes on reading from the kernel until the
 * stream's buffer is full, and Node's send() of a socket to another process turns the handle's
 * reads into no-ops until the handle is closed after the IPC write. Bytes a client sends in that
 * window are read by this process and thrown away. readStop() leaves them in the kernel for the
 * process that takes the socket. `reading` stays true, so Node does not start the handle again
 * (its stream calls readStart() only when it believes the handle stopped): for a socket that is
 * handed over next, which may wait in Node's queue of handles for the worker to take the one
 * before. This process never reads it again.
 */
function stopReadingNow(socket: Socket): void {
  socket.pause();
  handleOf(socket)?.readStop();
}

/** The public fallback: stops delivering; the handle may read a little more. */
function pauseOnly(socket: Socket): void {
  socket.pause();
}

/**
 * Whether stopReadingNow() works on this Node: on a real loopback connection, a byte the peer
 * sends after the stop is not read (neither delivered nor buffered). Null when it works, else
 * what failed.
 */
async function checkStopReading(): Promise<string | null> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
  try {
    const [accepted] = (await once(server, 'connection')) as [Socket];
    if (!handleOf(accepted)) return 'a socket has no _handle with readStop() and reading';
    const read: string[] = [];
    accepted.on('data', (chunk: Buffer) => read.push(chunk.toString('latin1')));
    stopReadingNow(accepted);
    await new Promise<void>((resolve, reject) => client.write('x', (err) => (err ? reject(err) : resolve())));
    // a few turns of the event loop: a handle still reading would have read the byte by then
    await new Promise((resolve) => setTimeout(resolve, 20));
    const problem = read.length > 0 || accepted.readableLength > 0 ? '_handle.readStop() did not stop reading' : null;
    accepted.destroy();
    return problem;
  } finally {
    client.destroy();
    server.close();
  }
}

/**
 * How the WORKERS primary stops reading a connection it hands over: readStop() on Node's
 * handle when the check passes, else socket.pause() with one warning.
 */
export async function stopReadingForHandOver(log: Logger): Promise<StopReading> {
  let problem: string | null;
  try {
    problem = await checkStopReading();
  } catch (err) {
    problem = err instanceof Error ? err.message : String(err);
  }
  if (problem === null) return stopReadingNow;
  log.warn(
    `node internals: ${problem}; the WORKERS primary falls back to socket.pause(), ` +
      'and a client may lose what it sends while its connection is handed to a worker',
  );
  return pauseOnly;
}
