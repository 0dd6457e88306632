// What a store keeps for a uid, read page by page as the server reads it: for tests that check
// a store's contents (the store has no call that reads a uid's whole backlog at once).
import type { MessageStore } from '../../src/message-store.ts';
import type { StoredMessage } from '../../src/messages.ts';

/** Every unexpired message kept for `uid`, oldest first. */
export async function allPending(store: MessageStore, uid: string): Promise<StoredMessage[]> {
  const out: StoredMessage[] = [];
  let after = 0;
  for (;;) {
    const page = await store.pendingPage(uid, after, 100, 1 << 30);
    out.push(...page.entries.map((e) => e.message));
    if (page.next === null) return out;
    after = page.next;
  }
}
