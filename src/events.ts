// Socket.IO event maps and per-socket data, shared by the server, the tests and the SDK.
import type { Server, Socket } from 'socket.io';
import type { LoginReply, PublishReply, SocketError, SubscribeReply } from '../packages/push-client/src/protocol.ts';
import type { StatusSnapshot } from './message-status.ts';

// The replies and meta a page sees are declared in the client SDK's package, which ships them
// as its types: the server answers with exactly those.
export type { LoginReply, MessageMeta, PublishReply, SocketError, SubscribeReply } from '../packages/push-client/src/protocol.ts';

export interface ServerToClientEvents {
  /** A pushed message: always HTML-escaped text (the legacy API, or a v1 push naming new_msg). */
  new_msg: (content: string) => void;
  /** `当前<b>U</b>人在线，共打开<b>P</b>个页面` (docs/protocol.md §3). */
  update_online_count: (html: string) => void;
  /** A rejected `login` from a client that passed no ack callback. */
  login_error: (error: SocketError) => void;
  /** Any other refused event from a client that passed no ack callback (e.g. rate_limited). */
  request_error: (error: SocketError & { event: string }) => void;
}

/** Arguments from clients are untrusted: typed unknown and validated by the handlers. */
export interface ClientToServerEvents {
  /**
   * Joins the uid's room. The argument is the uid (string or number), or `{uid, token}`;
   * with LOGIN_SECRET the token may also come in the handshake (`auth.token`, or `?token=`).
   */
  login: (uid: unknown, ack?: (reply: LoginReply) => void) => void;
  /** Joins topics: a name, `{topic, token}` (private- topics need a token), or a list of them. */
  subscribe: (topics: unknown, ack?: (reply: SubscribeReply) => void) => void;
  unsubscribe: (topics: unknown, ack?: (reply: SubscribeReply) => void) => void;
  /**
   * `{topic, data, echo?}`: sends `data` to the topic's other subscribers as event `message`
   * (CLIENT_PUBLISH_TOPICS); `echo: true` sends it to this socket too.
   */
  publish: (message: unknown, ack?: (reply: PublishReply) => void) => void;
}

/** Between the nodes of a cluster (the Redis adapter's serverSideEmit). */
export interface InterServerEvents {
  /**
   * A node is connected to Redis again after an outage: its live emits to pages on other
   * nodes may have been lost meanwhile, so every node sends its logged-in pages their stored
   * messages again.
   */
  catch_up: () => void;
  /** What this node saw of message `id` (GET /api/v1/messages/:id on another node), or null. */
  message_status: (id: string, reply: (snapshot: StatusSnapshot | null) => void) => void;
  /** Sockets of this node in `room` (null: all), for the status of a broadcast or topic push. */
  count_sockets: (room: string | null, reply: (sockets: number) => void) => void;
  /** The admin page's figures of this node (admin/peers.ts): checked by the asking node. */
  admin_summary: (reply: (summary: unknown) => void) => void;
  /** This node's last hour of admin samples. */
  admin_history: (reply: (history: unknown) => void) => void;
  /** This node's pages of a uid by transport, and its recent webhook events. */
  admin_uid: (uid: string, reply: (answer: unknown) => void) => void;
}

export interface SocketData {
  /** Set by the first valid `login`; undefined for sockets that never logged in. */
  uid?: string;
  /** With LOGIN_SECRET: topics this socket proved a publish right for (a publishToken at subscribe). */
  publishRights?: Set<string>;
}

export type PushIo = Server<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
export type PushSocket = Socket<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
