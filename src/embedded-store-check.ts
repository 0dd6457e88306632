// Damage to the embedded store, found before the server opens it. LMDB trusts its file: a page
// overwritten, a file cut short or a byte flipped in a tree makes it fail an assertion (SIGABRT),
// read past the file's end (SIGBUS) or follow a bad pointer (SIGSEGV), and the process dies at
// once, before any handler runs, and again at each restart. So before the server opens its
// LMDB files (the lock's, owner.mdb, as well as the store's):
// - checkDataFile() reads the two meta pages in this process: not an LMDB file, a bad page
//   size, a file shorter than its pages, a root page out of it;
// - checkStore() walks every record of every database in a child process (this module run as
//   a program): a native crash there ends the child only, and it is reported as damage. The
//   walk checks each stored message's and scheduled push's checksum (LMDB keeps none: a byte
//   flipped in a value is served as it is) and that the indexes and counters agree. It stops
//   at a time budget: a store too large to walk in it is opened with the rest unchecked.
// The records' layout and their checksums are declared here, once, for the store and the walk.
import { spawnSync } from 'node:child_process';
import { closeSync, fstatSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import { open, type Database, type Key, type RootDatabase } from 'lmdb';
import { idempotencyKeyBytes } from './message-store.ts';
import type { KeptAnswer, StoredMessage } from './messages.ts';

/** A stored (uid, message) pair, in push order: `order` is keyed by a sequence number. */
export type OrderEntry = [uid: string, id: string, expiresAt: number, bytes: number];
export interface HeldKey {
  until: number;
  result: KeptAnswer | null;
}
export interface Waiting {
  /** When it is due: for a claimed push, its lease's end. */
  at: number;
  json: string;
  /** crc32 of json; absent in what earlier versions wrote. */
  sum?: number;
  /** Claims made on it (claimDue), absent before the first. */
  claims?: number;
  /** The claim it is under, absent when none. */
  claim?: string;
}
/** What stats() counts, kept in the same transactions as the data. */
export interface Counters {
  seq: number;
  messages: number;
  bytes: number;
  keyBytes: number;
  scheduled: number;
  scheduledBytes: number;
}
export const NO_COUNTERS: Counters = { seq: 0, messages: 0, bytes: 0, keyBytes: 0, scheduled: 0, scheduledBytes: 0 };

/** The store's databases, as the store and the walk open them. */
export interface StoreDatabases {
  /** [uid, seq] -> messageRecord(): crc32 in 8 hex digits, then the message's JSON */
  messages: Database<string, [string, number]>;
  /** [uid, id] -> seq */
  byId: Database<number, [string, string]>;
  /** uid -> how many pairs it has, so the per-uid bound reads no queue */
  perUid: Database<number, string>;
  /** seq -> the pair: the first is the oldest */
  order: Database<OrderEntry, number>;
  /** [expiresAt, seq] -> true */
  expiries: Database<true, [number, number]>;
  keys: Database<HeldKey, string>;
  /** [until, id] -> true; an entry whose key has a later until is stale and skipped */
  keyExpiries: Database<true, [number, string]>;
  waiting: Database<Waiting, string>;
  /** [at, id] -> true */
  due: Database<true, [number, string]>;
  meta: Database<Counters, string>;
}

export function openDatabases(root: RootDatabase): StoreDatabases {
  const sub = <V, K extends Key>(name: string, encoding?: 'string') => root.openDB<V, K>(name, encoding ? { encoding } : {});
  return {
    messages: sub('messages', 'string'),
    byId: sub('byId'),
    perUid: sub('perUid'),
    order: sub('order'),
    expiries: sub('expiries'),
    keys: sub('keys'),
    keyExpiries: sub('keyExpiries'),
    waiting: sub('waiting'),
    due: sub('due'),
    meta: sub('meta'),
  };
}

function hex(sum: number): string {
  return sum.toString(16).padStart(8, '0');
}

/** The checksum of a record's JSON: crc32 (zlib's, in C; about 1 µs for 1 KiB). */
export function checksum(json: string): number {
  return crc32(json);
}

/** A stored message's record: its JSON after its crc32 (a JSON object never starts with a hex digit). */
export function messageRecord(json: string): string {
  return hex(checksum(json)) + json;
}

/** The message a record holds, or null when it fails its checksum or does not parse. */
export function readMessageRecord(record: string): StoredMessage | null {
  // what earlier versions wrote: the JSON alone
  const json = record.startsWith('{') ? record : record.slice(8);
  if (json !== record && record.slice(0, 8) !== hex(checksum(json))) return null;
  try {
    return JSON.parse(json) as StoredMessage;
  } catch {
    return null;
  }
}

/** Whether a scheduled push's JSON is what was written (earlier versions kept no sum). */
export function waitingIntact(waiting: Waiting): boolean {
  return typeof waiting.json === 'string' && (waiting.sum === undefined || waiting.sum === checksum(waiting.json));
}

/** LMDB's magic number, at META_MAGIC_AT in each of the two meta pages the file starts with. */
const META_MAGIC = 0xbeefc0de;
const META_MAGIC_AT = 24;
/** Where a meta page keeps the page size (the free list's md_pad). */
const PAGE_SIZE_AT = 48;
/** The two databases' root pages (free list, main), the last page used and the txn id, in a meta page. */
const FREE_ROOT_AT = 88;
const MAIN_ROOT_AT = 136;
const LAST_PAGE_AT = 144;
const TXN_ID_AT = 152;
/** No page: an empty database's root. */
const P_INVALID = 0xffffffffffffffffn;

/**
 * The meta pages, read without LMDB: the damage it would crash on before any walk could run.
 * Null when the file is whole as far as they tell, or missing or empty (a new store).
 */
export function checkDataFile(path: string): string | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null; // a new store
    throw err;
  }
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return null; // created, never written: LMDB initialises it
    const head = Buffer.alloc(LAST_PAGE_AT + 16);
    readSync(fd, head, 0, head.length, 0);
    const pageSize = head.readUInt32LE(PAGE_SIZE_AT);
    if (head.readUInt32LE(META_MAGIC_AT) !== META_MAGIC) return 'not an LMDB file';
    if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0 || size < 2 * pageSize) return 'bad page size';
    const second = Buffer.alloc(head.length);
    readSync(fd, second, 0, second.length, pageSize);
    if (second.readUInt32LE(META_MAGIC_AT) !== META_MAGIC) return 'second meta page damaged';
    // LMDB opens the meta page of the later transaction; its pages are written before it
    const meta = second.readBigUInt64LE(TXN_ID_AT) > head.readBigUInt64LE(TXN_ID_AT) ? second : head;
    const pages = BigInt(Math.floor(size / pageSize));
    const last = meta.readBigUInt64LE(LAST_PAGE_AT);
    if (last >= pages) return `cut short: ${size} bytes, its pages need ${(last + 1n) * BigInt(pageSize)}`;
    for (const at of [FREE_ROOT_AT, MAIN_ROOT_AT]) {
      const root = meta.readBigUInt64LE(at);
      if (root !== P_INVALID && (root < 2n || root > last)) return 'a root page out of the file';
    }
    return null;
  } finally {
    closeSync(fd);
  }
}

