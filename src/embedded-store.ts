// The MessageStore on disk, in DATA_DIR: stored messages, idempotency keys and scheduled pushes
// survive a restart of a single node. LMDB (the lmdb package): every change is one write
// transaction, committed and fsynced before its promise resolves, so nothing a push was
// answered for is lost to a SIGKILL or a power loss. The semantics are MemoryMessageStore's.
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { checkDataFile, checkStore, checksum, holdsData, messageRecord, NO_COUNTERS, openDatabases, readMessageRecord, waitingIntact, type Counters, type HeldKey, type OrderEntry, type Waiting } from './embedded-store-check.ts';
import { DataDirTakenError, DIR_MODE, lockDataDir, OWNER_FILE, privateFile, refuseIfHeldHere, type DataDirLock } from './embedded-store-lock.ts';
import type { Logger } from './log.ts';
import { idempotencyKeyBytes, StoreUnavailableError, type AckedMessage, type ClaimedPush, type PendingEntry, type PendingPage, type ClaimResult, type ExpiredListener, type MessageStore, type ScheduledCursor, type ScheduledPage, type ScheduleOutcome, type StoreLimits, type StoreStats } from './message-store.ts';
import type { KeptAnswer, ScheduledPush, StoredMessage } from './messages.ts';
import { PeriodicTask } from './periodic.ts';

/** The store could not be opened: the message is the one line to show. */
export class EmbeddedStoreError extends Error {
  override name = 'EmbeddedStoreError';
}

/** How often expired messages and keys are swept, ms (as MemoryMessageStore). */
const SWEEP_MS = 1000;
/** Expired entries removed per transaction, so one sweep never holds the writer long. */
const SWEEP_BATCH = 1000;
/*
 * MAX_STORE_BYTES bounds the file (data.mdb). LMDB writes copies of the pages a commit
 * touches and reuses the old ones only a commit or two later, so the file holds the pages in
 * use plus the pages the last commits freed; it grows when they do not fit and never shrinks.
 * So the kept messages' pages get a budget, BUDGET_SHARE of the bound, and what one commit may
 * touch is capped (COMMIT_SHARE) so the freed pages fit in the rest. The pages in use per
 * counted byte (ratio) are measured from LMDB's page counts every MEASURE_AFTER of the budget
 * added, so add() pays nothing per push for it.
 */
/** The share of MAX_STORE_BYTES the kept messages' pages may fill. */
const BUDGET_SHARE = 3 / 4;
/** The pages one commit's adds may touch, as a share of MAX_STORE_BYTES (one add always goes). */
const COMMIT_SHARE = 1 / 16;
/**
 * The pages an add touches per (uid, message) pair beside its data's, bytes: a leaf in each
 * index it is in, and as much again for the oldest it drops (keys spread over the tree).
 */
const PAIR_TOUCHES = 4 * 4096;
/** The ratio is measured again once this share of the budget (counted) was added. */
const MEASURE_AFTER = 1 / 32;
/** The sub-databases a kept message is in: their pages are what the budget bounds. */
const MESSAGE_DBS = ['messages', 'byId', 'perUid', 'order', 'expiries'] as const;
/** A store of a few messages takes a few pages whatever the bound: the budget is at least this. */
const MIN_BUDGET = 64 * 4096;
/** The store's LMDB directory in DATA_DIR: data.mdb and lock.mdb. */
const STORE_DIR = 'store.mdb';

/** What lmdb's getStats() gives (typed `{}` there). */
interface PageStats {
  pageSize: number;
  treeBranchPageCount: number;
  treeLeafPageCount: number;
  overflowPages: number;
}

export interface EmbeddedStoreOptions {
  onExpired?: ExpiredListener;
  log?: Logger;
  /**
   * How long the check at open may walk the store for damage (embedded-store-check.ts); past
   * it the store opens with the rest unchecked. 0: no check. @default 10000 (STORE_CHECK_MS)
   */
  checkMs?: number;
}

