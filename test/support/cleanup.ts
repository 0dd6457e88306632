// Everything a test starts registers its closer here; each test file runs cleanupAll in
// afterEach, so a failing assertion never leaks a server, client or browser.
const closers: (() => unknown)[] = [];

export function onCleanup(close: () => unknown): void {
  closers.push(close);
}

export async function cleanupAll(): Promise<void> {
  const pending = closers.splice(0).reverse();
  for (const close of pending) await close();
}
