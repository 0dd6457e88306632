// Every wait in the benchmark is bounded: a phase that runs out of time reports so instead
// of hanging the run.

export const TIMED_OUT: unique symbol = Symbol('timed out');

/** Resolves the promise's value, or TIMED_OUT after `ms`; the timer never outlives the race. */
export function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const expiry = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  return Promise.race([promise, expiry]).finally(() => clearTimeout(timer));
}

/** Like withDeadline, but a timeout is an error naming what did not happen. */
export async function orThrow<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  const result = await withDeadline(promise, ms);
  if (result === TIMED_OUT) throw new Error(`${what}: no answer within ${ms} ms`);
  return result;
}