/** What the meta pages of an LMDB file tell of damage (checkDataFile), with the file. */
function damageIn(file: string): { file: string; damage: string } | null {
  const damage = checkDataFile(file);
  return damage === null ? null : { file, damage };
}

/**
 * Why a commit failed, in words an API client can act on; no path (DATA_DIR is the operator's).
 * lmdb rejects a failed commit with a generic error whose `commitError` promise holds the cause.
 */
async function writeFailure(err: unknown): Promise<string> {
  let cause = err;
  const commitError = (err as { commitError?: unknown } | null)?.commitError;
  if (commitError instanceof Promise) cause = await commitError.then(() => err, (inner: unknown) => inner);
  const code = (cause as { code?: unknown } | null)?.code;
  const message = cause instanceof Error ? cause.message : String(cause);
  if (code === 'ENOSPC' || code === 28 || /No space left/i.test(message)) return 'the disk is full';
  if (code === 'EDQUOT' || code === 122) return 'the disk quota is used up';
  if (/MDB_MAP_FULL/.test(message)) return "the store's file reached its size limit";
  return `the disk cannot be written (${code === undefined ? message : `${String(code)}: ${message}`})`;
}

function describe(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  const message = err instanceof Error ? err.message : String(err);
  return typeof code === 'string' && !message.includes(code) ? `${code}: ${message}` : message;
}

export class EmbeddedMessageStore implements MessageStore {
  private readonly root: RootDatabase;
  /** [uid, seq] -> the message's JSON */
  private readonly messages: Database<string, [string, number]>;
  /** [uid, id] -> seq */
  private readonly byId: Database<number, [string, string]>;
  /** uid -> how many pairs it has, so the per-uid bound reads no queue */
  private readonly perUid: Database<number, string>;
  /** seq -> the pair: the first is the oldest */
  private readonly order: Database<OrderEntry, number>;
  /** [expiresAt, seq] -> true */
  private readonly expiries: Database<true, [number, number]>;
  private readonly keys: Database<HeldKey, string>;
  /** [until, id] -> true; an entry whose key has a later until is stale and skipped */
  private readonly keyExpiries: Database<true, [number, string]>;
  private readonly waiting: Database<Waiting, string>;
  /** [at, id] -> true */
  private readonly due: Database<true, [number, string]>;
  private readonly meta: Database<Counters, string>;
  private counters: Counters;
  private dropped = 0;
  private expired = 0;
  /** Bytes of file the kept messages' pages take per counted byte (measure()); until measured, more than seen (1-2.5). */
  private ratio = 4;
  /** Counted bytes added since the last measure(). */
  private addedSince = 0;
  /** The touch estimate (admit()) of the adds under way, and the adds waiting for room. */
  private admitted = 0;
  private readonly waitingAdds: { touches: number; go: () => void }[] = [];
  private readonly sweeper: PeriodicTask;
  private readonly lock: DataDirLock;
  private readonly onExpired: ExpiredListener;
  private closed: Promise<void> | null = null;
  private readonly log: Logger | undefined;
  /** Whether a record that failed its checksum was logged: once per process. */
  private damageLogged = false;
  /** A sweep that pendingCount() started and others may share. */
  private sweeping: Promise<number> | null = null;