/** What the walk found; `records` walked, all of them when `complete`. */
export interface CheckResult {
  damage: string | null;
  /** The file with the damage, null when none was found. */
  file: string | null;
  records: number;
  complete: boolean;
  ms: number;
}

/** The lock's LMDB file (embedded-store-lock.ts), walked too: LMDB crashes on it as on the store. */
function walkOwner(path: string): string | null {
  const env = open({ path, noSubdir: true, readOnly: true, maxDbs: 1 });
  try {
    for (const { value } of env.getRange()) {
      if (typeof (value as { pid?: unknown } | undefined)?.pid !== 'number') return 'its owner record is damaged';
    }
    return null;
  } catch (err) {
    return `LMDB cannot read it: ${err instanceof Error ? err.message : String(err)}`;
  } finally {
    void env.close();
  }
}

/** Walks the store read-only until `deadline` (ms since the epoch); the first damage found ends it. */
export function walkStore(storeDir: string, deadline: number): CheckResult {
  const started = Date.now();
  const root = open({ path: storeDir, noSubdir: false, readOnly: true, maxDbs: 16 });
  let records = 0;
  const file = join(storeDir, 'data.mdb');
  const result = (damage: string | null, complete: boolean): CheckResult => ({ damage, file: damage === null ? null : file, records, complete, ms: Date.now() - started });
  /** Counts a record; false once the time is up (checked every 256 records). */
  const more = () => (++records & 255) !== 0 || Date.now() < deadline;
  try {
    const db = openDatabases(root);
    // read-only, a database not made yet is undefined: a store being made by a server starting
    // now (this check runs before the lock), or by one that stopped before its first write
    // (the main database names them: one it names that does not open is damage)
    const missing = Object.entries(db as Partial<StoreDatabases>).filter(([, d]) => d === undefined).map(([name]) => name);
    if (missing.length > 0) {
      const named = new Set<unknown>(root.getKeys());
      const lost = missing.filter((name) => named.has(name));
      if (lost.length > 0 || named.size !== (root.getStats() as { entryCount: number }).entryCount) return result(`its list of databases is damaged (${lost.join(', ') || 'count'})`, false);
      if (db.meta?.get('counters') !== undefined && missing.some((name) => name !== 'meta')) return result(`its database ${missing.join(', ')} is missing`, false);
      return result(null, true);
    }
    // the small ones first, the stored messages last: a budget that runs out leaves only them
    const counters = db.meta.get('counters') ?? NO_COUNTERS;
    for (const [name, value] of Object.entries(counters)) {
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) return result(`the counters are damaged (${name})`, false);
    }
    let scheduled = 0;
    let scheduledBytes = 0;
    for (const { key, value } of db.waiting.getRange()) {
      if (!waitingIntact(value)) return result(`scheduled push ${JSON.stringify(key)} fails its checksum`, false);
      if (db.due.get([value.at, key]) !== true) return result(`scheduled push ${JSON.stringify(key)} is not in its index`, false);
      scheduled++;
      scheduledBytes += Buffer.byteLength(value.json);
      if (!more()) return result(null, false);
    }
    let dueCount = 0;
    for (const _ of db.due.getKeys()) {
      dueCount++;
      if (!more()) return result(null, false);
    }
    if (scheduled !== counters.scheduled || dueCount !== scheduled || scheduledBytes !== counters.scheduledBytes) return result('the scheduled pushes and their counts disagree', false);
    let keyBytes = 0;
    for (const { key, value } of db.keys.getRange()) {
      if (typeof value?.until !== 'number' || (value.result !== null && typeof value.result !== 'object')) return result(`push id ${JSON.stringify(key)} is damaged`, false);
      keyBytes += idempotencyKeyBytes(key);
      if (!more()) return result(null, false);
    }
    for (const _ of db.keyExpiries.getKeys()) if (!more()) return result(null, false);
    if (keyBytes !== counters.keyBytes) return result('the push ids and their count disagree', false);
    const perUid = new Map<string, number>();
    let pairs = 0;
    let bytes = 0;
    for (const { key: seq, value } of db.order.getRange()) {
      if (!Array.isArray(value) || value.length !== 4) return result(`stored message ${seq} is damaged in the order index`, false);
      const [uid, id, expiresAt, size] = value;
      const record = db.messages.get([uid, seq]);
      if (record === undefined || db.byId.get([uid, id]) !== seq || db.expiries.get([expiresAt, seq]) !== true) return result(`stored message ${seq} is missing from an index`, false);
      if (readMessageRecord(record) === null) return result(`stored message ${seq} fails its checksum`, false);
      perUid.set(uid, (perUid.get(uid) ?? 0) + 1);
      pairs++;
      bytes += size;
      if (!more()) return result(null, false);
    }
    if (pairs !== counters.messages || bytes !== counters.bytes) return result('the stored messages and their counts disagree', false);
    for (const { key, value } of db.perUid.getRange()) {
      if (perUid.get(key) !== value) return result('the stored messages per uid and their counts disagree', false);
      perUid.delete(key);
      if (!more()) return result(null, false);
    }
    if (perUid.size > 0) return result('the stored messages per uid and their counts disagree', false);
    // the indexes hold no more than the pairs: every page of each is read
    for (const index of [db.messages, db.byId, db.expiries] as Database<unknown, Key>[]) {
      let count = 0;
      for (const _ of index.getKeys()) {
        count++;
        if (!more()) return result(null, false);
      }
      if (count !== pairs) return result('an index of the stored messages holds entries of no message', false);
    }
    return result(null, true);
  } catch (err) {
    // LMDB's own checks that do not crash: MDB_CORRUPTED, MDB_PAGE_NOTFOUND, a value that does not decode
    return result(`LMDB cannot read it: ${err instanceof Error ? err.message : String(err)}`, false);
  } finally {
    void root.close();
  }
}

