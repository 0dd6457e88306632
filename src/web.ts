// The demo page on WEB_PORT: a fixed set of files from client-demo/, read once at start,
// /push-client.js (the SDK, bundled from TypeScript by esbuild at start, so what is served
// is always built from the source beside it), and /config.js telling the page where the
// Socket.IO and push API ports are.
import { readFileSync } from 'node:fs';
import type { RequestListener } from 'node:http';
import { fileURLToPath } from 'node:url';
import type { AdminSnapshot } from './admin.ts';
import { safeEqual } from './push-auth.ts';

const DEMO_DIR = fileURLToPath(new URL('../client-demo/', import.meta.url));

const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/demo.js': { file: 'demo.js', type: 'text/javascript; charset=utf-8' },
  '/demo.css': { file: 'demo.css', type: 'text/css; charset=utf-8' },
};

export interface DemoPorts {
  io: number;
  api: number;
}

/** The admin page, when ADMIN_TOKEN is set. */
export interface AdminPage {
  token: string;
  stats: () => Promise<AdminSnapshot>;
}

const ADMIN_FILES: Record<string, { file: string; type: string }> = {
  '/admin': { file: 'admin.html', type: 'text/html; charset=utf-8' },
  '/admin.js': { file: 'admin.js', type: 'text/javascript; charset=utf-8' },
};

/** The SDK as one plain script defining the global `PushClient`. */
export async function buildSdk(): Promise<string> {
  const { build } = await import('esbuild'); // loaded only when the demo page is served
  const result = await build({
    entryPoints: [DEMO_DIR + 'sdk/push-client.ts'],
    bundle: true,
    format: 'iife',
    globalName: 'PushClient',
    target: 'es2018',
    write: false,
    logLevel: 'silent',
  });
  return result.outputFiles[0]!.text;
}

export async function demoHandler(ports: DemoPorts, admin: AdminPage | null): Promise<RequestListener> {
  const bodies = new Map<string, { body: Buffer; type: string }>();
  if (admin) {
    for (const [path, { file, type }] of Object.entries(ADMIN_FILES)) {
      bodies.set(path, { body: readFileSync(DEMO_DIR + file), type });
    }
  }
  bodies.set('/push-client.js', { body: Buffer.from(await buildSdk()), type: 'text/javascript; charset=utf-8' });
  for (const [path, { file, type }] of Object.entries(FILES)) {
    bodies.set(path, { body: readFileSync(DEMO_DIR + file), type });
  }
  bodies.set('/config.js', {
    body: Buffer.from(`window.PUSH_SERVER = ${JSON.stringify({ ioPort: ports.io, apiPort: ports.api })};\n`),
    type: 'text/javascript; charset=utf-8',
  });

  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const entry = bodies.get(path);
    const headers = { 'x-content-type-options': 'nosniff', 'cache-control': 'no-cache' };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...headers, allow: 'GET, HEAD', 'content-type': 'text/plain' });
      res.end('method not allowed');
      return;
    }
    if (admin && path === '/admin/stats' && req.method === 'GET') {
      const auth = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
      if (!auth || !safeEqual(auth[1]!, admin.token)) {
        res.writeHead(401, { ...headers, 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'unauthorized', message: 'send Authorization: Bearer ADMIN_TOKEN' } }));
        return;
      }
      admin.stats().then(
        (snapshot) => {
          res.writeHead(200, { ...headers, 'content-type': 'application/json' });
          res.end(JSON.stringify(snapshot));
        },
        () => {
          res.writeHead(503, { ...headers, 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: { code: 'unavailable', message: 'stats are not available now' } }));
        },
      );
      return;
    }
    if (!entry) {
      res.writeHead(404, { ...headers, 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    res.writeHead(200, { ...headers, 'content-type': entry.type, 'content-length': entry.body.length });
    res.end(req.method === 'HEAD' ? undefined : entry.body);
  };
}