  /** Opens (or creates) the store in `dir`; throws EmbeddedStoreError with one line. */
  constructor(
    readonly dir: string,
    private readonly limits: StoreLimits,
    options: EmbeddedStoreOptions = {},
  ) {
    this.onExpired = options.onExpired ?? (() => {});
    const log = options.log;
    this.log = log;
    try {
      // only the server's user may read it: stored messages are push data, kept in clear.
      // A DATA_DIR that exists keeps the mode its operator gave it (a warning below)
      mkdirSync(dir, { recursive: true, mode: DIR_MODE });
    } catch (err) {
      throw new EmbeddedStoreError(`DATA_DIR ${dir}: cannot create it (${describe(err)})`);
    }
    const store = join(dir, STORE_DIR);
    const file = join(store, 'data.mdb');
    const owner = join(dir, OWNER_FILE);
    try {
      refuseIfHeldHere(dir);
    } catch (err) {
      throw new EmbeddedStoreError((err as Error).message);
    }
    try {
      // every file the server makes here is 0600 (its directory 0700), whatever the umask;
      // files an earlier version made with the umask's mode are taken back
      mkdirSync(store, { mode: DIR_MODE, recursive: true });
      if ((statSync(store).mode & 0o777) !== DIR_MODE) chmodSync(store, DIR_MODE);
      for (const path of [owner, `${owner}-lock`, file, join(store, 'lock.mdb')]) privateFile(path);
    } catch (err) {
      throw new EmbeddedStoreError(`DATA_DIR ${dir}: cannot write to it (${describe(err)})`);
    }
    const mode = statSync(dir).mode & 0o777;
    if ((mode & 0o006) !== 0) {
      log?.warn(`DATA_DIR ${dir} is open to other users (mode ${mode.toString(8).padStart(4, '0')}): the store's files are theirs to see listed, and to replace where it is writable; chmod 700 it`);
    }
    // damage first, before LMDB opens a file (the lock's too): LMDB crashes on it. A server
    // running on DATA_DIR only adds to the store meanwhile, and the lock then refuses this one
    let damage: { file: string; damage: string } | null;
    try {
      damage = damageIn(owner) ?? damageIn(file);
      const checkMs = options.checkMs ?? 10_000;
      if (damage === null && checkMs > 0 && (holdsData(owner) || holdsData(file))) {
        const checked = checkStore(owner, store, checkMs);
        if (checked.damage !== null) damage = { file: checked.file ?? file, damage: checked.damage };
        else if (!checked.complete) {
          log?.warn(`message store: ${checked.records} records checked for damage in ${checked.ms} ms (STORE_CHECK_MS), not all of them: the rest is not checked (docs/durability.md#a-damaged-store)`);
        }
      }
    } catch (err) {
      throw new EmbeddedStoreError(`DATA_DIR ${dir}: cannot read the store (${describe(err)})`);
    }
    if (damage?.file === owner) {
      throw new EmbeddedStoreError(
        `DATA_DIR ${dir}: the lock's file ${resolve(owner)} is damaged (${damage.damage}); when no server runs on DATA_DIR, remove it (rm ${resolve(owner)} ${resolve(owner)}-lock): it holds only which server runs, nothing is lost`,
      );
    }
    if (damage !== null) {
      throw new EmbeddedStoreError(
        `DATA_DIR ${dir}: the store's file ${resolve(damage.file)} is damaged (${damage.damage}); to start with an empty store, move ${resolve(store)} aside (mv ${resolve(store)} ${resolve(store)}.damaged): its stored messages, push ids and scheduled pushes are then lost (docs/durability.md#a-damaged-store)`,
      );
    }
    try {
      this.lock = lockDataDir(dir);
    } catch (err) {
      if (err instanceof DataDirTakenError) throw new EmbeddedStoreError(err.message);
      throw new EmbeddedStoreError(`DATA_DIR ${dir}: cannot write to it (${describe(err)})`);
    }
    try {
      // overlappingSync off: a commit is fsynced before its promise resolves, so an answered
      // push is on disk; LMDB's copy-on-write pages keep the file whole across a crash
      // eventTurnBatching off: every write here is a transaction, and the batch lmdb otherwise
      // opens for a turn's writes leaves a promise that rejects unhandled when a commit fails
      // (a full disk), which would end the process
      this.root = open({ path: store, overlappingSync: false, noSubdir: false, maxDbs: 16, eventTurnBatching: false });
      const db = openDatabases(this.root);
      this.messages = db.messages;
      this.byId = db.byId;
      this.perUid = db.perUid;
      this.order = db.order;
      this.expiries = db.expiries;
      this.keys = db.keys;
      this.keyExpiries = db.keyExpiries;
      this.waiting = db.waiting;
      this.due = db.due;
      this.meta = db.meta;
      this.counters = { ...NO_COUNTERS, ...this.meta.get('counters') };
      this.measure(this.counters); // nothing writes yet: the pages are the counters'
    } catch (err) {
      void this.lock.release();
      throw new EmbeddedStoreError(`DATA_DIR ${dir}: cannot open the store, unreadable or corrupt (${describe(err)})`);
    }
    try {
      this.releaseClaims(Date.now());
    } catch (err) {
      // a full disk must not stop the start: the claims are then taken again when their lease ends
      log?.warn(`message store: cannot make the scheduled pushes a stopped server had claimed due now (${describe(err)}); they fire when their claims' lease ends`);
    }
    this.sweeper = new PeriodicTask(() => this.sweep(Date.now()), {
      everyMs: SWEEP_MS,
      failing: (err) => log?.warn(`message store: sweeping expired messages failed (${describe(err)}); retrying every ${SWEEP_MS} ms`),
      recovered: () => log?.info('message store: sweeping expired messages works again'),
    });
  }

