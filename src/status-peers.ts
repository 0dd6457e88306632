// The other nodes of a cluster as the message status sees them, through the Redis adapter's
// serverSideEmit: a status query asks each node for what it saw of a message, and a broadcast
// or topic push asks each node how many of its sockets the emit reached.
import type { PushIo } from './events.ts';
import { isSnapshotOf, type MessageStatus, type StatusPeers } from './message-status.ts';

/**
 * Answers the other nodes' questions from `status`, and asks them. A node that does not answer
 * within the adapter's requestsTimeout (5 s) is left out (the answer says `incomplete`).
 */
export function statusPeers(io: PushIo, status: MessageStatus): StatusPeers {
  io.on('message_status', (id, reply) => {
    if (typeof id === 'string' && typeof reply === 'function') reply(status.local(id));
  });
  io.on('count_sockets', (room, reply) => {
    if (typeof reply !== 'function') return;
    const nsp = io.of('/');
    reply(room === null ? nsp.sockets.size : typeof room === 'string' ? (nsp.adapter.rooms.get(room)?.size ?? 0) : 0);
  });
  return {
    snapshots: (id) =>
      new Promise((resolve) => {
        // partial replies come with the timeout's error: what answered is used, marked incomplete
        io.serverSideEmit('message_status', id, (err: Error | null, replies: unknown[]) => {
          resolve({ snapshots: (replies ?? []).filter(isSnapshotOf(id)), complete: !err });
        });
      }),
    countSockets: (room) =>
      new Promise((resolve) => {
        io.serverSideEmit('count_sockets', room, (_err: Error | null, replies: unknown[]) => {
          resolve((replies ?? []).reduce<number>((sum, n) => sum + (typeof n === 'number' ? n : 0), 0));
        });
      }),
  };
}
