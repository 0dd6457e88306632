// Who holds DATA_DIR: one server at a time may open the embedded store. The lock is LMDB's own,
// in a small LMDB file of its own (DATA_DIR/owner.mdb): each process that has it open holds an
// OS lock (fcntl) on the byte at its pid in owner.mdb-lock, which the kernel drops when the
// process ends, however it ends. LMDB's reader check (mdb_reader_check) tests that lock, so a
// pid is "live" only while a process that opened this file holds it: a killed holder never
// blocks, and neither does an unrelated process that got its pid after a reboot (the pid file
// this replaces, server.lock, was judged by kill(pid, 0), and such a process kept it "live").
import { closeSync, fchmodSync, fstatSync, openSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { open, type RootDatabase, type Transaction } from 'lmdb';

/** The lock's LMDB file in DATA_DIR; LMDB keeps its OS locks in `${OWNER_FILE}-lock`. */
export const OWNER_FILE = 'owner.mdb';
/** The pid file of earlier versions: ignored, removed once the lock is held. */
const LEGACY_LOCK_FILE = 'server.lock';
/** Files the server creates in DATA_DIR: its user's alone (stored messages are push data in clear). */
export const FILE_MODE = 0o600;
export const DIR_MODE = 0o700;

/** DATA_DIR is held by a live server: the message is the one line to show. */
export class DataDirTakenError extends Error {
  override name = 'DataDirTakenError';
}

/** What the owner record says: the pid of the server that holds DATA_DIR. */
interface Owner {
  pid: number;
}

/** The lock files this process holds: a second store on one DATA_DIR in one process is refused here. */
const heldHere = new Set<string>();

/**
 * Throws DataDirTakenError when this process holds DATA_DIR already: to be called before any
 * file in it is opened, since closing any descriptor of a file drops every fcntl lock this
 * process holds on it (LMDB's among them).
 */
export function refuseIfHeldHere(dir: string): void {
  if (heldHere.has(resolve(dir, OWNER_FILE))) throw new DataDirTakenError(`DATA_DIR ${dir} is in use by another server in this process`);
}

/**
 * Creates `path` for its owner alone if missing, and takes back what an earlier version (or a
 * umask) gave others on one that exists: LMDB opens a file that exists as it is, so its files
 * are made here first. A file that is not ours (EPERM) is left as it is.
 */
export function privateFile(path: string): void {
  const fd = openSync(path, 'a', FILE_MODE);
  try {
    if ((fstatSync(fd).mode & 0o777) !== FILE_MODE) fchmodSync(fd, FILE_MODE);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
  } finally {
    closeSync(fd);
  }
}

/** The pids in LMDB's reader table (mdb_reader_list: a header, then `pid thread txnid` a line). */
function readerPids(list: string): Set<number> {
  const pids = new Set<number>();
  for (const line of list.split('\n')) {
    const pid = /^\s*(\d+)\s/.exec(line)?.[1];
    if (pid !== undefined) pids.add(Number(pid));
  }
  return pids;
}

export interface DataDirLock {
  /** Gives DATA_DIR up; idempotent. */
  release(): Promise<void>;
}

/**
 * Takes DATA_DIR for this process, or throws DataDirTakenError naming the live holder's pid.
 * Throws the file system's error when the lock file cannot be made or opened.
 *
 * The claim is one write transaction (LMDB's writer mutex orders two servers starting at once):
 * it clears the reader table of processes that are gone, then takes the owner record unless
 * it names another pid still in the table. This process is in the table from its open until
 * release(): a read transaction is held open for it (it pins nothing that matters: this file
 * is written once per start).
 */
export function lockDataDir(dir: string): DataDirLock {
  refuseIfHeldHere(dir);
  const path = resolve(dir, OWNER_FILE);
  privateFile(path);
  privateFile(`${path}-lock`); // made before by the store; for a caller of its own
  const env: RootDatabase<Owner, string> = open({ path, noSubdir: true, overlappingSync: false, eventTurnBatching: false, maxDbs: 1 });
  let reading: Transaction | undefined;
  try {
    reading = env.useReadTransaction();
    const holder = env.transactionSync(() => {
      env.readerCheck();
      const owner = env.get('owner');
      if (owner !== undefined && owner.pid !== process.pid && readerPids(env.readerList()).has(owner.pid)) return owner.pid;
      env.putSync('owner', { pid: process.pid });
      return null;
    });
    if (holder !== null) throw new DataDirTakenError(`DATA_DIR ${dir} is in use by another server (pid ${holder}); stop it or use another DATA_DIR`);
  } catch (err) {
    reading?.done();
    void env.close();
    throw err;
  }
  const held = reading;
  heldHere.add(path);
  rmSync(resolve(dir, LEGACY_LOCK_FILE), { force: true });
  let released: Promise<void> | null = null;
  return {
    release: () =>
      (released ??= (async () => {
        try {
          // a later start sees no owner at all; a kill (no release) leaves one that is not live
          env.transactionSync(() => {
            if (env.get('owner')?.pid === process.pid) env.removeSync('owner');
          });
        } finally {
          held.done();
          await env.close();
          heldHere.delete(path);
        }
      })()),
  };
}