  /**
   * One write transaction, durable when it resolves; the counters are saved with it. A commit
   * that fails (a full disk, an I/O error) rolls back whole: the counters are read back from
   * what is on disk and the caller gets a StoreUnavailableError (the API's 503). The next write
   * is tried afresh, so the store works again once the disk has room.
   */
  private async write<T>(change: (c: Counters) => T): Promise<T> {
    let changing = false;
    try {
      return await this.root.transaction(() => {
        changing = true;
        const c = { ...this.counters };
        const result = change(c);
        this.meta.put('counters', c);
        this.counters = c; // transaction callbacks run one at a time, in order
        changing = false;
        return result;
      });
    } catch (err) {
      try {
        this.counters = { ...NO_COUNTERS, ...this.meta.get('counters') };
      } catch {
        // unreadable too: the counters in memory stay, the next commit saves them
      }
      // a change that threw is a bug, not the disk: it keeps its own error
      if (changing && !/MDB_/.test(err instanceof Error ? err.message : '')) throw err;
      throw new StoreUnavailableError(`the message store cannot write: ${await writeFailure(err)}; nothing was stored`);
    }
  }

  /** A read that fails (an I/O error on the file) is the API's 503 too. */
  private read<T>(reading: () => T): T {
    try {
      return reading();
    } catch (err) {
      throw new StoreUnavailableError(`the message store cannot read: ${describe(err)}`);
    }
  }

  async add(uids: readonly string[], message: StoredMessage, bytes: number): Promise<number> {
    if (uids.length === 0) return 0;
    const json = JSON.stringify(message);
    // what the pair takes on disk, or the caller's estimate when larger
    const size = Math.max(Math.ceil(bytes), Buffer.byteLength(json));
    const record = messageRecord(json);
    const dropped: number[] = [];
    const touches = await this.admit(uids.length * (size * this.ratio + PAIR_TOUCHES));
    const kept = await this.write((c) => {
      let kept = 0;
      for (const uid of uids) {
        if (this.byId.get([uid, message.id]) !== undefined) continue;
        const seq = ++c.seq;
        this.messages.put([uid, seq], record);
        this.byId.put([uid, message.id], seq);
        this.order.put(seq, [uid, message.id, message.expiresAt, size]);
        this.expiries.put([message.expiresAt, seq], true);
        const count = (this.perUid.get(uid) ?? 0) + 1;
        this.perUid.put(uid, count);
        c.messages++;
        c.bytes += size;
        kept++;
        if (count > this.limits.maxPendingPerUid) {
          const oldest = [...this.messages.getKeys({ start: [uid, 0], end: [uid, Infinity], limit: 1 })][0];
          if (oldest !== undefined) dropped.push(this.removePair(c, oldest[1]));
        }
      }
      this.addedSince += kept * size;
      if (this.addedSince > this.budget() * MEASURE_AFTER) this.measure(c);
      // the counted bound, as in every store, and the file's: the budget at the measured ratio.
      // Past the budget (the ratio grew: deletes leave pages part empty) an add drops at most
      // twice what it kept, so no commit frees more pages than admit() let in
      const budgetLimit = this.budget() / this.ratio;
      let budgetDrops = 2 * kept + 1;
      while (c.messages > 0 && (c.bytes > this.limits.maxBytes || (c.bytes > budgetLimit && budgetDrops-- > 0))) {
        const oldest = [...this.order.getKeys({ limit: 1 })][0];
        if (oldest === undefined) break;
        dropped.push(this.removePair(c, oldest));
      }
      return kept;
    }).finally(() => this.leave(touches));
    this.dropped += dropped.length;
    return kept;
  }

