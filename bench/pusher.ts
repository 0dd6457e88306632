// The backend side of the load: HTTP pushes over a fixed pool of keep-alive connections
// (node:http's Agent: predictable, and what a PHP-FPM pool of persistent curl handles
// looks like to the server), and the loop that keeps every connection busy.
import { Agent, request } from 'node:http';

/** A request that takes longer than this counts as an error, so no lane can hang a phase. */
const REQUEST_TIMEOUT_MS = 10_000;

/** A request the server did not answer in time: the phase reports a timeout, not a figure. */
export class RequestTimeout extends Error {
  override name = 'RequestTimeout';
}

export interface HttpAnswer {
  status: number;
  contentType: string;
  body: string;
}

export class Pusher {
  private readonly agent: Agent;

  /**
   * `secret`: sent as `Authorization: Bearer` and as a `secret` query parameter when the
   * server under test runs with PUSH_SECRET; a server without auth ignores both.
   */
  constructor(
    private readonly host: string,
    private readonly port: number,
    readonly connections: number,
    private readonly secret: string | undefined,
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets: connections });
  }

  /** The legacy `?type=publish&to=&content=` GET; resolves the answer word or throws. */
  async legacy(to: string, content: string): Promise<string> {
    const query = new URLSearchParams({ type: 'publish', to, content });
    if (this.secret !== undefined) query.set('secret', this.secret);
    const answer = await this.send('GET', `/?${query}`);
    if (answer.status !== 200) throw new Error(`legacy push answered ${answer.status}: ${answer.body.slice(0, 200)}`);
    return answer.body;
  }

  postJson(path: string, value: unknown): Promise<HttpAnswer> {
    return this.send('POST', path, JSON.stringify(value));
  }

  private send(method: string, path: string, body?: string): Promise<HttpAnswer> {
    const headers: Record<string, string> = {};
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    if (this.secret !== undefined) headers.authorization = `Bearer ${this.secret}`;
    return new Promise((resolve, reject) => {
      const req = request({ host: this.host, port: this.port, method, path, headers, agent: this.agent }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body: text }),
        );
        res.on('error', reject);
      });
      req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new RequestTimeout(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/**
 * Runs `task(0)`, `task(1)`, ... on `lanes` concurrent lanes (one per connection: each
 * sends its next request when the previous one is answered) until `count` tasks have
 * started or `stopAt` (Date.now() ms) has passed. Resolves how many tasks were started.
 */
export async function runLanes(
  lanes: number,
  count: number,
  stopAt: number,
  task: (index: number) => Promise<void>,
): Promise<number> {
  let next = 0;
  const lane = async () => {
    while (next < count && Date.now() < stopAt) await task(next++);
  };
  await Promise.all(Array.from({ length: lanes }, lane));
  return next;
}
