// Wrong ADMIN_TOKENs per client address: a sign-in (the form, or an old ?token= link) or an
// `Authorization: Bearer` on the admin endpoints that does not hold the token counts. Past
// SIGN_IN_GUESSES in a window the address is answered 429 with Retry-After until the window
// ends, and no token it sends meanwhile is compared, so it learns nothing. IPv6 addresses count
// by their /64, the block one host gets; the number of addresses followed is bounded.
import { isIP } from 'node:net';

/** Wrong tokens one address (an IPv6 /64) may send in a window. */
export const SIGN_IN_GUESSES = 10;
/** The window, from an address's first wrong token. */
export const SIGN_IN_WINDOW_MS = 60_000;
/**
 * Addresses followed at once, about 100 bytes each. Full (each with a wrong token in its
 * window), a new address waits for the oldest window to end: the bound holds for a client
 * with many addresses too.
 */
export const MAX_GUESSING_ADDRESSES = 10_000;

export interface ThrottleLimits {
  guesses: number;
  windowMs: number;
  maxAddresses: number;
}

/** The key an address counts under: an IPv4 address, or the /64 of an IPv6 one (`2001:db8:0:1::/64`). */
export function guessKey(address: string): string {
  if (isIP(address) !== 6) return address;
  const [head = '', tail] = address.split('::');
  const groups = head === '' ? [] : head.split(':');
  if (tail !== undefined) {
    const rest = tail === '' ? [] : tail.split(':');
    // an IPv4 tail (`64:ff9b::1.2.3.4`) is two groups
    const width = rest.reduce((n, g) => n + (g.includes('.') ? 2 : 1), 0);
    groups.push(...Array<string>(Math.max(0, 8 - groups.length - width)).fill('0'), ...rest);
  }
  return `${groups.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`;
}

export class SignInThrottle {
  /** key -> wrong tokens in its window; in order of the windows' starts, so of their ends. */
  private readonly windows = new Map<string, { count: number; until: number }>();

  constructor(private readonly limits: ThrottleLimits = { guesses: SIGN_IN_GUESSES, windowMs: SIGN_IN_WINDOW_MS, maxAddresses: MAX_GUESSING_ADDRESSES }) {}

  /** 0 when `address` may have a token checked now; else the ms until it may. */
  waitMs(address: string, now = Date.now()): number {
    const key = guessKey(address);
    const window = this.windows.get(key);
    if (window && window.until > now) return window.count >= this.limits.guesses ? window.until - now : 0;
    this.sweep(now);
    if (this.windows.size < this.limits.maxAddresses) return 0;
    return this.windows.values().next().value!.until - now; // full: until the oldest window ends
  }

  /** Counts a wrong token from `address` (checked by waitMs() first). */
  failed(address: string, now = Date.now()): void {
    const key = guessKey(address);
    const window = this.windows.get(key);
    if (window && window.until > now) {
      window.count++;
      return;
    }
    this.windows.delete(key);
    this.sweep(now);
    // full after waitMs() let it in (other guesses came meanwhile): the next waitMs() refuses it
    if (this.windows.size < this.limits.maxAddresses) this.windows.set(key, { count: 1, until: now + this.limits.windowMs });
  }

  get size(): number {
    return this.windows.size;
  }

  /** Forgets the windows that ended: the oldest first. */
  private sweep(now: number): void {
    for (const [key, window] of this.windows) {
      if (window.until > now) return;
      this.windows.delete(key);
    }
  }
}
