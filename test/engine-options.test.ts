// The WebSocket engine's options that matter at thousands of connections (docs/performance.md).
import { expect } from 'chai';
import { request, type IncomingMessage } from 'node:http';
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { withDeadline } from './support/clients.ts';
import { startServer } from './support/server.ts';

/** A raw WebSocket handshake that offers permessage-deflate, as socket.io-client 2.x in Node does. */
function upgrade(url: string): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = request(url, {
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
        'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits',
      },
    });
    req.on('upgrade', (res: IncomingMessage, socket: Socket) => {
      onCleanup(() => socket.destroy());
      resolve(res);
    });
    req.on('response', (res) => reject(new Error(`no upgrade: HTTP ${res.statusCode}`)));
    req.on('error', reject);
    req.end();
  });
}

describe('WebSocket engine options', () => {
  afterEach(cleanupAll);

  for (const eio of ['3', '4']) {
    it(`declines permessage-deflate (EIO=${eio}): no zlib context per connection, no deflate per push`, async () => {
      const server = await startServer();
      const res = await withDeadline(upgrade(`${server.ioUrl}/socket.io/?EIO=${eio}&transport=websocket`), 'the upgrade');
      expect(res.statusCode).to.equal(101);
      expect(res.headers['sec-websocket-extensions']).to.equal(undefined);
    });
  }
});
