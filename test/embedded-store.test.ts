// The embedded (LMDB) message store: the MessageStore contract on disk; through the real
// start.ts, what a SIGKILL and a restart keep, and the one-line startup errors of a DATA_DIR
// that is taken by another server or corrupt.
import { expect } from 'chai';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { open } from 'lmdb';
import { checkStore } from '../src/embedded-store-check.ts';
import { EmbeddedMessageStore, EmbeddedStoreError } from '../src/embedded-store.ts';
import type { StoreStats } from '../src/message-store.ts';
import { messageStoreContract } from './contracts/message-store.contract.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { connectClient } from './support/clients.ts';
import { STRICT } from './support/requirements.ts';
import { legacyPush } from './support/server.ts';
import { CLAIM_BATCH } from '../src/scheduler.ts';
import { occurrences, spawnStart, type StartProcess } from './support/start-process.ts';
import { until } from './support/until.ts';
import { allPending } from './support/stored.ts';

const SECRET = 'embedded-test-secret-0123';
const AUTH = { authorization: `Bearer ${SECRET}` };

/** A fresh data dir, removed in cleanup. */
function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'push-store-'));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** start.ts with the embedded store in `dir`, on free ports. */
function startEmbedded(dir: string, name = '', env: Record<string, string> = {}): StartProcess {
  return spawnStart([], { STORE: 'embedded', DATA_DIR: dir, IO_PORT: '0', API_PORT: '0', WEB_PORT: 'off', PUSH_SECRET: SECRET, ...env }, name);
}

