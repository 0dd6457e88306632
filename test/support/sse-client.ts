// A raw HTTP client of GET /events: one real request whose body is read as an event stream,
// with every event and comment recorded from the start, so a test can wait for one that may
// already have come.
import { request, type IncomingMessage } from 'node:http';
import { onCleanup } from './cleanup.ts';
import { until } from './until.ts';

export interface SseEvent {
  event: string;
  /** The data line, parsed as JSON. */
  data: unknown;
  id?: string;
}

export class SseClient {
  readonly events: SseEvent[] = [];
  readonly comments: string[] = [];
  /** The body as text: what a refusal answers. */
  body = '';
  /**
   * The id an EventSource would send as Last-Event-ID on a reconnect: the last `id:` field
   * received, kept across events that have none (the SSE spec's last event ID buffer).
   */
  lastEventId: string | undefined;
  ended = false;
  private pending = '';

  private constructor(
    readonly status: number,
    readonly headers: IncomingMessage['headers'],
    private readonly res: IncomingMessage,
  ) {
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      this.body += chunk;
      this.pending += chunk;
      let end: number;
      while ((end = this.pending.indexOf('\n\n')) !== -1) {
        this.parse(this.pending.slice(0, end));
        this.pending = this.pending.slice(end + 2);
      }
    });
    res.on('close', () => (this.ended = true));
  }

  /** Opens `url` (a /events URL) and resolves once the answer's head has come. */
  static open(url: string, headers: Record<string, string> = {}): Promise<SseClient> {
    return new Promise((resolve, reject) => {
      const req = request(url, { headers }, (res) => {
        const client = new SseClient(res.statusCode ?? 0, res.headers, res);
        onCleanup(() => client.close());
        resolve(client);
      });
      req.on('error', reject);
      req.end();
    });
  }

  /** The error a refusal answered. */
  error(): { code: string; message: string } {
    return (JSON.parse(this.body) as { error: { code: string; message: string } }).error;
  }

  /** The data of every `event` received so far. */
  dataOf(event: string): unknown[] {
    return this.events.filter((e) => e.event === event).map((e) => e.data);
  }

  waitFor(match: (e: SseEvent) => boolean, what: string, timeoutMs = 5000): Promise<void> {
    return until(() => this.events.some(match), `${what}; got ${JSON.stringify(this.events)}`, timeoutMs);
  }

  waitForEnd(what = 'the stream to end', timeoutMs = 5000): Promise<void> {
    return until(() => this.ended, what, timeoutMs);
  }

  close(): void {
    this.res.destroy();
  }

  private parse(block: string): void {
    const fields: Record<string, string> = {};
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) this.comments.push(line.slice(1).trim());
      else {
        const colon = line.indexOf(':');
        if (colon > 0) fields[line.slice(0, colon)] = line.slice(colon + 1).replace(/^ /, '');
      }
    }
    if (fields.id !== undefined && !fields.id.includes('\0')) this.lastEventId = fields.id;
    if (fields.data === undefined) return;
    this.events.push({ event: fields.event ?? 'message', data: JSON.parse(fields.data), ...(fields.id !== undefined ? { id: fields.id } : {}) });
  }
}
