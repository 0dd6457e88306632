// The client SDK (client-demo/sdk/push-client.ts) as one plain script defining the global
// `PushClient`, served by the demo page as /push-client.js. esbuild is a build tool, not a
// run-time dependency: scripts/build.ts bundles the SDK into dist/ beside the server, which
// reads it from there; only code run from source (tsx: tests, a clone) bundles it at start,
// so what it serves is always built from the source beside it.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { StartupError } from './listeners.ts';

/** The SDK's file name in dist/, beside the bundled server. */
export const SDK_FILE = 'push-client.js';

/**
 * Defined as `true` by scripts/build.ts in the bundle, where the source branch below is then
 * dropped with its esbuild import; undeclared when run from source.
 */
declare const PUSH_SERVER_BUNDLED: boolean | undefined;

/** Bundles the SDK from its TypeScript source (esbuild: needs the devDependencies). */
export async function buildSdk(): Promise<string> {
  const { build } = await import('esbuild');
  const result = await build({
    entryPoints: [fileURLToPath(new URL('../client-demo/sdk/push-client.ts', import.meta.url))],
    bundle: true,
    format: 'iife',
    globalName: 'PushClient',
    target: 'es2018',
    write: false,
    logLevel: 'silent',
  });
  return result.outputFiles[0]!.text;
}

/** The script to serve: the built one in dist/, or, from source, bundled now. */
export async function sdkScript(): Promise<Buffer> {
  // inline, not in a const: esbuild drops the branch only when the test itself is constant
  if (typeof PUSH_SERVER_BUNDLED === 'undefined') return Buffer.from(await buildSdk());
  const file = new URL(`./${SDK_FILE}`, import.meta.url);
  try {
    return readFileSync(file);
  } catch (err) {
    throw new StartupError(
      `the demo page's SDK ${fileURLToPath(file)} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): run npm run build, or set WEB_PORT=off`,
    );
  }
}
