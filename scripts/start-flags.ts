// The node flags `npm start` runs the server with, read from package.json's start script, so
// the benchmark and the soak measure what users run instead of a copy that may drift.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const PACKAGE_JSON = fileURLToPath(new URL('../package.json', import.meta.url));

/** The words between `node` and `dist/start.js` in package.json's `scripts.start`. */
export function startNodeFlags(): string[] {
  const pkg = JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')) as { scripts?: { start?: unknown } };
  const start = pkg.scripts?.start;
  const match = typeof start === 'string' ? /^node((?:\s+--\S+)*)\s+dist\/start\.js$/.exec(start.trim()) : null;
  if (match === null) throw new Error(`package.json scripts.start must be "node [--flag ...] dist/start.js", got ${JSON.stringify(start)}`);
  return (match[1] ?? '').split(/\s+/).filter((s) => s !== '');
}
