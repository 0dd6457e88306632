import { expect } from 'chai';
import { MemoryMessageStore } from '../src/message-store.ts';
import { messageStoreContract } from './contracts/message-store.contract.ts';

messageStoreContract('memory', async (limits) => new MemoryMessageStore(limits));

describe('MemoryMessageStore sweep', () => {
  it('removes expired messages and counts them, looking only at what is due', async () => {
    const expired: string[] = [];
    const store = new MemoryMessageStore({ maxPendingPerUid: 10, maxBytes: 1 << 20, maxScheduled: 10, maxScheduledBytes: 1 << 20, maxIdempotencyBytes: 1 << 20 }, (uid, m) =>
      expired.push(`${uid}/${m.id}`),
    );
    const now = Date.now();
    await store.add(['a'], { id: 'short', event: 'e', data: 1, ts: now, expiresAt: now + 10 }, 50);
    await store.add(['a'], { id: 'long', event: 'e', data: 1, ts: now, expiresAt: now + 60_000 }, 50);
    await store.add(['b'], { id: 'acked', event: 'e', data: 1, ts: now, expiresAt: now + 10 }, 50);
    await store.ack('b', 'acked');
    store.sweep(now + 20);
    expect(await store.stats()).to.include({ messages: 1, bytes: 50, expired: 1 });
    expect(expired).to.deep.equal(['a/short']); // acked ones are not reported
    await store.close();
  });
});