  /** The bytes of file the kept messages' pages may fill. */
  private budget(): number {
    return Math.max(MIN_BUDGET, this.limits.maxBytes * BUDGET_SHARE);
  }

  /**
   * Measures the bytes of file the kept messages' pages take per counted byte, from LMDB's
   * page counts (about 60 µs). Run inside a write, where the counts include its changes as
   * `c` does, or before any.
   */
  private measure(c: Counters): void {
    this.addedSince = 0;
    let used = 0;
    for (const name of MESSAGE_DBS) {
      const stats = this[name].getStats() as PageStats;
      used += (stats.treeBranchPageCount + stats.treeLeafPageCount + stats.overflowPages) * stats.pageSize;
    }
    if (c.bytes > 0 && used > 0) this.ratio = used / c.bytes;
  }

  /**
   * Waits until the adds under way leave room for `touches` (the bytes of pages an add
   * writes, estimated): lmdb commits every write queued at once together, and the pages one
   * commit frees must fit in the file beside the budget. One add always goes; the waiting go
   * in turn. Resolves what to give back to leave().
   */
  private async admit(touches: number): Promise<number> {
    if (this.admitted > 0 && (this.waitingAdds.length > 0 || this.admitted + touches > this.commitRoom())) {
      await new Promise<void>((go) => this.waitingAdds.push({ touches, go }));
    } else {
      this.admitted += touches;
    }
    return touches;
  }

  private leave(touches: number): void {
    this.admitted -= touches;
    for (let next = this.waitingAdds[0]; next !== undefined; next = this.waitingAdds[0]) {
      if (this.admitted > 0 && this.admitted + next.touches > this.commitRoom()) return;
      this.waitingAdds.shift();
      this.admitted += next.touches;
      next.go();
    }
  }

  private commitRoom(): number {
    return Math.max(MIN_BUDGET, this.limits.maxBytes) * COMMIT_SHARE;
  }

  async pendingCount(uid: string): Promise<number> {
    // what expired is swept first, so the count is of unexpired ones; a sweep that cannot write
    // (a full disk) leaves them counted rather than failing the login
    await this.sweepNow().catch(() => {});
    return this.read(() => this.perUid.get(uid) ?? 0);
  }

  async pendingPage(uid: string, after: number, limit: number, maxBytes: number): Promise<PendingPage> {
    return this.read(() => {
      const now = Date.now();
      const entries: PendingEntry[] = [];
      let bytes = 0;
      let looked = 0;
      let next = after;
      // keys only: a message's JSON is read once it is known to fit
      for (const [, seq] of this.messages.getKeys({ start: [uid, after + 1], end: [uid, Infinity], limit: limit + 1 })) {
        if (looked === limit) return { entries, next };
        const pair = this.order.get(seq);
        if (pair && pair[2] > now) {
          const size = pair[3];
          if (bytes + size > maxBytes) return { entries, next, nextBytes: size };
          const json = this.messages.get([uid, seq]);
          const message = json === undefined ? null : readMessageRecord(json);
          if (message === null) {
            if (json !== undefined) this.damaged('a stored message');
          } else {
            entries.push({ message, bytes: size });
            bytes += size;
          }
        }
        looked++;
        next = seq;
      }
      return { entries, next: null };
    });
  }

