// A real HTTP webhook receiver on port 0 that records every request (headers and raw body).
// It can fail the next N requests with a status or leave them hanging, and a test waits for
// requests with a deadline. Registered for cleanup, so a failing test never leaks it.
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { onCleanup } from './cleanup.ts';

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** The body exactly as received, decoded as UTF-8. */
  body: string;
  /** The status answered, or null while it hangs (and for good if it never answered). */
  status: number | null;
}

export interface WebhookReceiver {
  url: string;
  /** Every request so far, in arrival order. */
  readonly requests: readonly ReceivedRequest[];
  /** The requests answered 2xx, in arrival order. */
  delivered(): ReceivedRequest[];
  /** Answers the next `n` requests with `status` instead of 200. */
  failNext(n: number, status?: number): void;
  /** Never answers the next `n` requests (the client must time out). */
  hangNext(n: number): void;
  /**
   * Resolves the requests once there are `count` of them, or once `match(requests)` holds;
   * rejects after `timeoutMs` naming what it got.
   */
  waitFor(
    what: number | ((requests: readonly ReceivedRequest[]) => boolean),
    timeoutMs?: number,
  ): Promise<readonly ReceivedRequest[]>;
  close(): Promise<void>;
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const requests: ReceivedRequest[] = [];
  const hanging = new Set<ServerResponse>();
  const wakers = new Set<() => void>();
  let failing = 0;
  let failStatus = 500;
  let hangs = 0;

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const record: ReceivedRequest = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        status: null,
      };
      if (hangs > 0) {
        hangs--;
        hanging.add(res);
        res.on('close', () => hanging.delete(res));
      } else {
        record.status = failing > 0 ? failStatus : 200;
        if (failing > 0) failing--;
        res.writeHead(record.status, { 'content-type': 'text/plain' }).end(record.status === 200 ? 'ok' : 'nope');
      }
      requests.push(record);
      for (const wake of wakers) wake();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  let closing: Promise<void> | null = null;
  const receiver: WebhookReceiver = {
    url: `http://127.0.0.1:${port}/hooks`,
    requests,
    delivered: () => requests.filter((r) => r.status !== null && r.status >= 200 && r.status < 300),
    failNext(n, status = 500) {
      failing = n;
      failStatus = status;
    },
    hangNext(n) {
      hangs = n;
    },
    waitFor(what, timeoutMs = 5000) {
      const done = typeof what === 'number' ? (r: readonly ReceivedRequest[]) => r.length >= what : what;
      return new Promise((resolve, reject) => {
        const finish = () => {
          clearTimeout(timer);
          wakers.delete(check);
        };
        const check = () => {
          if (!done(requests)) return;
          finish();
          resolve(requests);
        };
        const timer = setTimeout(() => {
          finish();
          const got = requests.map((r) => `${r.status ?? 'hanging'} ${r.body}`);
          reject(new Error(`webhook receiver: condition not met within ${timeoutMs} ms; got ${JSON.stringify(got)}`));
        }, timeoutMs);
        wakers.add(check);
        check();
      });
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        for (const res of hanging) res.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
  onCleanup(() => receiver.close());
  return receiver;
}

/** A url where nothing listens: a port that was free a moment ago, bound and released. */
export async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}/hooks`;
}