/** A gauge or counter of GET /metrics. */
async function metric(apiUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${apiUrl}/metrics`)).text();
  const match = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  if (!match) throw new Error(`no ${name} in the metrics`);
  return Number(match[1]);
}

async function v1(apiUrl: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${apiUrl}/api/v1${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: body === undefined ? AUTH : { ...AUTH, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('EmbeddedMessageStore', () => {
  afterEach(cleanupAll);

  messageStoreContract('embedded', async (limits) => new EmbeddedMessageStore(dataDir(), limits));

  const LIMITS = { maxPendingPerUid: 10, maxBytes: 1 << 20, maxScheduled: 10, maxScheduledBytes: 1 << 20, maxIdempotencyBytes: 1 << 20 };

  it('removes expired messages and tells of each once; acked ones are not told', async () => {
    const expired: string[] = [];
    const store = new EmbeddedMessageStore(dataDir(), LIMITS, { onExpired: (uid, m) => expired.push(`${uid}/${m.id}`) });
    onCleanup(() => store.close());
    const now = Date.now();
    await store.add(['a'], { id: 'short', event: 'e', data: 1, ts: now, expiresAt: now + 10 }, 50);
    const long = { id: 'long', event: 'e', data: 1, ts: now, expiresAt: now + 60_000 };
    await store.add(['a'], long, 50);
    await store.add(['b'], { id: 'acked', event: 'e', data: 1, ts: now, expiresAt: now + 10 }, 50);
    await store.ack('b', 'acked');
    expect(await store.sweep(now + 20)).to.equal(1);
    expect(await store.sweep(now + 20)).to.equal(0);
    // a pair counts what it takes on disk (its JSON) when that is more than the estimate
    expect(await store.stats()).to.include({ messages: 1, bytes: Buffer.byteLength(JSON.stringify(long)), expired: 1 });
    expect(expired).to.deep.equal(['a/short']);
  });

  describe('MAX_STORE_BYTES bounds the file', function () {
    this.timeout(120_000);
    const MiB = 1024 * 1024;
    const MAX = 8 * MiB;
    /**
     * What the file may pass MAX_STORE_BYTES by. Measured here: 0.94, 0.84 and 1.04 times it
     * (1.42, 2.10 and 3.31 before the bound was on the file); 100 uids in one push make the
     * largest commit the cap lets through (see COMMIT_SHARE).
     */
    const SLACK = 0.1;

    /** Pushes `turnovers` times MAX (counted), `inFlight` adds at a time; the file's size then (it never shrinks). */
    async function turnOver(dataBytes: number, uidsPerMessage: number, turnovers: number, inFlight: number): Promise<{ file: number; stats: StoreStats }> {
      const dir = dataDir();
      const store = new EmbeddedMessageStore(dir, { ...LIMITS, maxPendingPerUid: 1_000_000, maxBytes: MAX });
      onCleanup(() => store.close());
      const now = Date.now();
      const perMessage = (dataBytes + 450) * uidsPerMessage;
      const total = Math.ceil((turnovers * MAX) / perMessage);
      let next = 0;
      const lane = async (): Promise<void> => {
        while (next < total) {
          const i = next++;
          const uids = Array.from({ length: uidsPerMessage }, (_, u) => `user-${(i * uidsPerMessage + u) % 5000}`);
          await store.add(uids, { id: `m${i}`, event: 'e', data: 'x'.repeat(dataBytes), ts: now, expiresAt: now + 600_000 }, dataBytes + 450);
        }
      };
      await Promise.all(Array.from({ length: inFlight }, lane));
      return { file: statSync(join(dir, 'store.mdb', 'data.mdb')).size, stats: await store.stats() };
    }

    for (const [label, dataBytes, uids] of [
      ['100-byte messages', 100, 1],
      ['4 KiB messages', 4096, 1],
      ['one 100-byte message to 100 uids', 100, 100],
    ] as const) {
      it(`keeps data.mdb within ${SLACK * 100}% of it while ${label} turn over 6 times, 64 pushes at a time`, async () => {
        const { file, stats } = await turnOver(dataBytes, uids, 6, 64);
        expect(file / MAX, 'file / MAX_STORE_BYTES').to.be.at.most(1 + SLACK);
        expect(stats.messages).to.be.above(0);
        expect(stats.fileBytes).to.be.above(MAX / 2).and.at.most(file);
      });
    }
  });

  it('refuses a second store on a data dir this process holds, and opens it once the first closed', async () => {
    const dir = dataDir();
    const first = new EmbeddedMessageStore(dir, LIMITS);
    onCleanup(() => first.close());
    expect(() => new EmbeddedMessageStore(dir, LIMITS)).to.throw(EmbeddedStoreError, `DATA_DIR ${dir} is in use by another server in this process`);
    await first.close();
    const again = new EmbeddedMessageStore(dir, LIMITS);
    onCleanup(() => again.close());
    expect(await again.stats()).to.include({ messages: 0 });
  });

  it('opens again with what it held: messages in order, counts, keys, scheduled pushes', async () => {
    const dir = dataDir();
    const first = new EmbeddedMessageStore(dir, LIMITS);
    const now = Date.now();
    for (const id of ['m1', 'm2', 'm3']) await first.add(['a', 'b'], { id, event: 'e', data: id, ts: now, expiresAt: now + 60_000 }, 100);
    await first.ack('b', 'm2');
    await first.claim('key', now + 60_000);
    await first.settle('key', { id: 'key', at: 1 }, now + 60_000);
    await first.schedule({ at: now + 60_000, spec: { id: 's', to: ['a'], event: 'e', data: 1, ttlMs: 0, bytes: 1 } });
    const stats = await first.stats();
    await first.close();

    const again = new EmbeddedMessageStore(dir, LIMITS);
    onCleanup(() => again.close());
    expect((await allPending(again, 'a')).map((m) => m.id)).to.deep.equal(['m1', 'm2', 'm3']);
    expect((await allPending(again, 'b')).map((m) => m.id)).to.deep.equal(['m1', 'm3']);
    expect(await again.stats()).to.include({ messages: stats.messages, bytes: stats.bytes, scheduled: 1, scheduledBytes: stats.scheduledBytes });
    expect(await again.claim('key', now + 60_000)).to.deep.equal({ first: false, result: { id: 'key', at: 1 } });
    expect((await again.claimDue(now + 60_000, now + 120_000, 10)).map((c) => c.push.spec.id)).to.deep.equal(['s']);
    // the per-uid bound counts what was kept before
    for (let i = 0; i < 8; i++) await again.add(['a'], { id: `n${i}`, event: 'e', data: i, ts: now, expiresAt: now + 60_000 }, 100);
    expect((await allPending(again, 'a')).map((m) => m.id).slice(0, 2)).to.deep.equal(['m2', 'm3']);
  });

  it('opens with the claims a closed store left due at once, at their own time and in order, their claims counted', async () => {
    const dir = dataDir();
    const first = new EmbeddedMessageStore(dir, LIMITS);
    const now = Date.now();
    const spec = (id: string) => ({ id, to: ['a'], event: 'e', data: id, ttlMs: 60_000, bytes: 1 });
    for (const [i, id] of ['s0', 's1', 's2'].entries()) await first.schedule({ at: now - 100 + i, spec: spec(id) });
    await first.schedule({ at: now + 60_000, spec: spec('later') });
    // claimed under a long lease, never confirmed: the process holding them went away
    expect((await first.claimDue(now, now + 3_600_000, 2)).map((c) => c.push.spec.id)).to.deep.equal(['s0', 's1']);
    await first.close();

    const again = new EmbeddedMessageStore(dir, LIMITS);
    onCleanup(() => again.close());
    const listed = (await again.scheduled(null, 10, 1 << 20)).scheduled.map((p) => [p.spec.id, p.at - now]);
    expect(listed).to.deep.equal([['s0', -100], ['s1', -99], ['s2', -98], ['later', 60_000]]);
    const claimed = await again.claimDue(Date.now(), Date.now() + 60_000, 10);
    expect(claimed.map((c) => [c.push.spec.id, c.claims])).to.deep.equal([['s0', 2], ['s1', 2], ['s2', 1]]);
    expect(await again.fired(claimed)).to.equal(3);
    expect(await again.stats()).to.include({ scheduled: 1 });
  });
});

/**
 * A 2 MB tmpfs mounted on a fresh dir, unmounted in cleanup; null after a loud notice where
 * mounting is refused (not root), unless PUSH_TEST_STRICT=1.
 */
function tinyDisk(): { dir: string; unmount: () => void } | null {
  const dir = dataDir();
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir], { stdio: 'pipe' });
  } catch (err) {
    const notice = `cannot mount a tmpfs (${(err as Error).message.split('\n')[0]})`;
    if (STRICT) throw new Error(`${notice}; PUSH_TEST_STRICT=1 requires it (run the tests as root)`);
    console.warn(`\n  !!! SKIPPING the full disk test: ${notice}. Run the tests as root.\n`);
    return null;
  }
  let mounted = true;
  const unmount = (): void => {
    if (mounted) execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
    mounted = false;
  };
  onCleanup(unmount);
  return { dir, unmount };
}

/** Writes `path` until the disk is full; the disk holds what it had up to the last byte. */
function fillDisk(path: string): void {
  try {
    writeFileSync(path, Buffer.alloc(8 << 20));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOSPC') return;
    throw err;
  }
  throw new Error('the tiny disk took 8 MB');
}

describe('STORE=embedded on a full disk', function () {
  // start.ts in a child: a failed commit must not end the process (an unhandled rejection would)
  this.timeout(60_000);
  afterEach(cleanupAll);

  it('answers 503 with the reason for a push that needs storing, delivers the rest, keeps running, and stores again once there is room', async function () {
    const tiny = tinyDisk();
    if (tiny === null) return this.skip();
    const run = startEmbedded(join(tiny.dir, 'data'));
    const server = await run.started();
    // (lazily) unmounted before the server stops too, so a failing stop leaves no mount
    onCleanup(tiny.unmount);
    expect((await v1(server.apiUrl, '/push', { to: 'away', data: 'before', ttl: 600 })).status).to.equal(200);
    const filler = join(tiny.dir, 'filler');
    fillDisk(filler);

    const refused = await v1(server.apiUrl, '/push', { to: 'away', data: 'x'.repeat(20_000), ttl: 600 });
    expect(refused).to.deep.equal({ status: 503, body: { error: { code: 'unavailable', message: 'the message store cannot write: the disk is full; nothing was stored' } } });

    const page = await connectClient('v4', server.ioUrl);
    await page.login('online');
    // a push id and a delay are stored too
    expect((await v1(server.apiUrl, '/push', { to: 'online', data: 'with an id', id: 'kept-id' })).status).to.equal(503);
    expect((await v1(server.apiUrl, '/push', { to: 'online', data: 'later', delay: 60 })).status).to.equal(503);
    const live = await v1(server.apiUrl, '/push', { to: 'online', data: 'no ttl' });
    expect(live.status).to.equal(200);
    expect((await page.waitFor('message'))[0]).to.equal('no ttl');
    const legacyPage = await connectClient('v2', server.ioUrl);
    await legacyPage.login('legacy');
    expect(await legacyPush(server.apiUrl, { type: 'publish', to: 'legacy', content: 'legacy push', secret: SECRET })).to.deep.equal({ status: 200, body: 'ok' });
    expect((await legacyPage.waitFor('new_msg'))[0]).to.equal('legacy push');
    expect((await v1(server.apiUrl, '/users/away/messages')).body.messages).to.have.length(1);
    expect(run.running()).to.equal(true);

    rmSync(filler);
    const stored = await v1(server.apiUrl, '/push', { to: 'away', data: 'x'.repeat(20_000), ttl: 600 });
    expect(stored.status).to.equal(200);
    expect(stored.body).to.include({ stored: 1 });
    expect((await v1(server.apiUrl, '/users/away/messages')).body.messages).to.have.length(2);
    expect(run.running()).to.equal(true);
  });
});

describe('STORE=embedded through start.ts', function () {
  // each test starts start.ts (tsx compiles it) once or twice
  this.timeout(60_000);
  afterEach(cleanupAll);

  it('is the default: with no STORE and no DATA_DIR, ./data in the working directory keeps a ttl push across a SIGKILL', async () => {
    const cwd = realpathSync(dataDir()); // as the server sees its working directory
    const settings = { IO_PORT: '0', API_PORT: '0', WEB_PORT: 'off', PUSH_SECRET: SECRET };
    const first = spawnStart([], settings, 'first', { cwd });
    const before = await first.started();
    expect(first.stdout()).to.include(`| engine embedded in ${join(cwd, 'data')} |`);
    expect(existsSync(join(cwd, 'data', 'store.mdb', 'data.mdb'))).to.equal(true);
    // stored push data is for the server's user alone
    expect(statSync(join(cwd, 'data')).mode & 0o777).to.equal(0o700);
    const push = await v1(before.apiUrl, '/push', { to: 'away', data: 'kept by default', ttl: 600 });
    expect(push.body).to.include({ stored: 1 });
    expect(await first.kill()).to.deep.equal({ code: null, signal: 'SIGKILL' });

    const second = spawnStart([], settings, 'second', { cwd });
    const after = await second.started();
    const page = await connectClient('v4', after.ioUrl);
    expect(await page.request('login', 'away')).to.deep.equal({ ok: true, uid: 'away', pending: 1 });
    const [data, meta] = await page.waitFor('message');
    expect([data, (meta as { id: string }).id]).to.deep.equal(['kept by default', push.body.id]);
  });

  it('keeps what was answered with an id across a SIGKILL: stored messages, a push id, scheduled pushes', async () => {
    const dir = dataDir();
    const first = startEmbedded(dir, 'first');
    const before = await first.started();
    const ids: unknown[] = [];
    for (let i = 1; i <= 3; i++) {
      const push = await v1(before.apiUrl, '/push', { to: 'away', data: `while you were away ${i}`, ttl: 600 });
      expect(push.body).to.include({ stored: 1 });
      ids.push(push.body.id);
    }
    const once = await v1(before.apiUrl, '/push', { to: 'away-too', data: 'once', ttl: 600, id: 'push-once' });
    expect(once.status).to.equal(200);
    // one due while the node is down (or just after it is back), one far ahead
    const soon = await v1(before.apiUrl, '/push', { to: 'sched', data: 'soon', ttl: 600, delay: 1 });
    const later = await v1(before.apiUrl, '/push', { to: 'sched', data: 'later', delay: 600, id: 'much-later' });
    expect([soon.status, later.status]).to.deep.equal([202, 202]);
    expect(await first.kill()).to.deep.equal({ code: null, signal: 'SIGKILL' });

    // the lock the killed node left does not stop the restart
    const second = startEmbedded(dir, 'second');
    const after = await second.started();
    const page = await connectClient('v4', after.ioUrl);
    expect(await page.request('login', 'away')).to.deep.equal({ ok: true, uid: 'away', pending: 3 });
    for (let i = 0; i < 3; i++) await page.waitFor('message');
    expect(page.received('message').map(([, meta]) => (meta as { id: string }).id)).to.deep.equal(ids);

    const again = await v1(after.apiUrl, '/push', { to: 'away-too', data: 'once', ttl: 600, id: 'push-once' });
    expect(again.body).to.include({ id: 'push-once', duplicate: true });

    const listed = (await v1(after.apiUrl, '/scheduled')).body.scheduled as { id: string }[];
    expect(listed.map((s) => s.id)).to.include('much-later');
    const sched = await connectClient('v4', after.ioUrl);
    await sched.login('sched');
    const [data, , ack] = await sched.waitFor('message', undefined, 10_000);
    expect(data).to.equal('soon');
    (ack as () => void)();
    await until(async () => ((await v1(after.apiUrl, '/users/sched/messages')).body.messages as unknown[]).length === 0, 'the ack');
    expect(sched.received('message')).to.have.length(1);
    // the one made leaves the list once the scheduler confirms it (claim, fire, confirm)
    await until(async () => ((await v1(after.apiUrl, '/scheduled')).body.scheduled as unknown[]).length === 1, 'the made push confirmed');
    expect(((await v1(after.apiUrl, '/scheduled')).body.scheduled as { id: string }[]).map((s) => s.id)).to.deep.equal(['much-later']);
  });

  it('makes every scheduled push once across a SIGKILL in the middle of firing them: none lost, none stored twice', async function () {
    this.timeout(180_000);
    const count = 3000;
    const dir = dataDir();
    const env = { MAX_PENDING_PER_UID: String(count), MAX_SCHEDULED: String(count) };
    const first = startEmbedded(dir, 'first', env);
    const { apiUrl } = await first.started();
    // all due at one moment, after they are all scheduled: 3000 fsynced writes take a few seconds
    const at = Date.now() + 10_000;
    const scheduled: string[] = [];
    const batches = Array.from({ length: count / 100 }, (_, b) =>
      Array.from({ length: 100 }, (_, i) => ({ to: 'away', data: b * 100 + i, ttl: 600, at: new Date(at).toISOString() })),
    );
    // four batches in flight at a time: their writes share commits
    for (let b = 0; b < batches.length; b += 4) {
      const answers = await Promise.all(batches.slice(b, b + 4).map((messages) => v1(apiUrl, '/push/batch', { messages })));
      for (const answer of answers) {
        for (const result of answer.body.results as { status: number; id: string }[]) {
          expect(result.status).to.equal(202);
          scheduled.push(result.id);
        }
      }
    }
    expect(Date.now(), 'scheduling took longer than the delay given').to.be.below(at);
    // killed while it makes them: some stored, not all
    let stored = 0;
    await until(async () => (stored = await metric(apiUrl, 'push_stored_messages')) >= count / 10, 'firing to start', 30_000);
    expect(await first.kill()).to.deep.equal({ code: null, signal: 'SIGKILL' });
    expect(stored, 'the kill came after the last push was made').to.be.below(count);

    const second = startEmbedded(dir, 'second', env);
    const after = await second.started();
    await until(async () => (await metric(after.apiUrl, 'push_scheduled_pushes')) === 0, 'every push to be made', 60_000, 100);
    const messages: { id: string }[] = [];
    for (let cursor: unknown = ''; cursor !== null; ) {
      const page = (await v1(after.apiUrl, `/users/away/messages?limit=1000&cursor=${String(cursor)}`)).body;
      messages.push(...(page.messages as { id: string }[]));
      cursor = page.cursor;
    }
    const ids = messages.map((m) => m.id);
    expect(ids).to.have.length(count);
    expect(new Set(ids).size).to.equal(count);
    // stored in the order they were due (one time, so by id): the rest of the batch the killed
    // server had claimed came first after the restart, not after the others when its lease ended
    expect(ids).to.deep.equal([...scheduled].sort());
    expect(await metric(after.apiUrl, 'push_scheduled_dropped_total')).to.equal(0);
    // one batch at most was under a claim when the server was killed (none when the kill fell
    // between two batches)
    expect(occurrences(second.output(), /claimed again \(claim 2\)/)).to.be.at.most(CLAIM_BATCH);
  });

  it('redelivers kept messages oldest first, in push order, after a SIGKILL and a restart, a window at a time', async () => {
    const dir = dataDir();
    const env = { STORE: 'embedded', DATA_DIR: dir, IO_PORT: '0', API_PORT: '0', WEB_PORT: 'off', PUSH_SECRET: SECRET, REDELIVERY_WINDOW: '3' };
    const first = spawnStart([], env, 'first');
    const before = await first.started();
    const pushed: string[] = [];
    // ids that sort otherwise than they were pushed: the order is the push's, not the id's
    for (let i = 0; i < 10; i++) {
      const id = `m-${(i * 7) % 10}-${randomBytes(2).toString('hex')}`;
      expect((await v1(before.apiUrl, '/push', { to: 'ordered', data: i, ttl: 600, id })).body).to.include({ stored: 1 });
      pushed.push(id);
    }
    expect(await first.kill()).to.deep.equal({ code: null, signal: 'SIGKILL' });

    const second = spawnStart([], env, 'second');
    const after = await second.started();
    const page = await connectClient('v4', after.ioUrl);
    expect(await page.request('login', 'ordered')).to.deep.equal({ ok: true, uid: 'ordered', pending: 10 });
    const got: unknown[] = [];
    for (let i = 0; i < 10; i++) {
      // acked one by one: with REDELIVERY_WINDOW 3 the later ones go out as the acks come
      const [data, meta, ack] = await page.waitFor('message');
      got.push([data, (meta as { id: string }).id]);
      (ack as () => void)();
    }
    expect(got).to.deep.equal(pushed.map((id, i) => [i, id]));
  });

  it('stops a second server on the same DATA_DIR with one line; SIGTERM closes the store and frees it', async () => {
    const dir = dataDir();
    const first = startEmbedded(dir, 'first');
    const { apiUrl } = await first.started();
    await v1(apiUrl, '/push', { to: 'kept', data: 'across a stop', ttl: 600 });
    const second = startEmbedded(dir, 'second');
    expect((await second.exited).code).to.equal(1);
    expect(second.stderr()).to.equal(
      `push server: cannot start: DATA_DIR ${dir} is in use by another server (pid ${first.pid}); stop it or use another DATA_DIR\n`,
    );
    expect(first.running()).to.equal(true);
    expect((await first.stop()).code).to.equal(0);
    const third = startEmbedded(dir, 'third');
    const after = await third.started();
    expect(((await v1(after.apiUrl, '/users/kept/messages')).body.messages as unknown[]).length).to.equal(1);
  });

  it('stops with one line on a corrupt data file', async () => {
    const dir = dataDir();
    mkdirSync(join(dir, 'store.mdb'));
    writeFileSync(join(dir, 'store.mdb', 'data.mdb'), randomBytes(64 * 1024));
    const run = startEmbedded(dir);
    expect((await run.exited).code).to.equal(1);
    expect(run.stderr()).to.match(damagedLine(dir, 'not an LMDB file'));
  });

  it('stops with one line on a DATA_DIR that cannot be created', async () => {
    const file = join(dataDir(), 'a-file');
    writeFileSync(file, 'not a directory');
    const run = startEmbedded(join(file, 'data'));
    expect((await run.exited).code).to.equal(1);
    expect(run.stderr()).to.match(/^push server: cannot start: DATA_DIR .*a-file\/data: cannot create it \(ENOTDIR[^\n]*\)\n$/);
  });
});

/** Every file and folder under `dir` (itself left out), with its permission bits, in octal. */
function modesUnder(dir: string): Record<string, string> {
  const modes: Record<string, string> = {};
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const path = join(entry.parentPath, entry.name);
    modes[relative(dir, path)] = (statSync(path).mode & 0o777).toString(8);
  }
  return modes;
}

/** start.ts as startEmbedded, spawned under umask 022 (the common default) whatever the tests run with. */
function startUnderUmask022(dir: string, name = ''): StartProcess {
  const before = process.umask(0o022);
  try {
    return startEmbedded(dir, name);
  } finally {
    process.umask(before);
  }
}

describe('STORE=embedded: files, lock and damage (issue 21)', function () {
  this.timeout(60_000);
  afterEach(cleanupAll);

  it('creates every file of the store 0600 and its folder 0700 in an existing 0755 DATA_DIR, takes back 0644 files of an earlier version, and warns once that DATA_DIR is open to others', async () => {
    const dir = dataDir();
    chmodSync(dir, 0o755);
    const first = startUnderUmask022(dir, 'first');
    const { apiUrl } = await first.started();
    expect((await v1(apiUrl, '/push', { to: 'away', data: 'private', ttl: 600 })).body).to.include({ stored: 1 });
    expect(modesUnder(dir)).to.deep.equal({ 'owner.mdb': '600', 'owner.mdb-lock': '600', 'store.mdb': '700', 'store.mdb/data.mdb': '600', 'store.mdb/lock.mdb': '600' });
    expect(statSync(dir).mode & 0o777, 'an existing DATA_DIR keeps its mode').to.equal(0o755);
    expect(occurrences(first.output(), /is open to other users/)).to.equal(1);
    expect(first.output()).to.include(`DATA_DIR ${dir} is open to other users (mode 0755)`);
    expect((await first.stop()).code).to.equal(0);

    // as an earlier version left them: the umask's modes
    for (const path of ['store.mdb/data.mdb', 'store.mdb/lock.mdb', 'owner.mdb']) chmodSync(join(dir, path), 0o644);
    chmodSync(join(dir, 'store.mdb'), 0o755);
    const second = startUnderUmask022(dir, 'second');
    const after = await second.started();
    expect(modesUnder(dir)).to.deep.equal({ 'owner.mdb': '600', 'owner.mdb-lock': '600', 'store.mdb': '700', 'store.mdb/data.mdb': '600', 'store.mdb/lock.mdb': '600' });
    expect(((await v1(after.apiUrl, '/users/away/messages')).body.messages as unknown[]).length).to.equal(1);
  });

  it('does not warn on a DATA_DIR of its own user alone', async () => {
    const dir = dataDir();
    chmodSync(dir, 0o700);
    const run = startUnderUmask022(dir);
    await run.started();
    expect(run.output()).not.to.include('open to other users');
  });

  it('starts where a live process unrelated to the store has the pid named in the lock: a server.lock of an earlier version, or the owner record', async () => {
    const dir = dataDir();
    // a live process that never opened the store, as one that got a killed server's pid after a reboot
    const unrelated = spawn('sleep', ['600'], { stdio: 'ignore' });
    onCleanup(() => unrelated.kill('SIGKILL'));
    const pid = unrelated.pid!;
    writeFileSync(join(dir, 'server.lock'), String(pid));
    const owner = open<{ pid: number }, string>({ path: join(dir, 'owner.mdb'), noSubdir: true });
    await owner.put('owner', { pid });
    await owner.close();

    const run = startEmbedded(dir);
    await run.started();
    expect(existsSync(join(dir, 'server.lock')), 'the old pid file is removed').to.equal(false);
    // and the lock is held: another server is refused, naming this one
    const second = startEmbedded(dir, 'second');
    expect((await second.exited).code).to.equal(1);
    expect(second.stderr()).to.equal(`push server: cannot start: DATA_DIR ${dir} is in use by another server (pid ${run.pid}); stop it or use another DATA_DIR\n`);
    expect(run.running()).to.equal(true);
  });

  it('lets exactly one of three servers started at once on one DATA_DIR run; the others stop with one line naming it', async () => {
    const dir = dataDir();
    const runs = ['a', 'b', 'c'].map((name) => startEmbedded(dir, name));
    // each either prints its start line or exits
    await Promise.all(runs.map((run) => run.started().catch(() => run.exited)));
    const running = runs.filter((run) => run.running());
    expect(running, 'servers running').to.have.length(1);
    for (const run of runs.filter((r) => r !== running[0])) {
      expect(await run.exited).to.deep.equal({ code: 1, signal: null });
      expect(run.stderr()).to.equal(`push server: cannot start: DATA_DIR ${dir} is in use by another server (pid ${running[0]!.pid}); stop it or use another DATA_DIR\n`);
    }
  });
});

/** Keeps `count` messages for `uid` through the push API, 100 a batch; the data of each is `${marker}-${i}-` and filler. */
async function keep(apiUrl: string, uid: string, count: number, marker: string): Promise<void> {
  for (let first = 0; first < count; first += 100) {
    const messages = Array.from({ length: Math.min(100, count - first) }, (_, i) => ({ to: uid, data: `${marker}-${first + i}-${'x'.repeat(200)}`, ttl: 600 }));
    expect((await v1(apiUrl, '/push/batch', { messages })).status).to.equal(200);
  }
}

/** LMDB's page size, from the first meta page. */
function pageSize(file: string): number {
  return readFileSync(file).readUInt32LE(48);
}

/** Changes one character in every copy of `text` in `file` (LMDB leaves old copies in free pages): a record's bytes, not its structure. */
function flipIn(file: string, text: string): number {
  const bytes = readFileSync(file);
  let flipped = 0;
  for (let at = bytes.indexOf(text); at !== -1; at = bytes.indexOf(text, at + 1)) {
    bytes[at + text.length - 1]! ^= 0x01;
    flipped++;
  }
  writeFileSync(file, bytes);
  return flipped;
}

/** The one line a damaged store stops the start with, `reason` a pattern. */
function damagedLine(dir: string, reason: string): RegExp {
  const quote = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const store = join(dir, 'store.mdb');
  return new RegExp(
    `^push server: cannot start: DATA_DIR ${quote(dir)}: the store's file ${quote(join(store, 'data.mdb'))} is damaged \\(${reason}\\); ` +
      `to start with an empty store, move ${quote(store)} aside \\(mv ${quote(store)} ${quote(store)}\\.damaged\\): its stored messages, push ids and scheduled pushes are then lost \\(docs/durability\\.md#a-damaged-store\\)\\n$`,
  );
}