  async cursorOf(uid: string, id: string): Promise<number | null> {
    return this.read(() => this.byId.get([uid, id]) ?? null);
  }

  async ackThrough(uid: string, through: number, limit: number): Promise<AckedMessage[]> {
    return this.write((c) => {
      const acked: AckedMessage[] = [];
      for (const [, seq] of [...this.messages.getKeys({ start: [uid, 0], end: [uid, through + 1], limit })]) {
        const pair = this.order.get(seq);
        if (pair) acked.push({ id: pair[1], expiresAt: pair[2] });
        this.removePair(c, seq);
      }
      return acked;
    });
  }

  /** One sweep at a time for the callers that need one now: concurrent logins share it. */
  private sweepNow(): Promise<number> {
    if (!this.has(this.expiries, Date.now())) return Promise.resolve(0);
    this.sweeping ??= this.sweep(Date.now()).finally(() => (this.sweeping = null));
    return this.sweeping;
  }

  async ack(uid: string, id: string): Promise<boolean> {
    return this.write((c) => {
      const seq = this.byId.get([uid, id]);
      if (seq === undefined) return false;
      this.removePair(c, seq);
      return true;
    });
  }

  async claim(id: string, leaseUntil: number): Promise<ClaimResult> {
    return this.write((c): ClaimResult => {
      const now = Date.now();
      const held = this.keys.get(id);
      if (held && held.until > now) return { first: false, result: held.result };
      if (held) this.forgetKey(c, id);
      const bytes = idempotencyKeyBytes(id);
      if (c.keyBytes + bytes > this.limits.maxIdempotencyBytes) {
        this.sweepKeys(c, now); // room may have come free since the last sweep
        if (c.keyBytes + bytes > this.limits.maxIdempotencyBytes) return { first: false, full: true };
      }
      this.keys.put(id, { until: leaseUntil, result: null });
      this.keyExpiries.put([leaseUntil, id], true);
      c.keyBytes += bytes;
      return { first: true };
    });
  }

  async settle(id: string, result: KeptAnswer, until: number): Promise<void> {
    await this.write(() => {
      const held = this.keys.get(id);
      if (!held || held.until <= Date.now()) return;
      this.keys.put(id, { until, result });
      this.keyExpiries.put([until, id], true); // the lease's entry, when due, sees the later until
    });
  }

  async release(id: string): Promise<boolean> {
    return this.write((c) => {
      const held = this.keys.get(id);
      if (!held || held.result !== null) return false;
      this.forgetKey(c, id);
      return true;
    });
  }

  async schedule(push: ScheduledPush, putBack = false): Promise<ScheduleOutcome> {
    const json = JSON.stringify(push);
    const bytes = Buffer.byteLength(json);
    return this.write((c): ScheduleOutcome => {
      const old = this.waiting.get(push.spec.id);
      const oldBytes = old ? Buffer.byteLength(old.json) : 0;
      if (!putBack) {
        if (!old && c.scheduled >= this.limits.maxScheduled) return 'count';
        if (c.scheduledBytes - oldBytes + bytes > this.limits.maxScheduledBytes) return 'bytes';
      }
      if (old) this.due.remove([old.at, push.spec.id]);
      else c.scheduled++;
      c.scheduledBytes += bytes - oldBytes;
      this.waiting.put(push.spec.id, { at: push.at, json, sum: checksum(json) });
      this.due.put([push.at, push.spec.id], true);
      return 'scheduled';
    });
  }

  async cancel(id: string): Promise<boolean> {
    return this.write((c) => this.unschedule(c, id) !== null);
  }

  async scheduled(after: ScheduledCursor | null, limit: number, maxBytes: number): Promise<ScheduledPage> {
    return this.read(() => this.scheduledPage(after, limit, maxBytes));
  }

