// TRUST_PROXY: behind a proxy the per-address limits count the client X-Forwarded-For names,
// and only a listed proxy is believed. Real server, real socket.io-client 4.x sending the
// header, real HTTP; and the resolver's edge cases on their own.
import { expect } from 'chai';
import { io as ioV4 } from 'socket.io-client';
import { ClientAddresses } from '../src/client-address.ts';
import { ConfigError, loadConfig } from '../src/config.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import type { Transports } from './support/clients.ts';
import { recordingLogger } from './support/logger.ts';
import { startServer } from './support/server.ts';
import { until } from './support/until.ts';

/** Opens a 4.x socket that sends `forwardedFor`; resolves whether it connected or was refused. */
function open(url: string, forwardedFor: string | null, transports: Transports = ['websocket']): Promise<'connected' | 'refused'> {
  const socket = ioV4(url, {
    forceNew: true,
    reconnection: false,
    transports,
    ...(forwardedFor === null ? {} : { extraHeaders: { 'x-forwarded-for': forwardedFor } }),
  });
  onCleanup(() => socket.close());
  return new Promise((resolve) => {
    socket.once('connect', () => resolve('connected'));
    socket.once('connect_error', () => resolve('refused'));
  });
}

/** Opens `count` sockets, `batch` at a time; resolves how many connected. */
async function openMany(url: string, count: number, forwardedFor: (i: number) => string, batch = 300): Promise<number> {
  let connected = 0;
  for (let from = 0; from < count; from += batch) {
    const size = Math.min(batch, count - from);
    const outcomes = await Promise.all(Array.from({ length: size }, (_, i) => open(url, forwardedFor(from + i))));
    connected += outcomes.filter((o) => o === 'connected').length;
  }
  return connected;
}

/** A distinct documentation-range address for each i (198.18.0.0/15 holds 131 072). */
const distinct = (i: number) => `198.18.${i >> 8}.${i & 255}`;

