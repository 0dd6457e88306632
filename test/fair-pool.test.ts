// FairPool: a bound in all with a share per uid and per client address (MAX_REDELIVERY_BYTES,
// SSE_MAX_REPLAYS). Takes wait in order; one held back by its own share keeps no one else
// waiting; a take larger than a bound goes alone; close() gives everything back.
import { expect } from 'chai';
import { FairPool, fairShares } from '../src/fair-pool.ts';

/** Whether a take has been granted yet: a microtask turn lets a grant's promise settle. */
async function granted(take: Promise<boolean>): Promise<boolean | 'waiting'> {
  return Promise.race([take, new Promise<'waiting'>((resolve) => setImmediate(() => resolve('waiting')))]);
}

describe('FairPool', () => {
  it('gives one uid an eighth and one client address a quarter of the bound, at least 1', () => {
    expect(fairShares(64)).to.deep.equal({ total: 64, perUid: 8, perAddress: 16 });
    expect(fairShares(1)).to.deep.equal({ total: 1, perUid: 1, perAddress: 1 });
  });

  it('refuses past the share of a uid, of an address, and the bound in all, naming which', () => {
    const pool = new FairPool({ total: 10, perUid: 4, perAddress: 6 });
    expect(pool.holder('u1', 'a1').tryTake(4)).to.equal(null);
    expect(pool.holder('u1', 'a2').tryTake(1)).to.equal('uid');
    expect(pool.holder('u2', 'a1').tryTake(2)).to.equal(null);
    expect(pool.holder('u3', 'a1').tryTake(1)).to.equal('address');
    expect(pool.holder('u3', 'a2').tryTake(4)).to.equal(null);
    expect(pool.holder('u4', 'a3').tryTake(1)).to.equal('total');
    expect(pool.held).to.equal(10);
  });

  it('lets a take larger than a bound go alone, when nothing else is held under it', async () => {
    const pool = new FairPool({ total: 10, perUid: 4, perAddress: 6 });
    const big = pool.holder('u1', 'a1');
    expect(await big.take(50)).to.equal(true);
    const next = pool.holder('u2', 'a2').take(1);
    expect(await granted(next)).to.equal('waiting');
    big.close();
    expect(await next).to.equal(true);
    expect(pool.held).to.equal(1);
  });

  it('grants waiting takes in order as room comes back; one held back by its own share keeps no one waiting', async () => {
    const pool = new FairPool({ total: 10, perUid: 4, perAddress: 10 });
    const hog = pool.holder('hog', 'a');
    expect(await hog.take(4)).to.equal(true);
    const other = pool.holder('x', 'a');
    expect(await other.take(6)).to.equal(true);
    // the hog's second page waits on its uid's share, a third client on the bound in all
    let told = 0;
    const hogAgain = pool.holder('hog', 'b').take(2, () => told++);
    const third = pool.holder('y', 'c').take(3);
    expect(told).to.equal(1);
    other.give(3);
    expect(await third).to.equal(true); // the hog's waiting take did not hold it back
    expect(await granted(hogAgain)).to.equal('waiting');
    hog.give(4);
    expect(await hogAgain).to.equal(true);
    expect(pool.held).to.equal(3 + 3 + 2);
  });

  it('a take that does not fit the bound in all is not passed by later smaller ones', async () => {
    const pool = new FairPool({ total: 10, perUid: 10, perAddress: 10 });
    const first = pool.holder('a', 'a');
    await first.take(8);
    const large = pool.holder('b', 'b').take(5);
    const small = pool.holder('c', 'c').take(1);
    expect(pool.holder('d', 'd').tryTake(1), 'a try after a waiting take').to.equal('total');
    expect(await granted(small)).to.equal('waiting');
    first.give(8);
    expect(await large).to.equal(true);
    expect(await small).to.equal(true);
  });

  it('close() gives back everything held, and ends a waiting take with false', async () => {
    const pool = new FairPool({ total: 4, perUid: 4, perAddress: 4 });
    const holder = pool.holder('u', 'a');
    await holder.take(3);
    const waiting = pool.holder('v', 'b');
    const take = waiting.take(2);
    waiting.close();
    expect(await take).to.equal(false);
    expect(await waiting.take(1), 'a closed holder takes nothing').to.equal(false);
    holder.close();
    holder.close();
    expect(pool.held).to.equal(0);
    expect(pool.waiters).to.equal(0);
  });
});
