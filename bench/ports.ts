// A free TCP port on loopback, for processes the bench starts on fixed ports (the soak's
// restarts need the same ports again; the Redis cost bench starts its own redis-server).
import { once } from 'node:events';
import { createServer } from 'node:net';

export async function freePort(host: string): Promise<number> {
  const server = createServer();
  server.listen(0, host);
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (typeof address !== 'object' || address === null) throw new Error('no port');
  return address.port;
}
