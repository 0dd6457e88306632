// The plain script's entry (an IIFE defining the global `PushClient`): it drives the page's
// global `io`, the socket.io-client that the Socket.IO server serves at /socket.io/socket.io.js
// (load that first), so the script stays small and the client matches the server's version.
import { PushClientCore, type IoFactory, type PushClientOptions } from './client.js';

export { PRIVATE_TOPIC_PREFIX } from './protocol.js';

export interface Options extends PushClientOptions {
  /** Makes the socket; default the page's global `io`. */
  io?: IoFactory;
}

export class PushClient extends PushClientCore {
  constructor(url: string, options: Options = {}) {
    const io = options.io ?? (globalThis as { io?: IoFactory }).io;
    if (!io) throw new Error('PushClient needs socket.io-client: load /socket.io/socket.io.js first');
    super(url, { ...options, io });
  }
}

/** `PushClient.connect(url, {uid})` in a page. */
export function connect(url: string, options: Options = {}): PushClient {
  return new PushClient(url, options);
}
