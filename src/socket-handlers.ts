// What a socket may do: `login` (join the uid's room, count the page) and, on disconnect,
// give the page back. PROTOCOL.md "Client events".
import { userRoom, type LoginReply, type PushIo, type PushSocket, type SocketError } from './events.ts';
import type { Logger } from './log.ts';
import { formatOnlineCount } from './online-count.ts';
import type { Presence } from './presence.ts';

/** Longest uid accepted, in characters. */
export const MAX_UID_LENGTH = 256;

/** The uid from a `login` argument: a string, a finite number, or `{uid}` holding one. */
export function parseUid(raw: unknown): string | SocketError {
  const value =
    typeof raw === 'object' && raw !== null && 'uid' in raw ? (raw as { uid: unknown }).uid : raw;
  let uid: string;
  if (typeof value === 'string') uid = value;
  else if (typeof value === 'number' && Number.isFinite(value)) uid = String(value);
  else return { code: 'invalid_uid', message: 'uid must be a string or a number' };
  if (uid === '') return { code: 'invalid_uid', message: 'uid must not be empty' };
  if (uid.length > MAX_UID_LENGTH) {
    return { code: 'invalid_uid', message: `uid must be at most ${MAX_UID_LENGTH} characters` };
  }
  return uid;
}

export function registerSocketHandlers(io: PushIo, presence: Presence, log: Logger): void {
  io.on('connection', (socket) => {
    socket.on('login', (raw, ack) => {
      login(socket, raw, typeof ack === 'function' ? ack : undefined).catch((err: unknown) =>
        log.error('login failed', err),
      );
    });
    socket.on('disconnect', () => {
      const uid = socket.data.uid;
      if (uid === undefined) return;
      presence.removePage(uid, socket.id).catch((err: unknown) => log.error('logout failed', err));
    });
  });

  async function login(
    socket: PushSocket,
    raw: unknown,
    ack: ((reply: LoginReply) => void) | undefined,
  ): Promise<void> {
    if (socket.data.uid !== undefined) {
      // PROTOCOL.md: a second login on the same socket is ignored. Only an ack is told.
      ack?.({
        ok: false,
        error: { code: 'already_logged_in', message: `already logged in as ${socket.data.uid}` },
      });
      return;
    }
    const uid = parseUid(raw);
    if (typeof uid !== 'string') {
      if (ack) ack({ ok: false, error: uid });
      else socket.emit('login_error', uid);
      return;
    }
    // Set before the first await, so a disconnect that comes meanwhile gives the page back.
    socket.data.uid = uid;
    socket.join(userRoom(uid));
    await presence.addPage(uid, socket.id);
    const counts = await presence.counts();
    socket.emit('update_online_count', formatOnlineCount(counts));
    ack?.({ ok: true, uid });
  }
}
