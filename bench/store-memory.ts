// What a stored message costs in each single-node store. The memory store: heap after a full
// GC. The embedded store (LMDB, in a temporary dir): heap and RSS after a full GC, its file on
// disk, and what it counts against MAX_STORE_BYTES; then, with MAX_STORE_BYTES set, how large
// the file gets while the oldest are dropped to stay under it.
// The embedded store keeps nothing per message in the heap, and lmdb's object cache (`cache`)
// is off. File-backed RSS is the file's pages in the page cache (clean, given back under
// memory pressure), and it overstates them: lmdb-js maps the growing file again in larger
// chunks (remapChunks) and keeps the older maps while open, so a page can count in several.
// Run: npm run bench:store (node --expose-gc --import tsx bench/store-memory.ts)
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedMessageStore } from '../src/embedded-store.ts';
import { MemoryMessageStore, type MessageStore, type StoreLimits } from '../src/message-store.ts';
import type { StoredMessage } from '../src/messages.ts';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

/** What delivery.ts adds to the data's JSON size as a stored pair's estimate (STORED_ENTRY_OVERHEAD). */
const ENTRY_OVERHEAD = 450;
/** Adds in flight at once: concurrent writes share one commit and one fsync, as pushes do. */
const IN_FLIGHT = 256;
const MiB = 1024 * 1024;

function limits(maxBytes = Number.MAX_SAFE_INTEGER): StoreLimits {
  return { maxPendingPerUid: 1_000_000, maxBytes, maxScheduled: 1, maxScheduledBytes: 1, maxIdempotencyBytes: 1 };
}

/** A /proc/self/status figure in bytes (Linux); 0 elsewhere. */
function procStatus(name: string): number {
  try {
    const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith(`${name}:`));
    return line === undefined ? 0 : Number(line.split(/\s+/)[1]) * 1024;
  } catch {
    return 0;
  }
}

/**
 * Heap after a full GC, and RSS split in two: anonymous memory (heap, buffers, LMDB's dirty
 * pages) and file pages (LMDB's memory map of its file: the kernel's page cache, given back
 * under memory pressure).
 */
function memory(): { heap: number; anon: number; file: number } {
  gc!();
  gc!();
  return { heap: process.memoryUsage().heapUsed, anon: procStatus('RssAnon'), file: procStatus('RssFile') };
}

/** The i-th message: data parsed from JSON, as a pushed body is (flat strings, not ropes). */
function message(i: number, dataBytes: number, now: number): { message: StoredMessage; estimate: number } {
  const data: unknown = JSON.parse(JSON.stringify({ text: String(i).padStart(dataBytes, 'x'), n: i }));
  const id = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
  return { message: { id, event: 'new_msg', data, ts: now, expiresAt: now + 3_600_000 }, estimate: Buffer.byteLength(JSON.stringify(data)) + ENTRY_OVERHEAD };
}

/**
 * Adds messages `from` to `from + count` (distinct ids), each to `uidsPerMessage` uids (10 000
 * uids in turn), IN_FLIGHT at a time.
 */
