// Instructions per targeted push, counted by callgrind: repeatable on a machine where timing
// is not (the other core busy). Starts the built server (dist/start.js, as `npm start` runs it)
// under `valgrind --tool=callgrind`, connects PROFILE_CLIENTS socket.io-client 2.x pages over
// websocket from this process (not counted: only the server process is traced), logs each in
// as its own uid, then sends PROFILE_WARMUP legacy GET pushes uncounted (callgrind's
// instrumentation off: the start, the logins and the JIT's first compiles stay out), then each
// phase of PROFILE_PUSHES pushes counted, one callgrind dump each, on keep-alive connections,
// each push to a page in turn, waiting until every page has its pushes. Each phase's Ir over its
// pushes is the Ir per push; two phases show how steady it is.
// PROFILE_KIND=batch sends the pushes as v1 batches of 100 ({to, event: 'new_msg', data}), so
// the figure is per message of a batch.
// PROFILE_TOOL=cpu-prof runs the server natively with --cpu-prof instead (the .cpuprofile in
// PROFILE_OUT) to see where the time goes; PROFILE_TOOL=none runs it natively and prints
// the server's CPU time per push of each phase, user and system (the kernel: the writes) apart.
// Usage: npm run build && node --import tsx bench/push-profile.ts
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pusher } from './pusher.ts';

