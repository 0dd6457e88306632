// Polls a condition until a deadline: for state that changes without an event to wait on
// (an ack travelling back, an expiry, a count settling). Never a fixed sleep.
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 5000,
  everyMs = 20,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/**
 * The converse: checks `condition` throughout `ms` and fails as soon as it is false. For a
 * state that must last (a lease that is renewed, counts that must not move again).
 */
export async function holdsFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  ms: number,
  everyMs = 50,
): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!(await condition())) throw new Error(`${what}: stopped holding`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
