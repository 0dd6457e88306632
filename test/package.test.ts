// Run it without cloning: what `npm pack` makes must install and run on a machine that has
// nothing of this project. The tarball is packed as a publish would (prepack builds dist/), then
// installed into an empty folder with `npm ci --offline`: the lockfile given to it is ours, less
// the devDependencies, so the install takes exactly the versions the tests ran with from npm's
// cache (no registry, a few seconds), and neither esbuild, tsx nor TypeScript is there to help.
// Its bin then runs as a user runs it, from that folder, with plain node.
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { SETTINGS } from '../src/settings.ts';
import { cleanupAll } from './support/cleanup.ts';
import { connectClient } from './support/clients.ts';
import { legacyPush } from './support/server.ts';
import { spawnStart, type StartProcess } from './support/start-process.ts';

const run = promisify(execFile);
const ROOT = new URL('..', import.meta.url).pathname;
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string; private?: boolean; bin?: Record<string, string> };
const PATH = `${dirname(process.execPath)}:${process.env.PATH ?? ''}`;

/** Only what npm needs: nothing of the test run (NODE_OPTIONS with tsx, npm_config_* of `npm test`) but its cache. */
function npmEnv(): Record<string, string> {
  const env: Record<string, string> = { PATH, HOME: process.env.HOME ?? tmpdir() };
  if (process.env.npm_config_cache !== undefined) env.npm_config_cache = process.env.npm_config_cache;
  return env;
}

interface LockEntry {
  dev?: boolean;
  link?: boolean;
  [field: string]: unknown;
}

/**
 * An app depending on the tarball alone, locked to our runtime dependencies: the root's
 * entry becomes the package's, and every entry of ours not marked dev keeps its place (the
 * package's dependencies hoist into the app's node_modules as they do into ours).
 */
function writeApp(dir: string, tarball: string): void {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const root = lock.packages['']!;
  const spec = `file:${tarball}`;
  const packages: Record<string, unknown> = {
    '': { name: 'app', dependencies: { [PKG.name]: spec } },
    [`node_modules/${PKG.name}`]: {
      version: PKG.version,
      resolved: spec,
      license: root.license,
      dependencies: root.dependencies,
      optionalDependencies: root.optionalDependencies,
      bin: root.bin,
      engines: root.engines,
    },
  };
  // not our workspaces (packages/push-client, and its link in node_modules): the tarball holds
  // the SDK's script built, not the package
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path !== '' && entry.dev !== true && entry.link !== true && path.startsWith('node_modules/')) packages[path] = entry;
  }
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'app', private: true, dependencies: { [PKG.name]: spec } }));
  writeFileSync(join(dir, 'package-lock.json'), JSON.stringify({ name: 'app', lockfileVersion: 3, requires: true, packages }));
}

/** Resolves with the exit code once the process has exited. */
async function exitCode(proc: StartProcess): Promise<number | null> {
  return (await proc.exited).code;
}

describe('the packed package (npm pack, installed without devDependencies)', function () {
  this.timeout(30_000);
  let work = '';
  let app = '';
  let bin = '';

  before(async function () {
    this.timeout(120_000); // measured: pack 2 s (the build), install 4 s
    work = mkdtempSync(join(tmpdir(), 'push-package-'));
    await run('npm', ['pack', '--silent', '--pack-destination', work], { cwd: ROOT, env: npmEnv() });
    const tarballs = readdirSync(work).filter((f) => f.endsWith('.tgz'));
    expect(tarballs).to.deep.equal([`${PKG.name}-${PKG.version}.tgz`]);
    app = join(work, 'app');
    mkdirSync(app);
    writeApp(app, join(work, tarballs[0]!));
    await run('npm', ['ci', '--offline', '--no-audit', '--no-fund'], { cwd: app, env: npmEnv() });
    bin = join(app, 'node_modules', '.bin', 'push-server');
  });

  after(() => {
    if (work !== '') rmSync(work, { recursive: true, force: true });
  });

  afterEach(cleanupAll);

  /** The installed bin, started in the app folder (its ./data goes there) with only `env`. */
  const pushServer = (args: string[], env: Record<string, string> = {}) => spawnStart(args, { PATH, ...env }, '', { command: [bin], cwd: app });

  it('ships the built server, the demo page and its SDK: no sources, tests or devDependencies', () => {
    expect(PKG.private, 'package.json private').to.equal(undefined);
    expect(PKG.bin).to.deep.equal({ 'push-server': 'dist/start.js' });
    const installed = join(app, 'node_modules', PKG.name);
    for (const file of ['dist/start.js', 'dist/push-client.js', 'client-demo/index.html', 'client-demo/demo.js', 'README.md', 'docs/operations.md']) {
      expect(existsSync(join(installed, file)), file).to.equal(true);
    }
    for (const file of ['src', 'test', 'bench', 'scripts', 'start.ts', 'packages', 'tsconfig.json']) {
      expect(existsSync(join(installed, file)), file).to.equal(false);
    }
    // what the server would need if it built anything at run time
    for (const dev of ['esbuild', 'tsx', 'typescript', 'mocha']) {
      expect(existsSync(join(app, 'node_modules', dev)), dev).to.equal(false);
    }
  });

  it('push-server --version prints the version, --help the settings', async () => {
    const version = pushServer(['--version']);
    expect(await exitCode(version)).to.equal(0);
    expect(version.stdout()).to.equal(`${PKG.version}\n`);
    const help = pushServer(['--help']);
    expect(await exitCode(help)).to.equal(0);
    expect(help.stdout()).to.match(/^Usage: push-server /);
    for (const s of Object.values(SETTINGS)) expect(help.stdout()).to.include(s.env);
  });

  it('push-server stops with one clear line on a bad value', async () => {
    const bad = pushServer([], { API_PORT: '21a1' });
    expect(await exitCode(bad)).to.equal(1);
    expect(bad.stderr()).to.equal('push server: bad configuration: API_PORT must be an integer 0-65535, got "21a1" (see --help)\n');
  });

  it('push-server starts from the install, delivers a push to a socket.io 2.x page, serves the SDK, stops on SIGTERM', async () => {
    // the default store (embedded: lmdb's native binary from the install) in ./data of the app folder
    const server = pushServer([], { IO_PORT: '0', API_PORT: '0', WEB_PORT: '0' });
    const { ioUrl, apiUrl, webUrl } = await server.started();
    expect(server.output()).to.include(`engine embedded in ${join(app, 'data')}`);

    const client = await connectClient('v2', ioUrl);
    await client.login('u1');
    expect(await legacyPush(apiUrl, { type: 'publish', to: 'u1', content: 'from <npx>' })).to.deep.equal({ status: 200, body: 'ok' });
    expect(await client.waitFor('new_msg')).to.deep.equal(['from &lt;npx&gt;']);

    // the SDK built at pack time, read from dist/ (esbuild is not installed), on the Socket.IO port
    const sdk = await fetch(`${ioUrl}/sdk/push-client.js`);
    expect(sdk.status).to.equal(200);
    const script = await sdk.text();
    expect(script).to.match(/^var PushClient = /m);
    expect(script).to.equal(readFileSync(join(app, 'node_modules', PKG.name, 'dist', 'push-client.js'), 'utf8'));
    expect((await fetch(`${webUrl}/`)).status).to.equal(200); // the demo page, which loads it from there

    expect(await server.stop()).to.deep.equal({ code: 0, signal: null });
    expect(server.output()).to.match(/SIGTERM: shutting down[\s\S]*stopped/);
  });
});