/** This module, run as the child that walks. */
const SELF = fileURLToPath(import.meta.url);
const CHECK_OWNER_ENV = 'PUSH_STORE_CHECK_OWNER';
const CHECK_DIR_ENV = 'PUSH_STORE_CHECK_DIR';
const CHECK_DEADLINE_ENV = 'PUSH_STORE_CHECK_DEADLINE';
/** What the child may take past the budget (its start, LMDB's load) before it is killed. */
const CHILD_MARGIN_MS = 10_000;

/** The child's line before it reads a file: the file a crash happened in. */
const READING = 'reading ';

/**
 * Walks DATA_DIR's LMDB files in a child process, the lock's (`ownerFile`) and then the
 * store's (`storeDir`), each when it holds data, for at most `budgetMs`, and says what it
 * found. A child that dies on a signal found damage LMDB crashes on: the signal is the reason.
 */
export function checkStore(ownerFile: string, storeDir: string, budgetMs: number): CheckResult {
  const started = Date.now();
  const loader = SELF.endsWith('.ts') && !process.execArgv.some((a) => a.includes('tsx')) ? ['--import', import.meta.resolve('tsx')] : [];
  // a debugger's port is the parent's
  const flags = process.execArgv.filter((a) => !a.startsWith('--inspect'));
  const child = spawnSync(process.execPath, [...flags, ...loader, SELF], {
    // what node itself reads (a loader in NODE_OPTIONS), never the server's settings and secrets
    env: { ...pick(process.env, ['PATH', 'NODE_OPTIONS', 'NODE_PATH']), [CHECK_OWNER_ENV]: ownerFile, [CHECK_DIR_ENV]: storeDir, [CHECK_DEADLINE_ENV]: String(started + budgetMs) },
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
    timeout: budgetMs + CHILD_MARGIN_MS,
    killSignal: 'SIGKILL',
    maxBuffer: 1 << 20,
  });
  const ms = Date.now() - started;
  if (child.error !== undefined && (child.error as NodeJS.ErrnoException).code !== 'ETIMEDOUT') throw child.error;
  const lines = child.stdout.trim().split('\n');
  if (child.signal !== null) {
    if (ms >= budgetMs + CHILD_MARGIN_MS) return { damage: null, file: null, records: 0, complete: false, ms }; // hung, not crashed: unknown
    const reading = lines.filter((l) => l.startsWith(READING)).pop()?.slice(READING.length) ?? join(storeDir, 'data.mdb');
    // LMDB's assertion names what it found (mdb.c:8830: Assertion 'IS_LEAF(mp)' failed in mdb_cursor_set())
    const assertion = /Assertion '[^']*' failed[^\n]*/.exec(child.stderr)?.[0];
    return { damage: `LMDB crashed reading it (${child.signal}${assertion ? `: ${assertion}` : ''})`, file: reading, records: 0, complete: false, ms };
  }
  try {
    return { ...(JSON.parse(lines.pop() ?? '') as CheckResult), ms };
  } catch {
    throw new Error(`the store check exited ${child.status} without a result: ${child.stderr.trim().split('\n')[0] ?? ''}`);
  }
}

