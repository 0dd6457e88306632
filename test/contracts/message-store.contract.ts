// The MessageStore contract, run against every implementation (memory now; Redis later).
import { expect } from 'chai';
import type { PushSpec } from '../../src/delivery.ts';
import type { MessageStore, StoreLimits, StoredMessage } from '../../src/message-store.ts';

export type StoreFactory = (limits: StoreLimits) => Promise<MessageStore>;

const LIMITS: StoreLimits = { maxPendingPerUid: 1000, maxBytes: 1 << 30, maxScheduled: 1000 };

function message(id: string, ttlMs = 60_000): StoredMessage {
  const ts = Date.now();
  return { id, event: 'new_msg', data: { id }, ts, expiresAt: ts + ttlMs };
}

function spec(id: string): PushSpec {
  return { id, to: ['u'], event: 'new_msg', data: id, ttlMs: 0, bytes: 4 };
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
      expect((await store.pending('a')).map((m) => m.id)).to.deep.equal(['m1', 'm2']);
      expect(await store.ack('a', 'm1')).to.equal(true);
      expect(await store.ack('a', 'm1')).to.equal(false);
      expect((await store.pending('a')).map((m) => m.id)).to.deep.equal(['m2']);
      expect((await store.pending('b')).map((m) => m.id)).to.deep.equal(['m1']);
      expect(await store.pending('nobody')).to.deep.equal([]);
      expect(await store.stats()).to.include({ messages: 2, bytes: 200 });
    });

    it('does not store one message twice for a uid', async () => {
      const store = await open();
      await store.add(['a'], message('m1'), 10);
      expect(await store.add(['a'], message('m1'), 10)).to.equal(0);
      expect(await store.pending('a')).to.have.length(1);
    });

    it('drops the oldest past the per-uid bound and counts it', async () => {
      const store = await open({ maxPendingPerUid: 2 });
      for (const id of ['m1', 'm2', 'm3']) await store.add(['a'], message(id), 10);
      expect((await store.pending('a')).map((m) => m.id)).to.deep.equal(['m2', 'm3']);
      expect(await store.stats()).to.include({ messages: 2, dropped: 1 });
    });

    it('drops the oldest of any uid past the byte bound', async () => {
      const store = await open({ maxBytes: 250 });
      await store.add(['a'], message('m1'), 100);
      await store.add(['b'], message('m2'), 100);
      await store.add(['c'], message('m3'), 100);
      expect(await store.pending('a')).to.deep.equal([]);
      expect((await store.pending('b')).map((m) => m.id)).to.deep.equal(['m2']);
      expect(await store.stats()).to.include({ messages: 2, bytes: 200, dropped: 1 });
    });

    it('never returns an expired message', async () => {
      const store = await open();
      await store.add(['a'], message('gone', -1), 10);
      await store.add(['a'], message('kept'), 10);
      expect((await store.pending('a')).map((m) => m.id)).to.deep.equal(['kept']);
    });

    it('answers a taken idempotency key with its first result until it expires', async () => {
      const store = await open();
      expect(await store.claim('k', Date.now() + 60_000)).to.deep.equal({ first: true });
      expect(await store.claim('k', Date.now() + 60_000)).to.deep.equal({ first: false, result: null });
      const result = { id: 'k', online: ['a'], offline: [], stored: 0 };
      await store.settle('k', result);
      expect(await store.claim('k', Date.now() + 60_000)).to.deep.equal({ first: false, result });
      expect(await store.claim('old', Date.now() - 1)).to.deep.equal({ first: true });
      expect(await store.claim('old', Date.now() + 1000)).to.deep.equal({ first: true });
    });

    it('hands out each due scheduled push once, never a cancelled one', async () => {
      const store = await open({ maxScheduled: 3 });
      const now = Date.now();
      expect(await store.schedule({ at: now + 50, spec: spec('late') })).to.equal(true);
      expect(await store.schedule({ at: now - 10, spec: spec('due') })).to.equal(true);
      expect(await store.schedule({ at: now - 5, spec: spec('cancelled') })).to.equal(true);
      expect(await store.schedule({ at: now, spec: spec('over the limit') })).to.equal(false);
      expect((await store.scheduled()).map((s) => s.spec.id)).to.deep.equal(['due', 'cancelled', 'late']);
      expect(await store.cancel('cancelled')).to.equal(true);
      expect(await store.cancel('cancelled')).to.equal(false);
      expect((await store.takeDue(now)).map((s) => s.spec.id)).to.deep.equal(['due']);
      expect(await store.takeDue(now)).to.deep.equal([]);
      expect((await store.takeDue(now + 50)).map((s) => s.spec.id)).to.deep.equal(['late']);
      expect(await store.stats()).to.include({ scheduled: 0 });
    });
  });
}
