// Socket.IO event maps and per-socket data, shared by the server, the tests and the SDK.
import type { Server, Socket } from 'socket.io';

/** What a failed request on the socket answers (in an ack or a `login_error` event). */
export interface SocketError {
  code: 'invalid_uid' | 'already_logged_in';
  message: string;
}

export type LoginReply = { ok: true; uid: string } | { ok: false; error: SocketError };

export interface ServerToClientEvents {
  /** A pushed message; from the legacy API, HTML-escaped content. */
  new_msg: (content: string) => void;
  /** `当前<b>U</b>人在线，共打开<b>P</b>个页面` (PROTOCOL.md). */
  update_online_count: (html: string) => void;
  /** A rejected `login` from a client that passed no ack callback. */
  login_error: (error: SocketError) => void;
}

export interface ClientToServerEvents {
  /**
   * Joins the uid's room. The argument is the uid (string or number), or `{uid}`.
   * Untrusted: validated by the handler, whatever the type says.
   */
  login: (uid: unknown, ack?: (reply: LoginReply) => void) => void;
}

export type InterServerEvents = Record<string, never>;

export interface SocketData {
  /** Set by the first valid `login`; undefined for sockets that never logged in. */
  uid?: string;
}

export type PushIo = Server<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
export type PushSocket = Socket<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;

/** The room of a uid's sockets. Prefixed so a uid can never name a socket id's own room. */
export function userRoom(uid: string): string {
  return `uid:${uid}`;
}
