// The lean emit path (src/lean-emit.ts): pushes to a uid's pages written straight to their
// WebSockets. It must be taken (no engine.io packet for a page on WebSocket), send what
// Socket.IO would (both client versions decode it), never overtake what engine.io still holds
// for a page, and leave polling pages, upgrades and clusters as they were.
import { expect } from 'chai';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { io as ioV4 } from 'socket.io-client';
import ioV2 from 'socket.io-client-v2';
import { connectClient, TestClient, type ClientVersion, type Transports } from './support/clients.ts';
import { REDIS_SERVER, startRedis } from './support/redis-server.ts';
import { legacyPush, startServer, type TestServer } from './support/server.ts';
import { until } from './support/until.ts';

/** The parts of a server-side engine.io connection these tests look at. */
interface EngineConn {
  readonly upgrading: boolean;
  readonly writeBuffer: readonly unknown[];
  readonly transport: { readonly name: string; readonly writable: boolean; readonly socket?: { readonly bufferedAmount: number } };
  on(event: 'packetCreate', listener: (packet: { type: string; data?: unknown }) => void): void;
  once(event: 'upgrading', listener: (transport: { socket: { _socket: { pause(): void; resume(): void } } }) => void): void;
}

function connOf(server: TestServer, uid: string): EngineConn {
  const socket = [...server.io.of('/').sockets.values()].find((s) => s.data.uid === uid);
  if (!socket) throw new Error(`no socket logged in as ${uid}`);
  return socket.conn as unknown as EngineConn;
}

