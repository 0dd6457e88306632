// The production build: one plain ESM file per entry, dependencies left to node_modules, so
// the server runs with `node dist/start.js` and no TypeScript loader (tsx's module-hook
// thread costs about 60 MB of RSS and some CPU per process). Used by `npm run build` and by
// the benchmark, which measures what production runs.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

export async function buildServer(entry: string, outfile: string): Promise<void> {
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    logLevel: 'warning',
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  // dist/ sits beside client-demo/, which the web listener reads relative to the bundle
  await buildServer(ROOT + 'start.ts', ROOT + 'dist/start.js');
  console.log('built dist/start.js: run it with node dist/start.js');
}
