// The bench's own connection to Redis for `npm run bench:redis`: a minimal RESP client that
// counts every byte it writes and reads and every command it sends, so that what the bench
// itself costs Redis (CONFIG RESETSTAT, INFO, the ZCARD polls) can be taken out of Redis's
// totals exactly, leaving the nodes' traffic alone.
//
// How Redis counts (7.x): total_net_input_bytes grows when Redis reads a query, before it
// runs it, so the bytes of CONFIG RESETSTAT itself are zeroed by it; its reply (+OK) is
// written after and counted. total_net_output_bytes grows when a reply is written, so the
// reply of the INFO that reads the totals is not in them. commandstats counts every command
// run, the calls a Lua script makes included.
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';

type Reply = string | number | null | Reply[];

/** One Redis window: what the nodes alone made Redis do between resetStats() and read(). */
export interface Window {
  ms: number;
  /** Calls per command (commandstats names: `evalsha`, `pubsub|numsub`), the bench's own removed. */
  calls: Record<string, number>;
  /** Bytes Redis read from the nodes and wrote to them. */
  bytesIn: number;
  bytesOut: number;
}

function encode(args: readonly string[]): Buffer {
  let text = `*${args.length}\r\n`;
  for (const arg of args) text += `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`;
  return Buffer.from(text);
}

/** Parses one reply at `at` of `buf`; null when it is not all there yet. */
function parse(buf: Buffer, at: number): { value: Reply; end: number } | null {
  const eol = buf.indexOf('\r\n', at);
  if (eol < 0) return null;
  const head = buf.toString('utf8', at + 1, eol);
  switch (String.fromCharCode(buf[at]!)) {
    case '+':
      return { value: head, end: eol + 2 };
    case '-':
      throw new Error(`redis: ${head}`);
    case ':':
      return { value: Number(head), end: eol + 2 };
    case '$': {
      const length = Number(head);
      if (length < 0) return { value: null, end: eol + 2 };
      if (buf.length < eol + 2 + length + 2) return null;
      return { value: buf.toString('utf8', eol + 2, eol + 2 + length), end: eol + 2 + length + 2 };
    }
    case '*': {
      const items: Reply[] = [];
      let end = eol + 2;
      for (let i = 0; i < Number(head); i++) {
        const item = parse(buf, end);
        if (item === null) return null;
        items.push(item.value);
        end = item.end;
      }
      return { value: items, end };
    }
    default:
      throw new Error(`redis: unexpected reply type ${JSON.stringify(buf.toString('utf8', at, at + 1))}`);
  }
}

/** INFO's `name:value` lines and commandstats. */
export function parseInfo(text: string): { fields: Map<string, string>; calls: Record<string, number> } {
  const fields = new Map<string, string>();
  const calls: Record<string, number> = {};
  for (const line of text.split('\r\n')) {
    const stat = /^cmdstat_([^:]+):calls=(\d+),/.exec(line);
    if (stat) calls[stat[1]!] = Number(stat[2]);
    const colon = line.indexOf(':');
    if (colon > 0 && !line.startsWith('#')) fields.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return { fields, calls };
}

/** The commandstats name of a command the bench sends: lower case, `config|resetstat` for subcommands. */
function statName(args: readonly string[]): string {
  const name = args[0]!.toLowerCase();
  return name === 'config' ? `${name}|${args[1]!.toLowerCase()}` : name;
}

export class StatsConnection {
  private buffered: Buffer = Buffer.alloc(0);
  private waiting: { resolve: (r: Reply) => void; reject: (e: Error) => void } | null = null;
  /** Since the last resetStats(): bytes this connection wrote (after RESETSTAT) and read, and its commands. */
  private written = 0;
  private read = 0;
  private mine: Record<string, number> = {};
  private startedAt = 0;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.read += chunk.length;
      this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
      this.drain();
    });
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('redis: stats connection closed')));
  }

  static async open(port: number, host: string): Promise<StatsConnection> {
    const socket = connect(port, host);
    await once(socket, 'connect');
    return new StatsConnection(socket);
  }

  private drain(): void {
    if (!this.waiting) return;
    let parsed: { value: Reply; end: number } | null;
    try {
      parsed = parse(this.buffered, 0);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    if (parsed === null) return;
    this.buffered = this.buffered.subarray(parsed.end);
    const { resolve } = this.waiting;
    this.waiting = null;
    resolve(parsed.value);
  }

  private fail(err: Error): void {
    const waiting = this.waiting;
    this.waiting = null;
    waiting?.reject(err);
  }

  /** Sends one command and waits for its reply: one at a time, so every byte read is a reply's. */
  command(...args: string[]): Promise<Reply> {
    if (this.waiting) throw new Error('redis: one command at a time');
    const frame = encode(args);
    const reply = new Promise<Reply>((resolve, reject) => (this.waiting = { resolve, reject }));
    this.socket.write(frame);
    this.written += frame.length;
    const name = statName(args);
    this.mine[name] = (this.mine[name] ?? 0) + 1;
    return reply;
  }

  /** CONFIG RESETSTAT: Redis's counters start over, and so do this connection's. */
  async resetStats(): Promise<void> {
    const reply = this.command('CONFIG', 'RESETSTAT');
    // read before it ran, so zeroed by it: only what comes after counts
    this.written = 0;
    this.read = 0;
    this.mine = { 'config|resetstat': 1 };
    this.startedAt = performance.now();
    await reply;
  }

  /** Reads Redis's counters and takes this connection's own traffic and commands out of them. */
  async window(): Promise<Window> {
    const readBefore = this.read; // the INFO reply below is not in the totals it reports
    const ms = performance.now() - this.startedAt;
    const text = await this.command('INFO', 'all');
    // its bytes in are counted before it runs, its call only after: not in what it reports
    this.mine['info'] = (this.mine['info'] ?? 1) - 1;
    if (typeof text !== 'string') throw new Error('redis: INFO did not answer text');
    const { fields, calls } = parseInfo(text);
    for (const [name, count] of Object.entries(this.mine)) {
      const left = (calls[name] ?? 0) - count;
      if (left < 0) throw new Error(`redis: commandstats count fewer ${name} (${calls[name] ?? 0}) than the bench sent (${count})`);
      if (left === 0) delete calls[name];
      else calls[name] = left;
    }
    const number = (name: string) => {
      const value = Number(fields.get(name));
      if (!Number.isFinite(value)) throw new Error(`redis: INFO has no ${name}`);
      return value;
    };
    return {
      ms,
      calls,
      bytesIn: number('total_net_input_bytes') - this.written,
      bytesOut: number('total_net_output_bytes') - readBefore,
    };
  }

  close(): void {
    this.socket.destroy();
  }
}
