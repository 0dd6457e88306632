// Builds the SDK into dist/: index.js (ESM, socket.io-client left to the app's bundler),
// push-client.js (a plain script defining the global `PushClient`, on the page's `io`) and
// the .d.ts types (tsc). The push server bundles the same script (scriptBundle) and serves it
// at /sdk/push-client.js on its Socket.IO port.
import { build } from 'esbuild';
import { execFile } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const HERE = fileURLToPath(new URL('.', import.meta.url));

/** The plain script: an IIFE assigning the global `PushClient` (no dependency bundled). */
export async function scriptBundle(): Promise<string> {
  const result = await build({
    entryPoints: [HERE + 'src/global.ts'],
    bundle: true,
    format: 'iife',
    globalName: 'PushClient',
    target: 'es2018',
    write: false,
    logLevel: 'silent',
  });
  return result.outputFiles[0]!.text;
}

/** Builds dist/ from src/. */
export async function buildPackage(): Promise<void> {
  const dist = HERE + 'dist/';
  rmSync(dist, { recursive: true, force: true });
  mkdirSync(dist);
  await build({
    entryPoints: [HERE + 'src/index.ts'],
    outfile: dist + 'index.js',
    bundle: true,
    format: 'esm',
    target: 'es2018',
    external: ['socket.io-client'],
    logLevel: 'warning',
  });
  writeFileSync(dist + 'push-client.js', await scriptBundle());
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  await promisify(execFile)(process.execPath, [tsc, '-p', HERE + 'tsconfig.json']);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await buildPackage();
  console.log('built packages/push-client/dist: index.js (ESM), push-client.js (plain script), *.d.ts');
}