  private scheduledPage(after: ScheduledCursor | null, limit: number, maxBytes: number): ScheduledPage {
    const page: ScheduledPush[] = [];
    let bytes = 0;
    let last: ScheduledCursor | null = null;
    // the range starts at the cursor and skips it: the push it names may be gone meanwhile
    for (const [at, id] of this.due.getKeys(after === null ? {} : { start: [after.at, after.id] })) {
      if (after !== null && at === after.at && id === after.id) continue;
      const waiting = this.waiting.get(id);
      if (!waiting) continue;
      if (!waitingIntact(waiting)) {
        this.damaged('a scheduled push');
        continue;
      }
      const size = Buffer.byteLength(waiting.json);
      if (page.length >= limit || (page.length > 0 && bytes + size > maxBytes)) return { scheduled: page, next: last };
      page.push({ ...(JSON.parse(waiting.json) as ScheduledPush), at });
      bytes += size;
      last = { at, id };
    }
    return { scheduled: page, next: null };
  }

  async claimDue(now: number, leaseUntil: number, limit: number): Promise<ClaimedPush[]> {
    if (!this.has(this.due, now)) return []; // no write (and no fsync) on an idle tick
    const claim = randomUUID();
    // one durable transaction: a claim is on disk before its pushes are handed out
    return this.write(() => {
      const claimed: ClaimedPush[] = [];
      for (const [at, id] of [...this.due.getKeys({ end: [now, '\uffff'], limit })]) {
        this.due.remove([at, id]);
        const waiting = this.waiting.get(id);
        if (!waiting) continue; // not expected: unschedule removes both
        if (!waitingIntact(waiting)) {
          this.damaged('a scheduled push'); // left out of the index: never claimed again
          continue;
        }
        const claims = (waiting.claims ?? 0) + 1;
        this.waiting.put(id, { at: leaseUntil, json: waiting.json, sum: checksum(waiting.json), claims, claim });
        claimed.push({ push: JSON.parse(waiting.json) as ScheduledPush, claim, claims });
      }
      // indexed after the loop: a lease that is not after `now` is not claimed twice in one call
      for (const { push } of claimed) this.due.put([leaseUntil, push.spec.id], true);
      return claimed;
    });
  }

  async fired(claimed: readonly ClaimedPush[]): Promise<number> {
    if (claimed.length === 0) return 0;
    return this.write((c) => {
      let removed = 0;
      for (const { push, claim } of claimed) {
        if (this.waiting.get(push.spec.id)?.claim !== claim) continue;
        this.unschedule(c, push.spec.id);
        removed++;
      }
      return removed;
    });
  }

  /**
   * Makes every claim left in the store due again at once: at its push's own time, or `now`
   * when that is later (never, for a push that was claimed: it was due). Only one process
   * holds DATA_DIR (its lock file), so at open each claim is a dead process's, whose pushes may
   * or may not have been made: they fire at the restart rather than after their lease, in their
   * order. The claim count stays.
   */
  private releaseClaims(now: number): void {
    const stale: [string, Waiting][] = [];
    for (const { key, value } of this.waiting.getRange()) if (value.claim !== undefined) stale.push([key, value]);
    if (stale.length === 0) return;
    this.root.transactionSync(() => {
      for (const [id, { at: lease, json, claims }] of stale) {
        const at = Math.min((JSON.parse(json) as ScheduledPush).at, now);
        this.due.remove([lease, id]);
        this.due.put([at, id], true);
        this.waiting.put(id, { at, json, sum: checksum(json), ...(claims === undefined ? {} : { claims }) });
      }
    });
  }

  async stats(): Promise<StoreStats> {
    const c = this.counters;
    return { messages: c.messages, bytes: c.bytes, fileBytes: this.read(() => this.fileSize()), dropped: this.dropped, expired: this.expired, scheduled: c.scheduled, scheduledBytes: c.scheduledBytes };
  }

  /** The file's size, bytes: up to its last page (committed); what the file system says may lag. */
  private fileSize(): number {
    const root = this.root.getStats() as PageStats & { lastPageNumber: number };
    return (root.lastPageNumber + 1) * root.pageSize;
  }

