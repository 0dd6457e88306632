import { expect } from 'chai';
import { PeriodicTask } from '../src/periodic.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { until } from './support/until.ts';

/** A promise with its resolve, to hold a run open until the test lets it end. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

describe('PeriodicTask', () => {
  afterEach(cleanupAll);

  it('never starts a run while one is under way, and close() waits for it', async () => {
    let running = 0;
    let most = 0;
    let runs = 0;
    const held = gate();
    const task = new PeriodicTask(
      async () => {
        runs++;
        running++;
        most = Math.max(most, running);
        await held.promise;
        running--;
      },
      { everyMs: 5, failing: () => {} },
    );
    onCleanup(() => task.close());
    await until(() => runs === 1, 'the first run');
    const joined = [task.run(), task.run()]; // a run would start its work at once
    expect(runs).to.equal(1);
    let closed = false;
    const closing = task.close().then(() => (closed = true));
    await Promise.resolve();
    expect(closed, 'close() returned before the run ended').to.equal(false);
    held.open();
    await Promise.all([closing, ...joined]);
    expect({ runs, most, running }).to.deep.equal({ runs: 1, most: 1, running: 0 });
    await task.run(); // after close(): nothing runs
    expect(runs).to.equal(1);
  });

  it('tells the start of a failure spell once and its end once', async () => {
    const told: string[] = [];
    let failUntil = 3;
    let runs = 0;
    const task = new PeriodicTask(
      () => {
        runs++;
        if (runs <= failUntil) throw new Error(`down ${runs}`);
      },
      { everyMs: 2, failing: (err) => told.push(`failing: ${(err as Error).message}`), recovered: () => told.push('recovered') },
    );
    onCleanup(() => task.close());
    await until(() => runs >= 6, 'a spell and some good runs');
    const secondStart = runs + 1;
    failUntil = runs + 2; // a second spell of two failed runs
    await until(() => runs >= failUntil + 2, 'the second spell to end');
    await task.close();
    expect(told).to.deep.equal(['failing: down 1', 'recovered', `failing: down ${secondStart}`, 'recovered']);
  });
});
