// Starts the real server on ephemeral ports for a test.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configWith, type Config } from '../../src/config.ts';
import { silentLogger } from '../../src/log.ts';
import { createServer, type Components, type ServerHandle } from '../../src/server.ts';
import { onCleanup } from './cleanup.ts';

export interface TestServer extends ServerHandle {
  ioUrl: string;
  apiUrl: string;
  webUrl: string | null;
}

/**
 * Where a test server keeps stored messages when the test does not say: in memory. The default
 * engine (embedded, in ./data) would put every test server in the project's ./data, and a
 * second one in this process is refused; a temporary DATA_DIR each would give ~300 tests an
 * LMDB file and an fsync per stored push that none of them is about. forEachEngine runs the
 * feature suites on the embedded store too, and embedded-store.test.ts starts the default
 * (no STORE, no DATA_DIR) through start.ts. STORE=embedded without a DATA_DIR gets a
 * temporary one, removed after the server closes.
 */
function storage(overrides: Partial<Config>): Partial<Config> {
  if (overrides.dataDir !== undefined) return {};
  if (overrides.store === undefined) return { store: 'memory' };
  if (overrides.store !== 'embedded') return {};
  const dataDir = mkdtempSync(join(tmpdir(), 'push-test-data-'));
  onCleanup(() => rmSync(dataDir, { recursive: true, force: true })); // before close() is registered: runs after it
  return { dataDir };
}

export async function startServer(
  overrides: Partial<Config> = {},
  components: Components = {},
): Promise<TestServer> {
  const config = configWith({
    host: '127.0.0.1',
    ioPort: 0,
    apiPort: 0,
    webPort: null,
    onlineCountIntervalMs: 50,
    ...storage(overrides),
    ...overrides,
  });
  const handle = await createServer(config, { log: silentLogger, ...components });
  onCleanup(() => handle.close());
  const base = `http://${config.host}:`;
  return {
    ...handle,
    ioUrl: base + handle.ports.io,
    apiUrl: base + handle.ports.api,
    webUrl: handle.ports.web === null ? null : base + handle.ports.web,
  };
}

export type PushMethod = 'get' | 'form' | 'multipart' | 'json';

/** Calls the legacy push API the way a backend would; resolves the status and body text. */
export async function legacyPush(
  apiUrl: string,
  params: Record<string, string>,
  method: PushMethod = 'get',
  path = '/',
): Promise<{ status: number; body: string }> {
  let res: Response;
  if (method === 'get') {
    res = await fetch(`${apiUrl}${path}?${new URLSearchParams(params)}`);
  } else if (method === 'form') {
    res = await fetch(apiUrl + path, { method: 'POST', body: new URLSearchParams(params) });
  } else if (method === 'multipart') {
    const form = new FormData();
    for (const [k, v] of Object.entries(params)) form.append(k, v);
    res = await fetch(apiUrl + path, { method: 'POST', body: form });
  } else {
    res = await fetch(apiUrl + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(params),
    });
  }
  return { status: res.status, body: await res.text() };
}
