// What a message status costs in the heap (GET /api/v1/messages/:id): the entry of a push to one
// uid that was stored, delivered and acked; the extra cost of each further uid of a push to many;
// and a broadcast's entry. Compared with what MessageStatus counts against MAX_STATUS_BYTES
// (STATUS_ENTRY_OVERHEAD, STATUS_UID_OVERHEAD), which must not be below what is measured.
// Run: npm run bench:status (node --expose-gc --import tsx bench/status-memory.ts)
import { randomUUID } from 'node:crypto';
import { MessageStatus, STATUS_ENTRY_OVERHEAD, STATUS_UID_OVERHEAD } from '../src/message-status.ts';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

function heap(): number {
  gc!();
  gc!();
  return process.memoryUsage().heapUsed;
}

const N = 100_000;
const HOUR = 3_600_000;

function measure(label: string, fill: (status: MessageStatus, i: number, now: number) => void): { perEntry: number; counted: number } {
  const status = new MessageStatus({ maxBytes: Number.MAX_SAFE_INTEGER, keepMs: HOUR });
  const before = heap();
  const now = Date.now();
  for (let i = 0; i < N; i++) fill(status, i, now);
  const after = heap();
  const perEntry = (after - before) / N;
  const counted = status.stats().bytes / N;
  console.log(`${label}: ${perEntry.toFixed(0)} B measured per entry, ${counted.toFixed(0)} B counted against MAX_STATUS_BYTES`);
  status.close();
  return { perEntry, counted };
}

// ids and uids are made before the first heap reading: in a server each push's own strings add
// about 56 B (an id of 36 characters) and 32 B (a uid of 11), which the counted figure covers
const ids = Array.from({ length: N }, () => randomUUID());
const uids = Array.from({ length: N }, (_, i) => `user-${100000 + i}`); // 11 characters
console.log(`STATUS_ENTRY_OVERHEAD ${STATUS_ENTRY_OVERHEAD} B, STATUS_UID_OVERHEAD ${STATUS_UID_OVERHEAD} B (+2 B per character)`);
const one = measure('push to 1 uid, stored + delivered + acked', (s, i, now) => {
  s.toUids(ids[i]!, now, now + HOUR, [[uids[i]!, 'stored'], [uids[i]!, 'delivered']]);
  s.acked(uids[i]!, ids[i]!, now + HOUR);
});
const ten = measure('push to 10 uids, stored + delivered', (s, i, now) => {
  const list: [string, 'stored' | 'delivered'][] = [];
  for (let j = 0; j < 10; j++) list.push([uids[(i + j) % N]!, 'stored'], [uids[(i + j) % N]!, 'delivered']);
  s.toUids(ids[i]!, now, now + HOUR, list);
});
measure('broadcast (socket count)', (s, i, now) => s.fannedOut(ids[i]!, now, undefined, 3, null));
console.log(`each further uid: ~${((ten.perEntry - one.perEntry) / 9).toFixed(0)} B measured, ${((ten.counted - one.counted) / 9).toFixed(0)} B counted`);