function pick(env: NodeJS.ProcessEnv, names: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of names) if (env[name] !== undefined) out[name] = env[name];
  return out;
}

/** Whether `path` holds data (a file LMDB made and wrote). */
export function holdsData(path: string): boolean {
  try {
    return statSync(path).size > 0;
  } catch {
    return false;
  }
}

// the child: walk, print the file it reads before reading it, and the result as one JSON line
if (process.env[CHECK_DIR_ENV] !== undefined && process.argv[1] !== undefined && resolve(process.argv[1]) === SELF) {
  const ownerFile = process.env[CHECK_OWNER_ENV] ?? '';
  const storeDir = process.env[CHECK_DIR_ENV];
  const deadline = Number(process.env[CHECK_DEADLINE_ENV]);
  let found: CheckResult = { damage: null, file: null, records: 0, complete: true, ms: 0 };
  if (holdsData(ownerFile)) {
    writeSync(1, `${READING}${ownerFile}\n`);
    const damage = walkOwner(ownerFile);
    if (damage !== null) found = { ...found, damage, file: ownerFile, complete: false };
  }
  const storeFile = join(storeDir, 'data.mdb');
  if (found.damage === null && holdsData(storeFile)) {
    writeSync(1, `${READING}${storeFile}\n`);
    found = walkStore(storeDir, deadline);
  }
  writeSync(1, `${JSON.stringify(found)}\n`);
}
