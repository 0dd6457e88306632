// Memory per stored message in the in-memory store, measured from the heap after a full GC.
// Run: node --expose-gc --import tsx bench/store-memory.ts
import { MemoryMessageStore } from '../src/message-store.ts';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

function heap(): number {
  gc!();
  gc!();
  return process.memoryUsage().heapUsed;
}

async function measure(label: string, count: number, uidsPerMessage: number, dataBytes: number): Promise<void> {
  const store = new MemoryMessageStore({ maxPendingPerUid: 1_000_000, maxBytes: Number.MAX_SAFE_INTEGER, maxScheduled: 1, maxScheduledBytes: 1, maxIdempotencyBytes: 1 });
  const before = heap();
  const now = Date.now();
  for (let i = 0; i < count; i++) {
    const uids = Array.from({ length: uidsPerMessage }, (_, u) => `user-${(i * uidsPerMessage + u) % 10_000}`);
    // parsed from JSON, as a pushed body is: flat strings, not ropes that share memory
    const data: unknown = JSON.parse(JSON.stringify({ text: String(i).padStart(dataBytes, 'x'), n: i }));
    await store.add(uids, { id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, event: 'new_msg', data, ts: now, expiresAt: now + 3_600_000 }, dataBytes + 200);
  }
  const after = heap();
  const entries = count * uidsPerMessage;
  const stats = await store.stats();
  console.log(
    `${label}: ${entries} stored (uid, message) pairs, ${((after - before) / entries).toFixed(0)} bytes of heap each` +
      ` (data ${dataBytes} B; store's own estimate ${(stats.bytes / entries).toFixed(0)} B each)`,
  );
  await store.close();
}

await measure('one uid per message, 100 B data', 100_000, 1, 100);
await measure('one uid per message, 1 KiB data', 50_000, 1, 1024);
await measure('one message to 100 uids, 100 B data', 1_000, 100, 100);