interface V2Socket {
  on(event: string, fn: (...args: unknown[]) => void): void;
  emit(event: string, ...args: unknown[]): void;
  close(): void;
}
const connectV2 = createRequire(import.meta.url)('socket.io-client-v2') as (url: string, opts: object) => V2Socket;

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const clients = Number(process.env.PROFILE_CLIENTS ?? 20);
const warmup = Number(process.env.PROFILE_WARMUP ?? 3000);
const phases = (process.env.PROFILE_PUSHES ?? '1000,1000').split(',').map(Number);
const lanes = Number(process.env.PROFILE_CONNECTIONS ?? 4);
const tool = process.env.PROFILE_TOOL ?? 'callgrind';
const batch = process.env.PROFILE_KIND === 'batch' ? 100 : 0;
const out = process.env.PROFILE_OUT ?? mkdtempSync(join(tmpdir(), 'push-profile-'));
const serverEnv = Object.fromEntries(
  (process.env.PROFILE_SERVER_ENV ?? '').split(/\s+/).filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
);

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    // valgrind names its control pipes after HOST, which the server's environment sets
    const c = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, HOST: '127.0.0.1' } });
    c.once('error', reject);
    c.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`))));
  });
}

/** The process's user and system CPU time in ms, from /proc (Linux; ticks of 10 ms). */
function cpuMs(pid: number): { user: number; system: number } {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return { user: Number(fields[11]) * 10, system: Number(fields[12]) * 10 };
}

function totalIr(file: string): number {
  const m = /^(?:summary|totals):\s+(\d+)/m.exec(readFileSync(file, 'utf8'));
  if (!m) throw new Error(`no totals in ${file}`);
  return Number(m[1]);
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'push-profile-data-'));
  const file = join(out, 'callgrind.out');
  const node = ['--single-threaded', ...(tool === 'cpu-prof' ? ['--cpu-prof', `--cpu-prof-dir=${out}`] : []), process.env.PROFILE_SERVER ?? join(ROOT, 'dist/start.js')];
  const argv = tool === 'callgrind' ? ['valgrind', '--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${file}`, 'node', ...node] : ['node', ...node];
  const child = spawn(argv[0]!, argv.slice(1), {
    env: { ...process.env, HOST: '127.0.0.1', IO_PORT: '0', API_PORT: '0', WEB_PORT: 'off', MAX_CONNECTIONS_PER_IP: '0', DATA_DIR: dataDir, ...serverEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  process.once('exit', () => child.kill('SIGKILL')); // a failed run leaves no server behind
  let log = '';
  const ports = await new Promise<{ io: number; api: number }>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      log += chunk.toString();
      const m = /socket\.io http:\/\/[^:]+:(\d+) \| push API http:\/\/[^:]+:(\d+)/.exec(log);
      if (m) resolve({ io: Number(m[1]), api: Number(m[2]) });
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`server exited ${code}: ${log.slice(-500)}`)));
  });
  const pages: V2Socket[] = [];
  const got = new Array<number>(clients).fill(0);
  await Promise.all(
    Array.from({ length: clients }, (_, i) => new Promise<void>((resolve) => {
      const s = connectV2(`http://127.0.0.1:${ports.io}`, { transports: ['websocket'], reconnection: false, forceNew: true });
      pages.push(s);
      s.on('connect', () => s.emit('login', `u${i}`, () => resolve()));
      s.on('new_msg', () => got[i]!++);
    })),
  );
  // with PUSH_SECRET in PROFILE_SERVER_ENV the pushes carry it, as a backend would
  const pusher = new Pusher('127.0.0.1', ports.api, lanes, serverEnv.PUSH_SECRET);
  let sent = 0;
  const total = () => got.reduce((x, y) => x + y, 0);
  const pushes = async (count: number): Promise<number> => {
    const started = Date.now();
    const end = sent + count;
    await Promise.all(
      Array.from({ length: lanes }, async () => {
        while (sent < end) {
          if (batch > 0) {
            const first = sent;
            const size = Math.min(batch, end - first);
            sent += size;
            const messages = Array.from({ length: size }, (_, j) => ({ to: `u${(first + j) % clients}`, event: 'new_msg', data: `t:${first + j}:<b>` }));
            const answer = await pusher.postJson('/api/v1/push/batch', { messages });
            if (answer.status !== 200) throw new Error(`batch at ${first} answered ${answer.status}`);
            continue;
          }
          const n = sent++;
          const word = await pusher.legacy(`u${n % clients}`, `t:${n}:<b>`);
          if (word !== 'ok') throw new Error(`push ${n} answered ${word}`);
        }
      }),
    );
    while (total() < end) await new Promise((r) => setTimeout(r, 20));
    return Date.now() - started;
  };
  console.log(`warm-up: ${warmup} pushes in ${await pushes(warmup)} ms`);
  if (tool === 'callgrind') await run('callgrind_control', ['--instr=on', String(child.pid)]);
  for (const [i, count] of phases.entries()) {
    if (tool === 'callgrind') await run('callgrind_control', ['--zero', String(child.pid)]);
    const cpuBefore = cpuMs(child.pid!);
    const ms = await pushes(count);
    if (tool !== 'callgrind') {
      const after = cpuMs(child.pid!);
      const user = after.user - cpuBefore.user;
      const system = after.system - cpuBefore.system;
      const per = (t: number) => ((1000 * t) / count).toFixed(1);
      console.log(
        `phase ${i + 1}: ${count} pushes in ${ms} ms, server CPU ${user + system} ms, ${per(user + system)} µs per push ` +
          `(user ${per(user)} µs, system ${per(system)} µs: ${Math.round((100 * system) / (user + system))}% in the kernel)`,
      );
      continue;
    }
    await run('callgrind_control', [`--dump=phase${i + 1}`, String(child.pid)]);
    const dumps = readdirSync(out).filter((f) => /^callgrind\.out\.\d+$/.test(f)).sort((x, y) => Number(x.split('.').pop()) - Number(y.split('.').pop()));
    const file = join(out, dumps[dumps.length - 1]!);
    const ir = totalIr(file);
    console.log(`phase ${i + 1}: ${count} pushes, Ir ${ir}, Ir per push ${Math.round(ir / count)} (${ms} ms under callgrind; ${file})`);
  }
  pusher.close();
  for (const s of pages) s.close();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  await exited;
  rmSync(dataDir, { recursive: true, force: true });
  if (tool === 'cpu-prof') console.log(`profile in ${out}: ${readdirSync(out).join(', ')}`);
}

await main();