  /** Stops the sweep, waits for the writes under way and closes the files; idempotent. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      await this.sweeper.close();
      // a last commit that failed was reported to its caller; closing goes on
      await new Promise<void>((done) => this.root.flushed.then(() => done(), () => done()));
      await this.root.close();
      await this.lock.release();
    })();
    return this.closed;
  }

  /** Removes the pairs and keys expired by `now`; tells onExpired of each pair once. */
  async sweep(now: number): Promise<number> {
    let removed = 0;
    for (;;) {
      if (!this.has(this.expiries, now) && !this.has(this.keyExpiries, now)) return removed;
      const expired = await this.write((c) => {
        const out: { uid: string; message: StoredMessage }[] = [];
        const due = [...this.expiries.getKeys({ end: [now, Infinity], limit: SWEEP_BATCH })];
        for (const [at, seq] of due) {
          const entry = this.order.get(seq);
          if (!entry) {
            this.expiries.remove([at, seq]); // not expected: removePair removes both
            continue;
          }
          const json = this.messages.get([entry[0], seq]);
          this.removePair(c, seq);
          const message = json === undefined ? null : readMessageRecord(json);
          if (message !== null) out.push({ uid: entry[0], message });
          else if (json !== undefined) this.damaged('a stored message');
        }
        this.sweepKeys(c, now);
        return { out, more: due.length === SWEEP_BATCH };
      });
      this.expired += expired.out.length;
      removed += expired.out.length;
      for (const { uid, message } of expired.out) this.onExpired(uid, message);
      if (!expired.more) return removed;
    }
  }

  /** Whether a time-ordered index holds an entry due by `now`: a read, no transaction. */
  private has(index: Database<true, [number, number]> | Database<true, [number, string]>, now: number): boolean {
    for (const [at] of (index as Database<true, [number, string | number]>).getKeys({ limit: 1 })) return at <= now;
    return false;
  }

  private sweepKeys(c: Counters, now: number): void {
    for (const [until, id] of [...this.keyExpiries.getKeys({ end: [now, '\uffff'] })]) {
      this.keyExpiries.remove([until, id]);
      const held = this.keys.get(id);
      if (held && held.until <= now) this.forgetKey(c, id);
    }
  }

  private forgetKey(c: Counters, id: string): void {
    const held = this.keys.get(id);
    if (!held) return;
    this.keys.remove(id);
    c.keyBytes -= idempotencyKeyBytes(id);
  }

  private unschedule(c: Counters, id: string): ScheduledPush | null {
    const waiting = this.waiting.get(id);
    if (!waiting) return null;
    this.waiting.remove(id);
    this.due.remove([waiting.at, id]);
    c.scheduled--;
    c.scheduledBytes -= Buffer.byteLength(waiting.json);
    return JSON.parse(waiting.json) as ScheduledPush;
  }

  /**
   * A record failed its checksum after the check at open (the disk changed it since): it is
   * left out of what is read, and the damage is logged once.
   */
  private damaged(what: string): void {
    if (this.damageLogged) return;
    this.damageLogged = true;
    this.log?.error(`message store: ${what} failed its checksum and is skipped: ${join(this.dir, STORE_DIR, 'data.mdb')} is damaged (docs/durability.md#a-damaged-store)`);
  }

  /** Removes the pair stored under `seq` from every index; returns seq. */
  private removePair(c: Counters, seq: number): number {
    const entry = this.order.get(seq);
    if (!entry) return seq;
    const [uid, id, expiresAt, size] = entry;
    this.order.remove(seq);
    this.messages.remove([uid, seq]);
    this.byId.remove([uid, id]);
    this.expiries.remove([expiresAt, seq]);
    const left = (this.perUid.get(uid) ?? 1) - 1;
    if (left > 0) this.perUid.put(uid, left);
    else this.perUid.remove(uid);
    c.messages--;
    c.bytes -= size;
    return seq;
  }
}