describe('STORE=embedded: a damaged store (issue 21)', function () {
  this.timeout(90_000);
  afterEach(cleanupAll);

  /** A store of 300 kept messages left by a server stopped with SIGTERM; its data file. */
  async function storeOf300(): Promise<{ dir: string; file: string }> {
    const dir = dataDir();
    const run = startEmbedded(dir, 'filling');
    await keep((await run.started()).apiUrl, 'away', 300, 'kept');
    expect((await run.stop()).code).to.equal(0);
    return { dir, file: join(dir, 'store.mdb', 'data.mdb') };
  }

  const damages: [string, (file: string) => void, string][] = [
    [
      'every page past the two meta pages overwritten with random bytes',
      (file) => {
        const size = statSync(file).size;
        const fd = openSync(file, 'r+');
        writeSync(fd, randomBytes(size - 2 * pageSize(file)), 0, undefined, 2 * pageSize(file));
        closeSync(fd);
      },
      '.+',
    ],
    ['zeros over 16 pages past the meta pages', (file) => {
      const fd = openSync(file, 'r+');
      writeSync(fd, Buffer.alloc(16 * pageSize(file)), 0, undefined, 2 * pageSize(file));
      closeSync(fd);
    }, '.+'],
    ['the file cut to half its pages', (file) => truncateSync(file, Math.floor(statSync(file).size / pageSize(file) / 2) * pageSize(file)), 'cut short: \\d+ bytes, its pages need \\d+'],
    ['one character changed in a stored message (valid JSON still)', (file) => expect(flipIn(file, 'kept-150-')).to.be.above(0), 'stored message \\d+ fails its checksum'],
  ];
  for (const [what, damage, reason] of damages) {
    it(`stops with one line naming the file and the recovery, never a native crash, at every start: ${what}`, async () => {
      const { dir, file } = await storeOf300();
      damage(file);
      for (const name of ['first start', 'second start']) {
        const run = startEmbedded(dir, name);
        expect(await run.exited, `${name}: ${run.output()}`).to.deep.equal({ code: 1, signal: null });
        expect(run.stderr()).to.match(damagedLine(dir, reason));
        expect(run.stdout()).to.equal('');
      }
      // the recovery the line gives: the server starts, with an empty store
      renameSync(join(dir, 'store.mdb'), join(dir, 'store.mdb.damaged'));
      const after = await startEmbedded(dir, 'recovered').started();
      expect((await v1(after.apiUrl, '/users/away/messages')).body.messages).to.deep.equal([]);
    });
  }

  it('runs the check from the built server too (dist/, plain node: the bundled chunk runs itself as the child)', async function () {
    this.timeout(120_000); // the build, then two starts
    const root = new URL('..', import.meta.url).pathname;
    execFileSync(process.execPath, ['--import', 'tsx', 'scripts/build.ts'], { cwd: root, stdio: 'pipe' });
    const built = [process.execPath, join(root, 'dist', 'start.js')];
    const { dir, file } = await storeOf300();
    const settings = { STORE: 'embedded', DATA_DIR: dir, IO_PORT: '0', API_PORT: '0', WEB_PORT: 'off', PUSH_SECRET: SECRET };
    // the walk ran: it says how far it got in 1 ms
    const hurried = spawnStart([], { ...settings, STORE_CHECK_MS: '1' }, 'built', { command: built });
    await hurried.started();
    expect(hurried.output()).to.match(/message store: \d+ records checked for damage/);
    expect((await hurried.stop()).code).to.equal(0);
    expect(flipIn(file, 'kept-7-')).to.be.above(0);
    const run = spawnStart([], settings, 'built, damaged', { command: built });
    expect(await run.exited, run.output()).to.deep.equal({ code: 1, signal: null });
    expect(run.stderr()).to.match(damagedLine(dir, 'stored message \\d+ fails its checksum'));
  });

  it('reports damage that crashes LMDB (SIGBUS past a cut file) as damage: the walk runs in a child process', async () => {
    const { dir, file } = await storeOf300();
    truncateSync(file, Math.floor(statSync(file).size / pageSize(file) / 2) * pageSize(file));
    const found = checkStore(join(dir, 'owner.mdb'), join(dir, 'store.mdb'), 10_000);
    expect(found).to.include({ damage: 'LMDB crashed reading it (SIGBUS)', file: join(dir, 'store.mdb', 'data.mdb'), complete: false });
  });

  it('checks what it can in STORE_CHECK_MS and says so, then starts', async () => {
    const { dir } = await storeOf300();
    const run = startEmbedded(dir, 'hurried', { STORE_CHECK_MS: '1' });
    const { apiUrl } = await run.started();
    expect(run.output()).to.match(/warning: message store: \d+ records checked for damage in \d+ ms \(STORE_CHECK_MS\), not all of them: the rest is not checked/);
    expect(((await v1(apiUrl, '/users/away/messages?limit=1000')).body.messages as unknown[]).length).to.equal(300);
  });

  it('leaves out a stored message damaged while the server runs, logs it once, and sends the others', async () => {
    const dir = dataDir();
    const run = startEmbedded(dir);
    const { apiUrl, ioUrl } = await run.started();
    await keep(apiUrl, 'away', 3, 'live');
    expect(flipIn(join(dir, 'store.mdb', 'data.mdb'), 'live-1-')).to.be.above(0);
    const page = await connectClient('v4', ioUrl);
    await page.login('away');
    await page.waitFor('message');
    await page.waitFor('message');
    await run.waitForOutput(/error: message store: a stored message failed its checksum and is skipped: .*store\.mdb\/data\.mdb is damaged/);
    expect(page.received('message').map(([data]) => String(data).slice(0, 7))).to.deep.equal(['live-0-', 'live-2-']);
    // read again: skipped again, logged once
    expect(((await v1(apiUrl, '/users/away/messages')).body.messages as unknown[]).length).to.equal(2);
    expect(occurrences(run.output(), /failed its checksum/)).to.equal(1);
  });
});