/** Counts the engine.io packets made for a connection's pushes: each is an emit Socket.IO's path took. */
function countPackets(conn: EngineConn): { pushes: number } {
  const count = { pushes: 0 };
  conn.on('packetCreate', (packet) => {
    // not the online counts every page is sent
    if (packet.type === 'message' && /^2\["(new_msg|note)"/.test(String(packet.data))) count.pushes++;
  });
  return count;
}

async function publish(server: TestServer, to: string, content: string): Promise<void> {
  const { status, body } = await legacyPush(server.apiUrl, { type: 'publish', to, content });
  expect(status).to.equal(200);
  expect(body).to.equal('ok');
}

async function v1(apiUrl: string, body: unknown): Promise<void> {
  const res = await fetch(`${apiUrl}/api/v1/push`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect(res.status, await res.clone().text()).to.equal(200);
  await res.text();
}

async function page(server: TestServer, version: ClientVersion, uid: string, transports?: Transports): Promise<TestClient> {
  const client = await connectClient(version, server.ioUrl, transports);
  await client.login(uid);
  return client;
}

/** The bytes of what node:net's _writev (a list of {chunk}) or _write (one chunk) was given, as text. */
function chunkText(chunks: unknown): string {
  if (Array.isArray(chunks)) return chunks.map((c: { chunk: unknown }) => chunkText(c.chunk)).join('');
  return Buffer.isBuffer(chunks) ? chunks.toString('latin1') : String(chunks);
}

const contents = (client: TestClient) => client.received('new_msg').map((args) => args[0]);

describe('lean emit path', () => {
  afterEach(cleanupAll);

  for (const version of ['v2', 'v4'] as ClientVersion[]) {
    describe(`socket.io-client ${version}`, () => {
      it('a page on WebSocket gets legacy and v1 pushes without an engine.io packet, exactly as Socket.IO sends them', async () => {
        const server = await startServer();
        const client = (await page(server, version, 'ws-page', ['websocket'])).track('note');
        const packets = countPackets(connOf(server, 'ws-page'));

        const text = 'a <b>"é"</b> & \'😀\' \\ \n end';
        await publish(server, 'ws-page', text);
        expect(await client.waitFor('new_msg')).to.deep.equal(['a &lt;b&gt;&quot;é&quot;&lt;/b&gt; &amp; &#039;😀&#039; \\ \n end']);
        const data = { nested: [1, 2.5, null, true, 'ü'], big: 'x'.repeat(50_000) };
        await v1(server.apiUrl, { to: 'ws-page', event: 'note', data, id: 'n-1' });
        const [got, meta] = await client.waitFor('note');
        expect(got).to.deep.equal(data);
        expect(meta).to.deep.include({ id: 'n-1' });
        // two rooms, one page: sent once
        await v1(server.apiUrl, { to: ['ws-page', 'nobody'], event: 'note', data: 'once', id: 'n-2' });
        await publish(server, 'ws-page', 'after');
        await client.waitFor('new_msg', (m) => m === 'after');
        expect(client.received('note').map((args) => args[0])).to.deep.equal([data, 'once']);
        expect(packets.pushes, 'engine.io message packets for pushes to a WebSocket page').to.equal(0);
      });

      it('a v1 batch to one page leaves in one TCP write, in order, mixed with stored pushes', async () => {
        const server = await startServer();
        const client = (await page(server, version, 'batched', ['websocket'])).track('note');
        // the page's TCP socket on the server: count the writes node:net makes to the kernel
        // (writev holds a list of chunks, write one chunk; the frames' text is in them)
        const tcp = (connOf(server, 'batched').transport.socket as unknown as { _socket: { _writev: (...a: unknown[]) => void; _write: (...a: unknown[]) => void } })._socket;
        let writes = 0;
        for (const name of ['_writev', '_write'] as const) {
          const original = tcp[name].bind(tcp);
          tcp[name] = (...args: unknown[]) => {
            // writes of the batch's frames (not an online count that happens to go out meanwhile)
            if (chunkText(args[0]).includes('"note"')) writes++;
            original(...args);
          };
        }
        const messages = Array.from({ length: 20 }, (_, i) => ({ to: 'batched', event: 'note', data: `b${i}` }));
        const res = await fetch(`${server.apiUrl}/api/v1/push/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages }) });
        expect(res.status).to.equal(200);
        await res.text();
        await until(() => client.received('note').length === 20, 'the whole batch at the page');
        expect(writes, 'TCP writes for a batch of 20 to one page').to.equal(1);
        // stored pushes (Socket.IO's path, with acks) between lean ones keep the batch's order
        const mixed = Array.from({ length: 10 }, (_, i) => ({ to: 'batched', event: 'note', data: `m${i}`, ...(i % 3 === 0 ? { ttl: 60 } : {}) }));
        const res2 = await fetch(`${server.apiUrl}/api/v1/push/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: mixed }) });
        expect(res2.status).to.equal(200);
        await res2.text();
        await until(() => client.received('note').length === 30, 'the mixed batch at the page');
        expect(client.received('note').slice(20).map((args) => args[0])).to.deep.equal(mixed.map((m) => m.data));
      });

      it('a polling-only page gets every push, in order, by Socket.IO\'s path', async () => {
        const server = await startServer();
        const client = await page(server, version, 'poller', ['polling']);
        const packets = countPackets(connOf(server, 'poller'));
        const sent = Array.from({ length: 30 }, (_, i) => `p${i}`);
        for (const text of sent) await publish(server, 'poller', text);
        await until(() => contents(client).length === sent.length, 'every push at the polling page');
        expect(contents(client)).to.deep.equal(sent);
        expect(packets.pushes).to.equal(sent.length);
      });

      it('a push never overtakes what engine.io still holds for a page that does not read', async () => {
        const server = await startServer({ maxSocketBufferBytes: 256 * 1024 * 1024 });
        const client = (await page(server, version, 'slow', ['websocket'])).track('note');
        const conn = connOf(server, 'slow');
        // the page stops reading: the kernel's buffers fill, then the server's WebSocket queue
        const raw = client.raw as unknown as { io: { engine: { transport: { ws: { _socket: { pause(): void; resume(): void; destroy(): void } } } } } };
        const tcp = raw.io.engine.transport.ws._socket;
        tcp.pause();
        onCleanup(() => tcp.destroy()); // should it fail while paused: the client's close would wait for its timeout
        const filler = 'f'.repeat(60_000);
        let fillers = 0;
        while ((conn.transport.socket?.bufferedAmount ?? 0) === 0) {
          if (fillers === 2000) throw new Error('2000 pushes of 60 kB and nothing waits in the server');
          await publish(server, 'slow', `${fillers++}:${filler}`);
        }
        // a kept push (with an ack: Socket.IO's path) is handed to the WebSocket, whose write
        // cannot finish: engine.io's transport stays unwritable
        await v1(server.apiUrl, { to: 'slow', event: 'new_msg', data: 'F', ttl: 60 });
        expect(conn.transport.writable).to.equal(false);
        // the next one waits in engine.io's writeBuffer
        await v1(server.apiUrl, { to: 'slow', event: 'new_msg', data: 'A', ttl: 60 });
        expect(conn.writeBuffer.length).to.equal(1);
        // a push the lean path could write at once must go after it
        await publish(server, 'slow', 'B');
        await v1(server.apiUrl, { to: 'slow', event: 'new_msg', data: 'C' });
        await publish(server, 'slow', 'D');
        expect(conn.writeBuffer.length, 'pushes waiting in engine.io').to.equal(4);
        tcp.resume();
        await until(() => contents(client).length === fillers + 5, `${fillers + 5} pushes at the page`);
        expect(contents(client).slice(fillers)).to.deep.equal(['F', 'A', 'B', 'C', 'D']);
        expect(contents(client).slice(0, fillers).map((c) => Number(String(c).split(':')[0]))).to.deep.equal([...Array(fillers).keys()]);
      });

      it('a page upgrading from polling to WebSocket gets every push in order, before, during and after the upgrade', async () => {
        const server = await startServer();
        // the page holds its upgrade probe until it is logged in over polling (it would start at once)
        let probe!: () => void;
        const probing = new Promise<void>((resolve) => (probe = resolve));
        const options = { forceNew: true, reconnection: false, transports: ['polling', 'websocket'] };
        const raw = (version === 'v4' ? ioV4(server.ioUrl, options) : ioV2(server.ioUrl, options)) as unknown as ConstructorParameters<typeof TestClient>[1];
        const engine = raw.io.engine as unknown as Record<string, (name: string) => void>;
        const method = version === 'v4' ? '_probe' : 'probe';
        const start = engine[method]!.bind(engine);
        engine[method] = (name: string) => void probing.then(() => start(name));
        const client = new TestClient(version, raw);
        onCleanup(() => client.close());
        await client.waitFor('connect');
        await client.login('upgrader');
        const conn = connOf(server, 'upgrader');
        expect(conn.transport.name).to.equal('polling');
        // the server holds the upgrade open: it reads the probe's WebSocket again only after
        // 10 pushes were made while it was under way
        let probeSocket: { pause(): void; resume(): void } | null = null;
        conn.once('upgrading', (transport) => {
          probeSocket = transport.socket._socket;
          probeSocket.pause();
        });
        probe();

        let sent = 0;
        let duringUpgrade = 0;
        let afterUpgrade = 0;
        // one push after another (each answered, so emitted, before the next)
        while (afterUpgrade < 20) {
          if (sent === 3000) throw new Error(`no upgrade after ${sent} pushes`);
          if (conn.upgrading && ++duringUpgrade === 10) probeSocket!.resume();
          if (conn.transport.name === 'websocket' && !conn.upgrading) afterUpgrade++;
          await publish(server, 'upgrader', `u${sent++}`);
        }
        await until(() => contents(client).length === sent, `${sent} pushes at the page`);
        expect(contents(client)).to.deep.equal(Array.from({ length: sent }, (_, i) => `u${i}`));
        expect(client.transport).to.equal('websocket');
        expect(duringUpgrade).to.equal(10);
        expect(sent).to.be.greaterThan(30); // some before the upgrade began, on polling
      });
    });
  }

  describe('a cluster (Redis adapter)', () => {
    before(function () {
      if (!REDIS_SERVER) this.skip();
    });

    it("a push through either node reaches a uid's pages on both nodes exactly once", async () => {
      const redis = await startRedis();
      onCleanup(() => redis.stop());
      const a = await startServer({ redisUrl: redis.url });
      const b = await startServer({ redisUrl: redis.url });
      const onA = await page(a, 'v2', 'twice', ['websocket']);
      const onB = await page(b, 'v4', 'twice', ['websocket']);
      const sent: string[] = [];
      for (let i = 0; i < 10; i++) {
        for (const node of [a, b]) {
          const text = `c${sent.length}`;
          sent.push(text);
          await publish(node, 'twice', text);
        }
      }
      // each node's subscription delivers in order: after the last, a duplicate would have come
      for (const client of [onA, onB]) {
        await until(() => contents(client).length >= sent.length, `${client.version} page to get ${sent.length} pushes`);
        await client.waitFor('new_msg', (m) => m === sent.at(-1));
      }
      await publish(a, 'twice', 'last');
      await Promise.all([onA, onB].map((c) => c.waitFor('new_msg', (m) => m === 'last')));
      // pushes through the other node come by Redis, so they may arrive after later local ones
      expect(contents(onA).sort()).to.deep.equal([...sent, 'last'].sort());
      expect(contents(onB).sort()).to.deep.equal([...sent, 'last'].sort());
    });
  });
});
