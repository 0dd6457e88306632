// Tests that need an outside binary (chromium, redis-server, php, go) skip loudly where it is
// missing, except when PUSH_TEST_STRICT=1 (set by .ci/run), where a missing binary fails.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

export const STRICT = process.env.PUSH_TEST_STRICT === '1';

/**
 * Says loudly that `what` is missing and returns null; throws under PUSH_TEST_STRICT.
 * `aptPackage` is the Debian package that brings it.
 */
export function reportMissing(what: string, notice: string, aptPackage: string): null {
  if (STRICT) throw new Error(`${notice}; PUSH_TEST_STRICT=1 requires it (apt-get install -y ${aptPackage})`);
  console.warn(`\n  !!! SKIPPING tests that need ${what}: ${notice}. Install it: apt-get install -y ${aptPackage}\n`);
  return null;
}

/** The binary's path, or null after a loud notice (throws under PUSH_TEST_STRICT). */
export function findBinary(name: string, candidates: string[], aptPackage = name): string | null {
  for (const path of candidates) {
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // try the next one
    }
  }
  return reportMissing(name, `${name} not found (looked at ${candidates.join(', ')})`, aptPackage);
}

/** `command` as a shell finds it on PATH, or null after a loud notice (as findBinary). */
export function findOnPath(command: string, aptPackage = command): string | null {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter((dir) => dir !== '');
  return findBinary(command, dirs.map((dir) => join(dir, command)), aptPackage);
}
