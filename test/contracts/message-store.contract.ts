// The MessageStore contract, run against every implementation (memory and Redis).
import { expect } from 'chai';
import { until as waitUntil } from '../support/until.ts';
import { idempotencyKeyBytes, type ClaimedPush, type MessageStore, type PendingPage, type ScheduledCursor, type StoreLimits } from '../../src/message-store.ts';
import type { PushSpec, ScheduledPush, StoredMessage } from '../../src/messages.ts';
import { allPending } from '../support/stored.ts';

export type StoreFactory = (limits: StoreLimits) => Promise<MessageStore>;

const LIMITS: StoreLimits = {
  maxPendingPerUid: 1000,
  maxBytes: 1 << 30,
  maxScheduled: 1000,
  maxScheduledBytes: 1 << 30,
  maxIdempotencyBytes: 1 << 30,
};

function message(id: string, ttlMs = 60_000): StoredMessage {
  const ts = Date.now();
  return { id, event: 'new_msg', data: { id }, ts, expiresAt: ts + ttlMs };
}

function spec(id: string): PushSpec {
  return { id, to: ['u'], event: 'new_msg', data: id, ttlMs: 0, bytes: 4 };
}

/** The size the issue measured: 1000 uids in `to` and 64 KiB of data. */
function bigSpec(id: string): PushSpec {
  const to = Array.from({ length: 1000 }, (_, i) => `user-${String(i).padStart(6, '0')}@example.com`);
  return { id, to, event: 'new_msg', data: { text: 'x'.repeat(64 * 1024 - 20) }, ttlMs: 60_000, bytes: 64 * 1024 };
}

function jsonBytes(push: ScheduledPush): number {
  return Buffer.byteLength(JSON.stringify(push));
}

function ids(claimed: readonly ClaimedPush[]): string[] {
  return claimed.map((c) => c.push.spec.id);
}

/** Every page from the first, by cursor. */
async function allPages(store: MessageStore, limit: number, maxBytes: number): Promise<string[][]> {
  const pages: string[][] = [];
  let after: ScheduledCursor | null = null;
  for (let i = 0; i < 100; i++) {
    const page = await store.scheduled(after, limit, maxBytes);
    pages.push(page.scheduled.map((s) => s.spec.id));
    if (page.next === null) return pages;
    after = page.next;
  }
  throw new Error('the pages never ended');
}

/** A uid's kept messages' ids, every page from the oldest, each as its page's ids. */
async function pendingPages(store: MessageStore, uid: string, limit: number, maxBytes: number): Promise<string[][]> {
  const pages: string[][] = [];
  let after = 0;
  for (let i = 0; i < 1000; i++) {
    const page: PendingPage = await store.pendingPage(uid, after, limit, maxBytes);
    pages.push(page.entries.map((e) => e.message.id));
    if (page.next === null) return pages;
    expect(page.next, 'a page moves on').to.be.above(after);
    after = page.next;
  }
  throw new Error('the pages never ended');
}