describe('TRUST_PROXY', () => {
  afterEach(cleanupAll);

  describe('MAX_CONNECTIONS_PER_IP behind a trusted proxy', function () {
    this.timeout(60_000); // thousands of real sockets; a loaded 2-core machine is slow

    it('1200 sockets with distinct X-Forwarded-For all connect under the default cap of 1000', async () => {
      const server = await startServer({ trustProxy: ['127.0.0.1'] });
      expect(server.io.engine.clientsCount).to.equal(0);
      expect(await openMany(server.ioUrl, 1200, distinct)).to.equal(1200);
      expect(server.io.engine.clientsCount).to.equal(1200);
    });

    it('with one shared X-Forwarded-For the 1001st socket is refused, another client still connects', async () => {
      const server = await startServer({ trustProxy: ['127.0.0.1'] });
      expect(await openMany(server.ioUrl, 1000, () => '203.0.113.7')).to.equal(1000);
      expect(await open(server.ioUrl, '203.0.113.7')).to.equal('refused');
      // a hop the client added in front of nginx's does not make it someone else
      expect(await open(server.ioUrl, '192.0.2.1, 203.0.113.7')).to.equal('refused');
      expect(await open(server.ioUrl, '203.0.113.8')).to.equal('connected');
    });

    it('reads X-Forwarded-For on the polling handshake and on the websocket upgrade', async () => {
      const server = await startServer({ trustProxy: ['127.0.0.1'], maxConnectionsPerIp: 1 });
      for (const transports of [['polling'], ['websocket']] as Transports[]) {
        const [a, b] = transports[0] === 'polling' ? ['203.0.113.1', '203.0.113.2'] : ['203.0.113.3', '203.0.113.4'];
        expect(await open(server.ioUrl, a, transports), `${transports[0]} ${a}`).to.equal('connected');
        expect(await open(server.ioUrl, b, transports), `${transports[0]} ${b}`).to.equal('connected');
        expect(await open(server.ioUrl, a, transports), `${transports[0]} ${a} again`).to.equal('refused');
      }
    });

    it('logs a refused connection under the forwarded address, once per 10 s', async () => {
      const log = recordingLogger();
      const server = await startServer({ trustProxy: ['127.0.0.1'], maxConnectionsPerIp: 1 }, { log });
      expect(await open(server.ioUrl, '203.0.113.6')).to.equal('connected');
      expect(await open(server.ioUrl, '203.0.113.6')).to.equal('refused');
      expect(await open(server.ioUrl, '203.0.113.6')).to.equal('refused');
      expect(log.lines).to.deep.equal(['warn: connection refused: 203.0.113.6 has MAX_CONNECTIONS_PER_IP (1) open']);
    });

    it('counts a closed socket off the address it was opened under', async () => {
      const server = await startServer({ trustProxy: ['127.0.0.1'], maxConnectionsPerIp: 1 });
      const first = ioV4(server.ioUrl, { forceNew: true, reconnection: false, transports: ['websocket'], extraHeaders: { 'x-forwarded-for': '203.0.113.5' } });
      onCleanup(() => first.close());
      await new Promise<void>((resolve) => first.once('connect', () => resolve()));
      expect(await open(server.ioUrl, '203.0.113.5')).to.equal('refused');
      first.close();
      await until(async () => (await open(server.ioUrl, '203.0.113.5')) === 'connected', 'the slot of the closed socket');
    });
  });

  describe('a client that is not a trusted proxy', () => {
    it('does not escape MAX_CONNECTIONS_PER_IP with a spoofed X-Forwarded-For', async () => {
      for (const trustProxy of [[], ['10.0.0.0/8', '::1']]) {
        const server = await startServer({ trustProxy, maxConnectionsPerIp: 3 });
        expect(await openMany(server.ioUrl, 3, distinct)).to.equal(3);
        expect(await open(server.ioUrl, '198.51.100.99'), `TRUST_PROXY=${trustProxy.join(',')}`).to.equal('refused');
        expect(await open(server.ioUrl, null, ['polling']), `TRUST_PROXY=${trustProxy.join(',')}`).to.equal('refused');
      }
    });
  });

  describe('PUSH_RATE_PER_IP', () => {
    type Send = (server: { apiUrl: string }, forwardedFor: string, i: number) => Promise<Response>;
    const paths: [string, Send][] = [
      ['the lean GET path', (s, xff, i) => fetch(`${s.apiUrl}/?type=publish&to=u&content=${i}`, { headers: { 'x-forwarded-for': xff } })],
      ['the Koa path', (s, xff, i) =>
        fetch(`${s.apiUrl}/api/v1/push`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-forwarded-for': xff },
          body: JSON.stringify({ to: 'u', data: i }),
        })],
    ];

    for (const [name, send] of paths) {
      it(`counts per forwarded address from a trusted proxy on ${name}`, async () => {
        const server = await startServer({ pushRatePerIp: 2, trustProxy: ['127.0.0.1'] });
        // burst = 4: all at once, so the bucket hardly refills while they are answered
        const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => send(server, '203.0.113.20', i)));
        const limited = answers.filter((r) => r.status === 429);
        expect(limited.length).to.be.at.least(3);
        expect(await limited[0]!.text()).to.include('more than 2 requests a second from 203.0.113.20; retry later');
        // another client behind the same proxy has its own bucket
        const others = await Promise.all(Array.from({ length: 4 }, (_, i) => send(server, distinct(i), i)));
        expect(others.map((r) => r.status)).to.deep.equal([200, 200, 200, 200]);
      });

      it(`ignores X-Forwarded-For from a peer that is not a trusted proxy on ${name}`, async () => {
        const server = await startServer({ pushRatePerIp: 2 });
        const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => send(server, distinct(i), i)));
        const limited = answers.filter((r) => r.status === 429);
        expect(limited.length).to.be.at.least(3);
        expect(await limited[0]!.text()).to.include('from 127.0.0.1;');
      });
    }
  });

  describe('the resolver', () => {
    const resolver = new ClientAddresses(['127.0.0.1', '10.0.0.0/8', '::1', 'fd00::/8']);

    it('believes X-Forwarded-For only from a trusted peer', () => {
      expect(resolver.resolve('203.0.113.1', '198.51.100.1')).to.equal('203.0.113.1');
      expect(resolver.resolve('127.0.0.1', '198.51.100.1')).to.equal('198.51.100.1');
      expect(resolver.resolve('127.0.0.1', undefined)).to.equal('127.0.0.1');
      expect(new ClientAddresses([]).resolve('127.0.0.1', '198.51.100.1')).to.equal('127.0.0.1');
    });

    it('takes the right-most hop that is not trusted, skipping trusted ones', () => {
      expect(resolver.resolve('127.0.0.1', '192.0.2.66, 198.51.100.1')).to.equal('198.51.100.1');
      expect(resolver.resolve('127.0.0.1', '192.0.2.66, 198.51.100.1, 10.1.2.3,10.0.0.9')).to.equal('198.51.100.1');
    });

    it('takes the left-most hop when every hop is trusted', () => {
      expect(resolver.resolve('127.0.0.1', '10.9.9.9, 10.0.0.1')).to.equal('10.9.9.9');
      expect(resolver.resolve('10.0.0.2', '::1')).to.equal('::1');
    });

    it('handles IPv6 peers, hops and CIDRs in one spelling', () => {
      expect(resolver.resolve('::1', '2001:DB8:0:0::1')).to.equal('2001:db8::1');
      expect(resolver.resolve('fd12:3456::7', '2001:db8::2, fd00::1')).to.equal('2001:db8::2');
      expect(resolver.resolve('fe80::1', '2001:db8::2')).to.equal('fe80::1'); // outside fd00::/8
      expect(resolver.resolve('127.0.0.1', '[2001:db8::3]:443')).to.equal('2001:db8::3');
      expect(resolver.resolve('127.0.0.1', '198.51.100.4:5150')).to.equal('198.51.100.4');
    });

    it('treats IPv4-mapped IPv6 as the IPv4 address, as peer and as hop', () => {
      expect(resolver.resolve('::ffff:127.0.0.1', '198.51.100.1')).to.equal('198.51.100.1');
      expect(resolver.resolve('::ffff:203.0.113.9', '198.51.100.1')).to.equal('203.0.113.9');
      expect(resolver.resolve('127.0.0.1', '::ffff:198.51.100.2')).to.equal('198.51.100.2');
      expect(resolver.resolve('127.0.0.1', '198.51.100.3, ::ffff:10.0.0.1')).to.equal('198.51.100.3');
      expect(new ClientAddresses(['::ffff:127.0.0.1']).resolve('127.0.0.1', '198.51.100.5')).to.equal('198.51.100.5');
    });

    it('stops at a hop that is not an address: the trusted hop that passed it on is the client', () => {
      for (const garbage of ['unknown', '', ' ', '1.2.3.4.5', '01.2.3.4', '<script>', 'example.com', '[::1', '[::1]x']) {
        expect(resolver.resolve('127.0.0.1', garbage), JSON.stringify(garbage)).to.equal('127.0.0.1');
        expect(resolver.resolve('127.0.0.1', `198.51.100.1, ${garbage}, 10.0.0.5`), JSON.stringify(garbage)).to.equal('10.0.0.5');
      }
      // garbage left of the client's hop is never looked at
      expect(resolver.resolve('127.0.0.1', 'junk,,198.51.100.1')).to.equal('198.51.100.1');
    });

    it('walks at most 32 hops of a long chain of trusted addresses', () => {
      const header = ['198.51.100.1', ...Array.from({ length: 40 }, (_, i) => `10.0.0.${i + 1}`)].join(',');
      expect(resolver.resolve('127.0.0.1', header)).to.equal('10.0.0.9');
    });

    it('TRUST_PROXY is checked at start, naming the bad entry', () => {
      expect(loadConfig({}).trustProxy).to.deep.equal([]);
      expect(loadConfig({ TRUST_PROXY: ' 127.0.0.1, 10.0.0.0/8 ,fd00::/8,::1' }).trustProxy).to.deep.equal(['127.0.0.1', '10.0.0.0/8', 'fd00::/8', '::1']);
      for (const bad of ['nginx', '10.0.0.0/33', '::1/129', '10.0.0.0/', '10.0.0.0/8/8', '*']) {
        expect(() => loadConfig({ TRUST_PROXY: `127.0.0.1,${bad}` }), bad).to.throw(ConfigError, `${JSON.stringify(bad)} is not one`);
      }
      expect(() => loadConfig({ TRUST_PROXY: 'nginx' })).to.throw(ConfigError, /^TRUST_PROXY must be proxy addresses or CIDRs/);
    });
  });
});
