// Tests that need an outside binary (chromium, redis-server) skip loudly where it is
// missing, except when PUSH_TEST_STRICT=1 (set by .ci/run), where a missing binary fails.
import { accessSync, constants } from 'node:fs';

export const STRICT = process.env.PUSH_TEST_STRICT === '1';

/** The binary's path, or null after a loud notice (throws under PUSH_TEST_STRICT). */
export function findBinary(name: string, candidates: string[]): string | null {
  for (const path of candidates) {
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // try the next one
    }
  }
  const notice = `${name} not found (looked at ${candidates.join(', ')})`;
  if (STRICT) throw new Error(`${notice}; PUSH_TEST_STRICT=1 requires it (apt-get install -y ${name})`);
  console.warn(`\n  !!! SKIPPING tests that need ${name}: ${notice}. Install it: apt-get install -y ${name}\n`);
  return null;
}