async function fill(store: MessageStore, count: number, uidsPerMessage: number, dataBytes: number, from = 0): Promise<void> {
  const now = Date.now();
  let next = from;
  const lane = async () => {
    while (next < from + count) {
      const i = next++;
      const uids = Array.from({ length: uidsPerMessage }, (_, u) => `user-${(i * uidsPerMessage + u) % 10_000}`);
      const { message: m, estimate } = message(i, dataBytes, now);
      await store.add(uids, m, estimate);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
}

async function measureMemory(label: string, count: number, uidsPerMessage: number, dataBytes: number): Promise<void> {
  const store = new MemoryMessageStore(limits());
  const before = memory();
  await fill(store, count, uidsPerMessage, dataBytes);
  const after = memory();
  const pairs = count * uidsPerMessage;
  const stats = await store.stats();
  console.log(
    `memory   | ${label}: ${pairs} pairs, heap ${((after.heap - before.heap) / pairs).toFixed(0)} B each` +
      ` (counted ${(stats.bytes / pairs).toFixed(0)} B each)`,
  );
  await store.close();
}

/** The data file: its length and the blocks it takes (LMDB writes pages; a sparse file is smaller). */
function dataFile(dir: string): { size: number; allocated: number } {
  const stat = statSync(join(dir, 'store.mdb', 'data.mdb'));
  return { size: stat.size, allocated: stat.blocks * 512 };
}

async function withEmbedded(maxBytes: number, body: (store: EmbeddedMessageStore, dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-store-'));
  try {
    const store = new EmbeddedMessageStore(dir, limits(maxBytes));
    try {
      await body(store, dir);
    } finally {
      await store.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function measureEmbedded(label: string, count: number, uidsPerMessage: number, dataBytes: number): Promise<void> {
  await withEmbedded(Number.MAX_SAFE_INTEGER, async (store, dir) => {
    const before = memory();
    const file = dataFile(dir);
    const started = performance.now();
    await fill(store, count, uidsPerMessage, dataBytes);
    const seconds = (performance.now() - started) / 1000;
    const after = memory();
    const grown = dataFile(dir);
    const pairs = count * uidsPerMessage;
    const stats = await store.stats();
    const per = (n: number) => (n / pairs).toFixed(0);
    console.log(
      `embedded | ${label}: ${pairs} pairs in ${seconds.toFixed(1)} s, heap ${per(after.heap - before.heap)} B each,` +
        ` RSS anon +${((after.anon - before.anon) / MiB).toFixed(1)} MiB, file-backed +${((after.file - before.file) / MiB).toFixed(1)} MiB;` +
        ` file ${per(grown.size - file.size)} B each on disk (${(grown.size / MiB).toFixed(1)} MiB, ${(grown.allocated / MiB).toFixed(1)} MiB allocated),` +
        ` counted ${per(stats.bytes)} B each: file / counted ${(grown.size / stats.bytes).toFixed(2)}`,
    );
  });
}

/**
 * With MAX_STORE_BYTES = `maxBytes`, pushes `rounds` times as many bytes as that (counted), the
 * oldest dropped all along, and prints the file's size after each round: LMDB reuses freed
 * pages but never shrinks its file, so the last figure is what the file levels off at.
 */
async function measureBound(label: string, maxBytes: number, dataBytes: number, rounds: number, uidsPerMessage = 1): Promise<void> {
  await withEmbedded(maxBytes, async (store, dir) => {
    const perPair = Buffer.byteLength(JSON.stringify(message(0, dataBytes, 0).message)) + ENTRY_OVERHEAD;
    const perRound = Math.ceil(maxBytes / perPair / uidsPerMessage);
    const sizes: string[] = [];
    const anon: string[] = [];
    const heap: string[] = [];
    for (let round = 0; round < rounds; round++) {
      await fill(store, perRound, uidsPerMessage, dataBytes, round * perRound);
      sizes.push((dataFile(dir).size / maxBytes).toFixed(2));
      const now = memory();
      anon.push((now.anon / MiB).toFixed(0));
      heap.push((now.heap / MiB).toFixed(0));
    }
    const stats = await store.stats();
    console.log(
      `embedded | ${label}: MAX_STORE_BYTES ${(maxBytes / MiB).toFixed(0)} MiB, ${rounds} x ${perRound} pushes, ${stats.messages} pairs kept,` +
        ` counted ${(stats.bytes / MiB).toFixed(1)} MiB; after each round: file / MAX_STORE_BYTES ${sizes.join(' ')};` +
        ` heap MiB ${heap.join(' ')}; RSS anon MiB ${anon.join(' ')}`,
    );
  });
}

await measureMemory('one uid per message, 100 B data', 100_000, 1, 100);
await measureMemory('one uid per message, 1 KiB data', 50_000, 1, 1024);
await measureMemory('one message to 100 uids, 100 B data', 1_000, 100, 100);
await measureEmbedded('one uid per message, 100 B data', 10_000, 1, 100);
await measureEmbedded('one uid per message, 100 B data', 100_000, 1, 100);
await measureEmbedded('one uid per message, 1 KiB data', 50_000, 1, 1024);
await measureEmbedded('one uid per message, 4 KiB data', 10_000, 1, 4096);
await measureEmbedded('one message to 100 uids, 100 B data', 1_000, 100, 100);
await measureBound('100 B data', 16 * MiB, 100, 8);
await measureBound('1 KiB data', 16 * MiB, 1024, 8);
await measureBound('4 KiB data', 16 * MiB, 4096, 8);
await measureBound('100 B data to 100 uids', 16 * MiB, 100, 8, 100);
