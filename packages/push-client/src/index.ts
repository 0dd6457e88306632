// The package's ESM entry: the SDK on the socket.io-client 4.x your app installs beside it
// (a peer dependency: one copy in your bundle, at the version you choose).
import { io } from 'socket.io-client';
import { PushClientCore, type IoFactory, type PushClientOptions } from './client.js';

export type { Handler, IoFactory, IoSocket, PushClientError, PushClientOptions, Status, TokenResult, TopicSpec, TopicTokens } from './client.js';
export { PRIVATE_TOPIC_PREFIX } from './protocol.js';
export type { LoginReply, MessageMeta, PublishReply, SocketError, SubscribeReply } from './protocol.js';

const socketIo: IoFactory = (url, options) => io(url, options);

export interface Options extends PushClientOptions {
  /** Makes the socket; default socket.io-client's `io`. */
  io?: IoFactory;
}

export class PushClient extends PushClientCore {
  constructor(url: string, options: Options = {}) {
    super(url, { ...options, io: options.io ?? socketIo });
  }
}

/** `connect(url, {uid, getToken})`: a client, connecting now. */
export function connect(url: string, options: Options = {}): PushClient {
  return new PushClient(url, options);
}