export function messageStoreContract(name: string, create: StoreFactory): void {
  describe(`MessageStore contract: ${name}`, () => {
    const opened: MessageStore[] = [];
    const open = async (limits: Partial<StoreLimits> = {}) => {
      const store = await create({ ...LIMITS, ...limits });
      opened.push(store);
      return store;
    };
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
    });

    it('keeps messages per uid in order until acked', async () => {
      const store = await open();
      expect(await store.add(['a', 'b'], message('m1'), 100)).to.equal(2);
      await store.add(['a'], message('m2'), 100);
      expect((await allPending(store, 'a')).map((m) => m.id)).to.deep.equal(['m1', 'm2']);
      expect(await store.ack('a', 'm1')).to.equal(true);
      expect(await store.ack('a', 'm1')).to.equal(false);
      expect((await allPending(store, 'a')).map((m) => m.id)).to.deep.equal(['m2']);
      expect((await allPending(store, 'b')).map((m) => m.id)).to.deep.equal(['m1']);
      expect(await allPending(store, 'nobody')).to.deep.equal([]);
      expect(await store.stats()).to.include({ messages: 2, bytes: 200 });
    });

    it('does not store one message twice for a uid', async () => {
      const store = await open();
      await store.add(['a'], message('m1'), 10);
      expect(await store.add(['a'], message('m1'), 10)).to.equal(0);
      expect(await allPending(store, 'a')).to.have.length(1);
    });

    it('stores a push made again (a scheduled push claimed again) once per uid: only uids without it get it', async () => {
      const store = await open();
      const first = message('again');
      expect(await store.add(['a', 'b'], first, 10)).to.equal(2);
      // made again later: a new ts and expiry, as Delivery makes them; the kept one stays
      const remade = { ...message('again'), ts: first.ts + 1000, expiresAt: first.expiresAt + 1000 };
      expect(await store.add(['a', 'b', 'c'], remade, 10)).to.equal(1);
      expect(await allPending(store, 'a')).to.deep.equal([first]);
      expect(await allPending(store, 'c')).to.deep.equal([remade]);
      expect(await store.stats()).to.include({ messages: 3 });
    });

    it('drops the oldest past the per-uid bound and counts it', async () => {
      const store = await open({ maxPendingPerUid: 2 });
      for (const id of ['m1', 'm2', 'm3']) await store.add(['a'], message(id), 10);
      expect((await allPending(store, 'a')).map((m) => m.id)).to.deep.equal(['m2', 'm3']);
      expect(await store.stats()).to.include({ messages: 2, dropped: 1 });
    });

    it('drops the oldest of any uid past the byte bound', async () => {
      const store = await open({ maxBytes: 250 });
      await store.add(['a'], message('m1'), 100);
      await store.add(['b'], message('m2'), 100);
      await store.add(['c'], message('m3'), 100);
      expect(await allPending(store, 'a')).to.deep.equal([]);
      expect((await allPending(store, 'b')).map((m) => m.id)).to.deep.equal(['m2']);
      expect(await store.stats()).to.include({ messages: 2, bytes: 200, dropped: 1 });
    });

    it('never returns an expired message', async () => {
      const store = await open();
      await store.add(['a'], message('gone', -1), 10);
      await store.add(['a'], message('kept'), 10);
      expect((await allPending(store, 'a')).map((m) => m.id)).to.deep.equal(['kept']);
    });

    it('reads a uid\'s messages a page at a time from a cursor: bounded by the messages looked at and by bytes, expired ones skipped', async () => {
      const store = await open();
      for (const id of ['m1', 'm2', 'm3', 'm4', 'm5']) await store.add(['a'], message(id), 100);
      await store.add(['b'], message('other'), 100);
      await store.add(['a'], message('gone', -1), 100);
      await store.add(['a'], message('m6'), 100);
      expect(await pendingPages(store, 'a', 2, 1 << 20)).to.deep.equal([['m1', 'm2'], ['m3', 'm4'], ['m5'], ['m6']]);
      expect(await pendingPages(store, 'a', 10, 1 << 20)).to.deep.equal([['m1', 'm2', 'm3', 'm4', 'm5', 'm6']]);
      // bytes as add() counted them: two fit in 250, a third does not
      expect(await pendingPages(store, 'a', 10, 250)).to.deep.equal([['m1', 'm2'], ['m3', 'm4'], ['m5', 'm6']]);
      const first = await store.pendingPage('a', 0, 10, 250);
      expect(first.entries.map((e) => e.bytes)).to.deep.equal([100, 100]);
      expect(first.entries[0]!.message).to.deep.include({ id: 'm1', event: 'new_msg', data: { id: 'm1' } });
      expect(first.nextBytes).to.equal(100);
      // the last page ends with null; a uid with none has one empty page
      expect(await store.pendingPage('a', 0, 10, 1 << 20)).to.deep.include({ next: null });
      expect(await store.pendingPage('nobody', 0, 10, 1 << 20)).to.deep.equal({ entries: [], next: null });
      // the message a cursor names is gone meanwhile: the next page starts after where it was
      expect(await store.ack('a', 'm2')).to.equal(true);
      const next = await store.pendingPage('a', first.next!, 2, 1 << 20);
      expect(next.entries.map((e) => e.message.id)).to.deep.equal(['m3', 'm4']);
    });

    it('pages stay in push order through many acks and drops', async () => {
      const store = await open({ maxPendingPerUid: 90 });
      const ids = Array.from({ length: 100 }, (_, i) => `m${i}`);
      for (const id of ids) await store.add(['a'], message(id), 10);
      // the first 10 were dropped by the bound; every third of the rest is acked
      const acked = new Set(ids.slice(10).filter((_, i) => i % 3 === 0));
      for (const id of acked) expect(await store.ack('a', id)).to.equal(true);
      const left = ids.slice(10).filter((id) => !acked.has(id));
      expect((await pendingPages(store, 'a', 7, 1 << 20)).flat()).to.deep.equal(left);
      expect(await store.pendingCount('a')).to.equal(left.length);
    });

    it('a page with no room for its first message holds none, and names that message\'s bytes', async () => {
      const store = await open();
      await store.add(['a'], message('small'), 100);
      await store.add(['a'], message('large'), 5000);
      const page = await store.pendingPage('a', 0, 10, 1000);
      expect(page.entries.map((e) => e.message.id)).to.deep.equal(['small']);
      expect(page.nextBytes).to.equal(5000);
      const blocked = await store.pendingPage('a', page.next!, 10, 1000);
      expect(blocked).to.deep.equal({ entries: [], next: page.next, nextBytes: 5000 });
      const roomy = await store.pendingPage('a', page.next!, 10, 5000);
      expect(roomy.entries.map((e) => e.message.id)).to.deep.equal(['large']);
      expect(roomy.next).to.equal(null);
    });

    it('counts a uid\'s unexpired messages without reading them', async () => {
      const store = await open();
      expect(await store.pendingCount('a')).to.equal(0);
      await store.add(['a'], message('gone', -1), 10);
      await store.add(['a', 'b'], message('kept'), 10);
      // expired, whether or not a sweep ran since: not counted
      expect(await store.pendingCount('a')).to.equal(1);
      expect(await store.pendingCount('b')).to.equal(1);
      expect(await store.stats()).to.include({ messages: 2 });
    });

    it('forgets a uid\'s oldest messages up to one (an SSE Last-Event-ID), a batch at a time', async () => {
      const store = await open();
      const ids = ['m1', 'm2', 'm3', 'm4', 'm5'];
      for (const id of ids) await store.add(['a', 'b'], message(id), 10);
      expect(await store.cursorOf('a', 'nope')).to.equal(null);
      expect(await store.cursorOf('nobody', 'm1')).to.equal(null);
      const through = (await store.cursorOf('a', 'm4'))!;
      expect(through).to.be.a('number');
      const first = await store.ackThrough('a', through, 3);
      expect(first.map((m) => m.id)).to.deep.equal(['m1', 'm2', 'm3']);
      expect(first[0]!.expiresAt).to.be.above(Date.now());
      expect((await store.ackThrough('a', through, 3)).map((m) => m.id)).to.deep.equal(['m4']);
      expect(await store.ackThrough('a', through, 3)).to.deep.equal([]);
      // the replay after it starts at the cursor: m5 only; b keeps all of its own
      expect((await store.pendingPage('a', through, 10, 1 << 20)).entries.map((e) => e.message.id)).to.deep.equal(['m5']);
      expect(await store.pendingCount('a')).to.equal(1);
      expect(await store.pendingCount('b')).to.equal(5);
      expect(await store.stats()).to.include({ messages: 6 });
    });

    it('answers a taken idempotency key with its first result until it expires', async () => {
      const store = await open();
      expect(await store.claim('k', Date.now() + 60_000)).to.deep.equal({ first: true });
      expect(await store.claim('k', Date.now() + 60_000)).to.deep.equal({ first: false, result: null });
      const result = { id: 'k', onlineCount: 1, offlineCount: 0, stored: 0 };
      await store.settle('k', result, Date.now() + 60_000);
      expect(await store.claim('k', Date.now() + 60_000)).to.deep.equal({ first: false, result });
      expect(await store.claim('old', Date.now() - 1)).to.deep.equal({ first: true });
      expect(await store.claim('old', Date.now() + 1000)).to.deep.equal({ first: true });
    });

    it('frees an unsettled idempotency key when its lease runs out; settling holds it until its full time', async () => {
      const store = await open();
      const lease = Date.now() + 150;
      expect(await store.claim('lost-release', lease)).to.deep.equal({ first: true });
      expect(await store.claim('settled', lease)).to.deep.equal({ first: true });
      const result = { id: 'settled', onlineCount: 0, offlineCount: 1, stored: 1 };
      await store.settle('settled', result, Date.now() + 60_000);
      expect(await store.claim('lost-release', Date.now() + 60_000)).to.deep.equal({ first: false, result: null });
      await waitUntil(async () => (await store.claim('lost-release', Date.now() + 60_000)).first, 'the lease to run out');
      // the same lease: the settled key outlives it
      expect(await store.claim('settled', Date.now() + 60_000)).to.deep.equal({ first: false, result });
      // a key settled after its lease ran out stays forgotten
      const shortLease = Date.now() + 30;
      expect(await store.claim('late', shortLease)).to.deep.equal({ first: true });
      await waitUntil(() => Date.now() > shortLease + 20, 'the short lease to pass');
      await store.settle('late', result, Date.now() + 60_000);
      expect(await store.claim('late', Date.now() + 60_000)).to.deep.equal({ first: true });
    });

    it('hands out each due scheduled push once, never a cancelled one', async () => {
      const store = await open({ maxScheduled: 3 });
      const now = Date.now();
      expect(await store.schedule({ at: now + 50, spec: spec('late') })).to.equal('scheduled');
      expect(await store.schedule({ at: now - 10, spec: spec('due') })).to.equal('scheduled');
      expect(await store.schedule({ at: now - 5, spec: spec('cancelled') })).to.equal('scheduled');
      expect(await store.schedule({ at: now, spec: spec('over the limit') })).to.equal('count');
      expect((await store.scheduled(null, 10, 1 << 20)).scheduled.map((s) => s.spec.id)).to.deep.equal(['due', 'cancelled', 'late']);
      expect(await store.cancel('cancelled')).to.equal(true);
      expect(await store.cancel('cancelled')).to.equal(false);
      const lease = now + 60_000;
      const due = await store.claimDue(now, lease, 10);
      expect(ids(due)).to.deep.equal(['due']);
      expect(due[0]).to.deep.include({ claims: 1 });
      expect(due[0]!.push).to.deep.equal({ at: now - 10, spec: spec('due') });
      expect(await store.claimDue(now, lease, 10)).to.deep.equal([]);
      const late = await store.claimDue(now + 50, lease, 10);
      expect(ids(late)).to.deep.equal(['late']);
      // claimed, not taken: both stay until confirmed made
      expect(await store.stats()).to.include({ scheduled: 2 });
      expect(await store.fired([...due, ...late])).to.equal(2);
      expect(await store.fired(due)).to.equal(0);
      expect(await store.stats()).to.include({ scheduled: 0, scheduledBytes: 0 });
      expect(await store.claimDue(lease + 1, lease + 2, 10)).to.deep.equal([]);
    });

    it('claims a due push for a lease: not again before it ends, again after it (a claimer that never confirmed), once confirmed gone', async () => {
      const store = await open();
      const now = Date.now();
      expect(await store.schedule({ at: now - 10, spec: spec('p') })).to.equal('scheduled');
      const first = await store.claimDue(now, now + 1000, 10);
      expect(ids(first)).to.deep.equal(['p']);
      expect(first[0]).to.deep.include({ claims: 1 });
      expect(await store.claimDue(now + 999, now + 5000, 10)).to.deep.equal([]);
      // listed as due at the lease's end, when it fires again unless confirmed
      expect((await store.scheduled(null, 10, 1 << 20)).scheduled).to.deep.equal([{ at: now + 1000, spec: spec('p') }]);
      // the first claimer never confirmed: its lease ran out, a second claim gets the push
      const second = await store.claimDue(now + 1000, now + 2000, 10);
      expect(ids(second)).to.deep.equal(['p']);
      expect(second[0]).to.deep.include({ claims: 2 });
      expect(second[0]!.claim).not.to.equal(first[0]!.claim);
      // the first claimer confirming late removes nothing: the push is under another claim
      expect(await store.fired(first)).to.equal(0);
      expect(await store.stats()).to.include({ scheduled: 1 });
      expect(await store.fired(second)).to.equal(1);
      expect(await store.stats()).to.include({ scheduled: 0, scheduledBytes: 0 });
      expect(await store.claimDue(now + 10_000, now + 20_000, 10)).to.deep.equal([]);
    });

    it('claims at most `limit` due pushes, soonest first; the rest at the next claim', async () => {
      const store = await open();
      const now = Date.now();
      for (const id of ['p4', 'p2', 'p0', 'p3', 'p1']) await store.schedule({ at: now - 100 + Number(id[1]), spec: spec(id) });
      const lease = now + 60_000;
      expect(ids(await store.claimDue(now, lease, 2))).to.deep.equal(['p0', 'p1']);
      expect(ids(await store.claimDue(now, lease, 2))).to.deep.equal(['p2', 'p3']);
      expect(ids(await store.claimDue(now, lease, 2))).to.deep.equal(['p4']);
      expect(await store.claimDue(now, lease, 2)).to.deep.equal([]);
    });

    it('a push cancelled while claimed stays cancelled; one scheduled again while claimed stays scheduled', async () => {
      const store = await open();
      const now = Date.now();
      await store.schedule({ at: now - 10, spec: spec('cancelled') });
      await store.schedule({ at: now - 10, spec: spec('put-back') });
      const claimed = await store.claimDue(now, now + 1000, 10);
      expect(ids(claimed).sort()).to.deep.equal(['cancelled', 'put-back']);
      // a cancel removes a claimed push: what was sent already stays sent, nothing fires again
      expect(await store.cancel('cancelled')).to.equal(true);
      // a failed delivery puts its push back: it replaces the claim
      const again = { at: now + 5000, spec: spec('put-back'), attempts: 1 };
      expect(await store.schedule(again, true)).to.equal('scheduled');
      // confirming the old claim neither brings the cancelled one back nor removes the put-back
      expect(await store.fired(claimed)).to.equal(0);
      expect((await store.scheduled(null, 10, 1 << 20)).scheduled).to.deep.equal([again]);
      expect(await store.stats()).to.include({ scheduled: 1, scheduledBytes: jsonBytes(again) });
      expect(await store.claimDue(now + 2000, now + 3000, 10)).to.deep.equal([]);
      const retry = await store.claimDue(now + 5000, now + 6000, 10);
      expect(retry.map((c) => ({ push: c.push, claims: c.claims }))).to.deep.equal([{ push: again, claims: 1 }]);
    });

    it('releases an unsettled idempotency key, so the push can be made again; never a settled one', async () => {
      const store = await open();
      const until = Date.now() + 60_000;
      expect(await store.claim('failed', until)).to.deep.equal({ first: true });
      expect(await store.release('failed')).to.equal(true);
      expect(await store.claim('failed', until)).to.deep.equal({ first: true });
      expect(await store.claim('made', until)).to.deep.equal({ first: true });
      await store.settle('made', { id: 'made', at: 5 }, until);
      expect(await store.release('made')).to.equal(false);
      expect(await store.claim('made', until)).to.deep.equal({ first: false, result: { id: 'made', at: 5 } });
      expect(await store.release('never-claimed')).to.equal(false);
    });

    it('refuses a new idempotency key past MAX_IDEMPOTENCY_BYTES, forgetting none; expired and released keys make room', async () => {
      const ids = ['key-1', 'key-2', 'key-3', 'key-4'];
      const cost = idempotencyKeyBytes('key-1');
      const until = Date.now() + 60_000;
      // just under: one byte short of the third key
      const under = await open({ maxIdempotencyBytes: 3 * cost - 1 });
      expect(await under.claim(ids[0]!, until)).to.deep.equal({ first: true });
      expect(await under.claim(ids[1]!, until)).to.deep.equal({ first: true });
      expect(await under.claim(ids[2]!, until)).to.deep.equal({ first: false, full: true });
      // exactly at the bound: three fit, the fourth is over it
      const store = await open({ maxIdempotencyBytes: 3 * cost });
      for (const id of ids.slice(0, 3)) expect(await store.claim(id, until)).to.deep.equal({ first: true });
      expect(await store.claim(ids[3]!, until)).to.deep.equal({ first: false, full: true });
      // the ones held still answer as taken: nothing was forgotten to make room
      expect(await store.claim(ids[0]!, until)).to.deep.equal({ first: false, result: null });
      expect(await store.release(ids[1]!)).to.equal(true);
      expect(await store.claim(ids[3]!, until)).to.deep.equal({ first: true });
      // a key whose time has passed gives its bytes back
      const short = await open({ maxIdempotencyBytes: cost });
      // long enough that a loaded machine does not pass it before the next claim; waited out below
      expect(await short.claim(ids[0]!, Date.now() + 1000)).to.deep.equal({ first: true });
      expect(await short.claim(ids[1]!, until)).to.deep.equal({ first: false, full: true });
      await waitUntil(async () => (await short.claim(ids[1]!, until)).first, 'the short key to expire and make room');
    });

    it('bounds the bytes of scheduled pushes: the issue’s 1000-uid, 64 KiB push counts in full', async () => {
      const at = Date.now() + 60_000;
      const pushes = ['s1', 's2', 's3'].map((id) => ({ at, spec: bigSpec(id) }));
      const each = jsonBytes(pushes[0]!);
      expect(each).to.be.above(90_000); // 64 KiB data + 1000 uids of 26 bytes
      const under = await open({ maxScheduledBytes: 2 * each });
      expect(await under.schedule(pushes[0]!)).to.equal('scheduled');
      expect(await under.schedule(pushes[1]!)).to.equal('scheduled');
      expect(await under.stats()).to.include({ scheduled: 2, scheduledBytes: 2 * each });
      expect(await under.schedule(pushes[2]!)).to.equal('bytes');
      const small = { at, spec: spec('small') };
      expect(await under.schedule(small)).to.equal('bytes');
      // a push put back after a failed delivery is not refused
      expect(await under.schedule(pushes[2]!, true)).to.equal('scheduled');
      expect(await under.cancel('s3')).to.equal(true);
      expect(await under.cancel('s1')).to.equal(true);
      expect(await under.schedule(small)).to.equal('scheduled');
      expect(await under.stats()).to.include({ scheduled: 2, scheduledBytes: each + jsonBytes(small) });
      const claimed = await under.claimDue(at, at + 60_000, 10);
      expect(ids(claimed).sort()).to.deep.equal(['s2', 'small']);
      expect(await under.fired(claimed)).to.equal(2);
      expect(await under.stats()).to.include({ scheduled: 0, scheduledBytes: 0 });
    });

    it('counts a push scheduled again under its id once', async () => {
      const store = await open({ maxScheduled: 1 });
      const first = { at: Date.now() + 60_000, spec: spec('same') };
      const again = { ...first, at: first.at + 1000, attempts: 1 };
      expect(await store.schedule(first)).to.equal('scheduled');
      expect(await store.schedule(again)).to.equal('scheduled');
      expect(await store.stats()).to.include({ scheduled: 1, scheduledBytes: jsonBytes(again) });
      expect((await store.scheduled(null, 10, 1 << 20)).scheduled).to.deep.equal([again]);
    });

    it('lists scheduled pushes page by page, soonest first, bounded by count and bytes', async () => {
      const store = await open();
      const at = Date.now() + 60_000;
      // two share a time: ordered by id
      const order = [
        ['p1', at],
        ['p2b', at + 10],
        ['p2a', at + 10],
        ['p3', at + 20],
        ['p4', at + 30],
      ] as const;
      for (const [id, when] of [...order].reverse()) await store.schedule({ at: when, spec: spec(id) });
      expect(await allPages(store, 2, 1 << 20)).to.deep.equal([['p1', 'p2a'], ['p2b', 'p3'], ['p4']]);
      expect(await allPages(store, 5, 1 << 20)).to.deep.equal([['p1', 'p2a', 'p2b', 'p3', 'p4']]);
      expect(await allPages(store, 1000, 1 << 20)).to.deep.equal([['p1', 'p2a', 'p2b', 'p3', 'p4']]);
      // bytes: two pushes fit a page exactly, a third would pass it
      const each = jsonBytes({ at, spec: spec('p1') });
      expect(await allPages(store, 1000, 2 * each + 3)).to.deep.equal([['p1', 'p2a'], ['p2b', 'p3'], ['p4']]);
      // one push larger than the bound still makes a page
      expect(await allPages(store, 1000, 1)).to.deep.equal([['p1'], ['p2a'], ['p2b'], ['p3'], ['p4']]);
      // the push a cursor names is gone meanwhile: the next page starts after where it was
      const first = await store.scheduled(null, 2, 1 << 20);
      expect(await store.cancel('p2a')).to.equal(true);
      const next = await store.scheduled(first.next, 2, 1 << 20);
      expect(next.scheduled.map((s) => s.spec.id)).to.deep.equal(['p2b', 'p3']);
      expect(await store.scheduled(null, 10, 1 << 20)).to.deep.include({ next: null });
    });
  });
}
