// The admin page's questions to the other nodes of a cluster, over the Redis adapter's
// serverSideEmit, and this node's answers to theirs. Replies are data from the network:
// checked before they are summed or shown. A node that does not answer within the adapter's
// requestsTimeout (5 s) is left out, and the answer says it is incomplete.
import type { PushIo } from '../events.ts';
import { userRoom } from '../names.ts';
import { isHistoryJson, type HistoryJson } from './history.ts';
import type { NodeStats, NodeSummary, WebhookFailure, WebhookRecord } from './node-stats.ts';
import type { AdminPeers, NodeUid, Transports } from './view.ts';

/** This node's pages of `uid` by transport: its sockets in the uid's room, the rest SSE streams. */
export function localTransports(io: PushIo, uid: string): Transports {
  const nsp = io.of('/');
  const counts: Transports = { websocket: 0, polling: 0, sse: 0 };
  for (const id of nsp.adapter.rooms.get(userRoom(uid)) ?? []) {
    const socket = nsp.sockets.get(id);
    if (!socket) counts.sse++; // SSE streams are members of the rooms under ids of their own
    else if (socket.conn.transport.name === 'websocket') counts.websocket++;
    else counts.polling++;
  }
  return counts;
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;

function isFailure(v: unknown): v is WebhookFailure {
  const f = v as WebhookFailure;
  return typeof v === 'object' && v !== null && isString(f.time) && isString(f.type) && isString(f.uid) && isString(f.error);
}

function isSummary(v: unknown): v is NodeSummary {
  const s = v as NodeSummary;
  return typeof v === 'object' && v !== null && isCount(s.pushes) && isCount(s.pushesPerSecond) && Array.isArray(s.webhookFailures) && s.webhookFailures.length <= 100 && s.webhookFailures.every(isFailure);
}

function isRecord(v: unknown): v is WebhookRecord {
  const r = v as WebhookRecord;
  return typeof v === 'object' && v !== null && isString(r.time) && isString(r.type) && isString(r.uid) && ['sent', 'failed', 'dropped'].includes(r.outcome) && (r.detail === undefined || isString(r.detail));
}

function isNodeUid(v: unknown): v is NodeUid {
  const n = v as NodeUid;
  return typeof v === 'object' && v !== null && typeof n.transports === 'object' && n.transports !== null &&
    isCount(n.transports.websocket) && isCount(n.transports.polling) && isCount(n.transports.sse) &&
    Array.isArray(n.webhookEvents) && n.webhookEvents.every(isRecord);
}

/** Answers the other nodes' admin questions from `stats` and this node's sockets, and asks them. */
export function adminPeers(io: PushIo, stats: NodeStats): AdminPeers {
  io.on('admin_summary', (reply) => {
    if (typeof reply === 'function') reply(stats.summary());
  });
  io.on('admin_history', (reply) => {
    if (typeof reply === 'function') reply(stats.history.toJSON());
  });
  io.on('admin_uid', (uid, reply) => {
    if (typeof uid === 'string' && typeof reply === 'function') reply({ transports: localTransports(io, uid), webhookEvents: stats.webhookEventsOf(uid) });
  });
  const ask = <T>(check: (v: unknown) => v is T, emit: (done: (err: Error | null, replies: unknown[]) => void) => void) =>
    new Promise<{ replies: T[]; complete: boolean }>((resolve) => {
      // partial replies come with the timeout's error: what answered is used, marked incomplete
      emit((err, replies) => resolve({ replies: (replies ?? []).filter(check), complete: !err }));
    });
  return {
    summaries: () => ask(isSummary, (done) => io.serverSideEmit('admin_summary', done)),
    histories: () => ask<HistoryJson>(isHistoryJson, (done) => io.serverSideEmit('admin_history', done)),
    uid: (uid) => ask(isNodeUid, (done) => io.serverSideEmit('admin_uid', uid, done)),
  };
}
