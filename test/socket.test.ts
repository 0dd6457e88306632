// docs/protocol.md §3, the legacy socket events, with real socket.io-client 2.x and 4.x over every transport.
import { expect } from 'chai';
import { cleanupAll } from './support/cleanup.ts';
import { connectClient, countsHtml, type ClientVersion, type Transports } from './support/clients.ts';
import { forEachEngine } from './support/engines.ts';
import { legacyPush } from './support/server.ts';
import { until } from './support/until.ts';

const VERSIONS: ClientVersion[] = ['v4', 'v2'];
const TRANSPORTS: { name: string; transports?: Transports; expect: string }[] = [
  { name: 'default transports (polling, then upgrade)', expect: 'websocket' },
  { name: 'websocket only', transports: ['websocket'], expect: 'websocket' },
  { name: 'long-polling only', transports: ['polling'], expect: 'polling' },
];

// Login, pushes and online counts go through presence: on both engines. The transports and
// the rest are the same code on either, so they run on memory alone.
forEachEngine('socket protocol', (startServer, engine) => {
  afterEach(cleanupAll);
  const onMemory = (title: string, test: Mocha.AsyncFunc) => {
    if (engine === 'memory') it(title, test);
  };

  for (const version of VERSIONS) {
    for (const t of engine === 'memory' ? TRANSPORTS : TRANSPORTS.slice(0, 1)) {
      describe(`socket.io-client ${version}, ${t.name}`, () => {
        it('logs in, gets the online count, and receives pushes to its uid and to everyone', async () => {
          const server = await startServer();
          const alice = await connectClient(version, server.ioUrl, t.transports);
          const bob = await connectClient(version, server.ioUrl, t.transports);
          expect(await alice.legacyLogin('alice')).to.equal(countsHtml(1, 1));
          expect(await bob.login(1445590039000)).to.equal(countsHtml(2, 2));

          expect(await legacyPush(server.apiUrl, { type: 'publish', to: 'alice', content: 'for alice' }))
            .to.deep.equal({ status: 200, body: 'ok' });
          // a numeric uid is compared as a string
          expect(await legacyPush(server.apiUrl, { type: 'publish', to: '1445590039000', content: 'for bob' }))
            .to.deep.equal({ status: 200, body: 'ok' });
          expect(await legacyPush(server.apiUrl, { type: 'publish', to: '', content: 'for all' }))
            .to.deep.equal({ status: 200, body: 'ok' });

          expect(await alice.waitFor('new_msg')).to.deep.equal(['for alice']);
          expect(await alice.waitFor('new_msg')).to.deep.equal(['for all']);
          expect(await bob.waitFor('new_msg')).to.deep.equal(['for bob']);
          expect(await bob.waitFor('new_msg')).to.deep.equal(['for all']);
          if (t.expect === 'websocket') {
            await until(() => alice.transport === 'websocket', 'upgrade to websocket');
          }
          expect(alice.transport).to.equal(t.expect);
        });
      });
    }

    describe(`socket.io-client ${version}, online counts`, () => {
      it('counts distinct uids and pages as pages open and close', async () => {
        const server = await startServer();
        const watcher = await connectClient(version, server.ioUrl); // never logs in: not counted
        const a1 = await connectClient(version, server.ioUrl);
        const a2 = await connectClient(version, server.ioUrl);
        const b = await connectClient(version, server.ioUrl);

        expect(await a1.login('a')).to.equal(countsHtml(1, 1));
        await watcher.waitFor('update_online_count', (h) => h === countsHtml(1, 1));
        expect(await a2.login('a')).to.equal(countsHtml(1, 2)); // two pages of one uid: one user
        await watcher.waitFor('update_online_count', (h) => h === countsHtml(1, 2));
        await a1.waitFor('update_online_count', (h) => h === countsHtml(1, 2));
        expect(await b.login('b')).to.equal(countsHtml(2, 3));
        await watcher.waitFor('update_online_count', (h) => h === countsHtml(2, 3));

        b.close();
        await watcher.waitFor('update_online_count', (h) => h === countsHtml(1, 2));
        a1.close();
        await watcher.waitFor('update_online_count', (h) => h === countsHtml(1, 1));
        expect(await legacyPush(server.apiUrl, { type: 'publish', to: 'a', content: 'x' }))
          .to.deep.equal({ status: 200, body: 'ok' });
        a2.close();
        await watcher.waitFor('update_online_count', (h) => h === countsHtml(0, 0));
        expect(await legacyPush(server.apiUrl, { type: 'publish', to: 'a', content: 'x' }))
          .to.deep.equal({ status: 200, body: 'offline' });
      });

      onMemory('broadcasts a count only when it changed', async () => {
        // A 1 ms timer ticks many times between logins: a broadcast on every tick would show.
        const server = await startServer({ onlineCountIntervalMs: 1 });
        const watcher = await connectClient(version, server.ioUrl);
        for (const uid of ['a', 'b', 'c', 'd']) {
          const client = await connectClient(version, server.ioUrl);
          await client.login(uid);
        }
        await watcher.waitFor('update_online_count', (h) => h === countsHtml(4, 4));
        const seen = watcher.received('update_online_count').map(([h]) => h);
        expect(seen.at(-1)).to.equal(countsHtml(4, 4));
        expect(seen.length).to.be.at.most(4);
        seen.slice(1).forEach((h, i) => expect(h).to.not.equal(seen[i]));
      });

      onMemory('ignores a second login on the same socket', async () => {
        const server = await startServer();
        const a = await connectClient(version, server.ioUrl);
        await a.login('first');
        expect(await a.request('login', 'second')).to.deep.equal({
          ok: false,
          error: { code: 'already_logged_in', message: 'already logged in as first' },
        });
        expect((await legacyPush(server.apiUrl, { type: 'publish', to: 'second', content: 'x' })).body).to.equal('offline');
        expect((await legacyPush(server.apiUrl, { type: 'publish', to: 'first', content: 'y' })).body).to.equal('ok');
        expect(await a.waitFor('new_msg')).to.deep.equal(['y']);
      });

      onMemory('rejects an invalid uid with an error, and counts nothing', async () => {
        const server = await startServer();
        const a = await connectClient(version, server.ioUrl);
        a.emit('login', { nested: true });
        const [err] = await a.waitFor('login_error');
        expect(err).to.deep.equal({ code: 'invalid_uid', message: 'uid must be a string or a number' });
        expect(await a.request('login', '')).to.deep.include({ ok: false });
        expect(await a.request('login', 'x'.repeat(257))).to.deep.include({ ok: false });
        // still free to log in properly afterwards
        expect(await a.request('login', { uid: 'ok-now' })).to.deep.equal({ ok: true, uid: 'ok-now', pending: 0 });
        expect(await a.waitFor('update_online_count')).to.deep.equal([countsHtml(1, 1)]);
      });
    });
  }
});
