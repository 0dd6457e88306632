// `npm start` is what users run: it builds dist/start.js (prestart) and runs it with plain
// node, no TypeScript loader (tsx's module-hook thread costs about 60 MB of RSS and some CPU).
// The other tests start start.ts through tsx (no build per start); this one checks the real
// command line. It runs npm itself, in the project folder, with ephemeral ports.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { startNodeFlags } from '../scripts/start-flags.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';
import { connectClient, withDeadline } from './support/clients.ts';
import { legacyPush } from './support/server.ts';
import { until } from './support/until.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const START_LINE = /socket\.io http:\/\/127\.0\.0\.1:(\d+) \| push API http:\/\/127\.0\.0\.1:(\d+)/;

/** The parent pid of `pid` (field 4 of /proc/PID/stat, after the parenthesised name). */
function parentOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null; // gone meanwhile
  }
}

/** The argv of every live descendant of `root`, by pid. */
function descendants(root: number): Map<number, string[]> {
  const found = new Map<number, string[]>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    for (let p = parentOf(pid); p !== null && p > 1; p = parentOf(p)) {
      if (p !== root) continue;
      try {
        found.set(pid, readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((s) => s !== ''));
      } catch {
        // gone meanwhile
      }
      break;
    }
  }
  return found;
}

describe('npm start', () => {
  afterEach(cleanupAll);

  it('builds and runs dist/start.js with plain node: no tsx loader, and it serves pushes', async function () {
    this.timeout(60_000); // npm, then the build, then the server
    const dataDir = mkdtempSync(join(tmpdir(), 'push-npm-start-'));
    onCleanup(() => rmSync(dataDir, { recursive: true, force: true }));
    // only what npm needs and the settings: nothing of the test run (NODE_OPTIONS, npm_config_*) leaks in
    const env = {
      PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`,
      HOME: process.env.HOME ?? tmpdir(),
      HOST: '127.0.0.1',
      IO_PORT: '0',
      API_PORT: '0',
      WEB_PORT: 'off',
      DATA_DIR: dataDir,
    };
    // its own process group, as a terminal or a service manager runs it: they signal the group
    // (npm passes a signal to `sh -c`, which would leave node running without it)
    const npm = spawn('npm', ['start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    npm.stdout.setEncoding('utf8').on('data', (c: string) => (output += c));
    npm.stderr.setEncoding('utf8').on('data', (c: string) => (output += c));
    const exited = once(npm, 'close');
    // the whole group: node holds the pipes, so npm's 'close' waits for it too
    onCleanup(async () => {
      try {
        process.kill(-npm.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
      await withDeadline(exited, 'npm start gone after SIGKILL');
    });

    await until(() => START_LINE.test(output) || npm.exitCode !== null, 'the start line of npm start', 45_000, 50);
    const [, ioPort, apiPort] = START_LINE.exec(output) ?? [];
    expect(ioPort, `npm start printed no start line:\n${output}`).to.be.a('string');
    // built before it started (prestart), so a start after an edit or a pull never runs a stale dist/
    expect(output.indexOf('built dist/start.js'), output).to.be.within(0, output.search(START_LINE));

    // npm runs the script through sh; the server is the node process among npm's descendants
    const all = [...descendants(npm.pid!)];
    const servers = all.filter(([, argv]) => /(^|\/)node$/.test(argv[0] ?? ''));
    expect(servers, `one node process under npm: ${JSON.stringify(all)}`).to.have.length(1);
    const [pid, argv] = servers[0]!;
    expect(argv.join(' ')).to.not.match(/tsx|--import|--loader|--require|\.ts\b/);
    // the node flags it runs with are the ones the benchmark and the soak read from package.json
    expect(argv.slice(1, -1)).to.deep.equal(startNodeFlags());
    expect(argv.at(-1)).to.equal('dist/start.js');
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    expect(environ.filter((e) => e.startsWith('NODE_OPTIONS=') && /tsx|--import|--loader/.test(e))).to.deep.equal([]);

    const client = await connectClient('v2', `http://127.0.0.1:${ioPort}`);
    await client.login('u1');
    expect(await legacyPush(`http://127.0.0.1:${apiPort}`, { type: 'publish', to: 'u1', content: 'hi' })).to.deep.equal({ status: 200, body: 'ok' });
    expect(await client.waitFor('new_msg')).to.deep.equal(['hi']);

    // the graceful stop, as Ctrl-C or a service manager sends it
    process.kill(-npm.pid!, 'SIGTERM');
    await withDeadline(exited, 'npm start exits after SIGTERM', 15_000);
    expect(output).to.match(/SIGTERM: shutting down[\s\S]*stopped/);
  });
});
