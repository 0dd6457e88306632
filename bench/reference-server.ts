// The benchmark's yardstick: the legacy protocol (docs/protocol.md §1-4) in as little code as
// Socket.IO allows, so "ours / reference" shows what our server costs beyond Socket.IO itself.
// Socket.IO v4 defaults plus allowEIO3 (the clients are 2.x); the push API is bare node:http,
// query string only: `?type=publish&to=&content=` answering ok / offline / fail.
// It does the same per-message work the protocol asks of any server (HTML escaping, the
// page count, the once-a-second online count broadcast), so the comparison is like for like.
// Settings: HOST, IO_PORT, API_PORT (0 = any free port). Prints one line with both ports.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';

const host = process.env.HOST ?? '127.0.0.1';
const pages = new Map<string, number>(); // uid -> logged-in sockets
let totalPages = 0;

const ioHttp = createServer();
const io = new Server(ioHttp, { allowEIO3: true });

io.on('connection', (socket) => {
  let uid: string | undefined;
  // the optional ack answers once the login is done, as our server's does (the bench waits on it)
  socket.on('login', (raw: unknown, ack?: unknown) => {
    if (uid !== undefined || (typeof raw !== 'string' && typeof raw !== 'number')) return;
    uid = String(raw);
    void socket.join(uid);
    pages.set(uid, (pages.get(uid) ?? 0) + 1);
    totalPages += 1;
    socket.emit('update_online_count', onlineCount());
    if (typeof ack === 'function') ack();
  });
  socket.on('disconnect', () => {
    if (uid === undefined) return;
    const left = (pages.get(uid) ?? 1) - 1;
    if (left === 0) pages.delete(uid);
    else pages.set(uid, left);
    totalPages -= 1;
  });
});

function onlineCount(): string {
  return `当前<b>${pages.size}</b>人在线，共打开<b>${totalPages}</b>个页面`;
}

// As the original: counts are checked once a second and sent to everyone when they changed.
let lastCount = onlineCount();
const countTimer = setInterval(() => {
  const now = onlineCount();
  if (now === lastCount) return;
  lastCount = now;
  io.emit('update_online_count', now);
}, 1000);

const HTML_ENTITY: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#039;' };

function push(req: IncomingMessage, res: ServerResponse): void {
  req.resume(); // the legacy protocol reads the query string; a body is drained and ignored
  const query = new URL(req.url ?? '/', 'http://reference').searchParams;
  let answer: string;
  if (query.get('type') !== 'publish') {
    answer = 'fail';
  } else {
    const to = query.get('to') ?? '';
    const content = (query.get('content') ?? '').replace(/[&<>"']/g, (c) => HTML_ENTITY[c] ?? c);
    if (to === '') {
      io.emit('new_msg', content);
      answer = 'ok';
    } else {
      io.to(to).emit('new_msg', content);
      answer = pages.has(to) ? 'ok' : 'offline';
    }
  }
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end(answer);
}

const apiHttp = createServer(push);

function listen(server: typeof ioHttp, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });
}

const ioPort = await listen(ioHttp, Number(process.env.IO_PORT ?? 0));
const apiPort = await listen(apiHttp, Number(process.env.API_PORT ?? 0));
console.log(`reference server: socket.io http://${host}:${ioPort} | push API http://${host}:${apiPort}`);

function stop(): void {
  clearInterval(countTimer);
  apiHttp.closeAllConnections();
  apiHttp.close();
  io.close(() => process.exit(0));
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
