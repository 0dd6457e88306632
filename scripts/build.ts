// The production build: plain ESM, dependencies left to node_modules, so the server runs with
// `node dist/start.js` and no TypeScript loader (tsx's module-hook thread costs about 60 MB of
// RSS and some CPU per process). Used by `npm run build` and by the benchmark, which measures
// what production runs. Split into chunks: what the code imports lazily (the Redis cluster
// part with node-redis and the Redis adapter, the embedded store with lmdb) stays in chunks of
// its own, loaded only when used. One bundle would hoist their packages' imports to the top,
// and a single node would load node-redis and the adapter at start: 6-10 MB of RSS measured.
// The client SDK's plain script (packages/push-client) is bundled here too (dist/push-client.js,
// served at /sdk/push-client.js), so nothing at run time needs esbuild: `npm pack` (prepack) ships dist/, and the package runs without devDependencies.
import { build } from 'esbuild';
import { chmodSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { scriptBundle } from '../packages/push-client/build.ts';
import { SDK_FILE } from '../src/sdk-script.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Builds `entry` to `outfile`, its chunks beside it as <name>-*.js (an earlier build's removed). */
export async function buildServer(entry: string, outfile: string): Promise<void> {
  const outdir = dirname(outfile);
  const name = basename(outfile, '.js');
  // chunks sit beside the entry: code that finds files relative to its module (web.ts) finds
  // them from either
  for (const file of safeList(outdir)) if (file.startsWith(`${name}-`) && file.endsWith('.js')) rmSync(join(outdir, file));
  await build({
    entryPoints: { [name]: entry },
    outdir,
    chunkNames: `${name}-[name]-[hash]`,
    splitting: true,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    logLevel: 'warning',
    // the SDK is read from dist/, never bundled at run time (src/sdk-script.ts)
    define: { PUSH_SERVER_BUNDLED: 'true' },
  });
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  // dist/ sits beside client-demo/, which the web listener reads relative to the bundle
  await buildServer(ROOT + 'start.ts', ROOT + 'dist/start.js');
  // the package's bin: start.ts's #! line is kept by esbuild; npm makes bins executable on
  // install, this makes ./dist/start.js runnable in a clone too
  chmodSync(ROOT + 'dist/start.js', 0o755);
  writeFileSync(ROOT + 'dist/' + SDK_FILE, await scriptBundle());
  console.log('built dist/start.js: run it with node dist/start.js');
}