describe("STORE=embedded: a damaged lock file (issue 21)", function () {
  this.timeout(60_000);
  afterEach(cleanupAll);

  for (const [what, damage] of [
    ['random bytes', (file: string) => writeFileSync(file, randomBytes(statSync(file).size))],
    ['cut to its meta pages', (file: string) => truncateSync(file, 2 * pageSize(file))],
  ] as const) {
    it(`stops with one line naming owner.mdb and its recovery, never a native crash, when it holds ${what}; the store is kept`, async () => {
      const dir = dataDir();
      const first = startEmbedded(dir, 'first');
      await keep((await first.started()).apiUrl, 'away', 3, 'kept');
      expect((await first.stop()).code).to.equal(0);
      const owner = join(dir, 'owner.mdb');
      damage(owner);
      for (const name of ['first start', 'second start']) {
        const run = startEmbedded(dir, name);
        expect(await run.exited, `${name}: ${run.output()}`).to.deep.equal({ code: 1, signal: null });
        expect(run.stderr()).to.match(/^push server: cannot start: DATA_DIR .*: the lock's file .*\/owner\.mdb is damaged \(.+\); when no server runs on DATA_DIR, remove it \(rm .*\/owner\.mdb .*\/owner\.mdb-lock\): it holds only which server runs, nothing is lost\n$/);
      }
      rmSync(owner);
      rmSync(`${owner}-lock`);
      const after = await startEmbedded(dir, 'after the recovery').started();
      expect(((await v1(after.apiUrl, '/users/away/messages')).body.messages as unknown[]).length).to.equal(3);
    });
  }
});
