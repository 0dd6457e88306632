// One webhook URL and one POST to it: credentials taken out of the URL into Basic auth, the
// form logs may show, the signed headers and a failure's short reason. Queueing, retries and
// bounds are the sender's (sender.ts).
import { shownUrl } from '../secrets.ts';
import { webhookSignature } from './events.ts';

export interface WebhookTarget {
  /** Without its credentials: fetch() refuses those, and its error would show them. */
  readonly url: string;
  /** `Basic …` from the URL's user and password, or null. */
  readonly authorization: string | null;
  /** Scheme and host only (see shownUrl): a path or query may hold a token, and logs must not. */
  readonly shown: string;
}

/**
 * The target of the `index`th of `count` urls.
 * @throws Error for a url that is not http(s): a configuration error, found at start.
 */
export function webhookTarget(url: string, index: number, count: number): WebhookTarget {
  const parsed = new URL(url);
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new Error(`webhook url must be http or https, got ${parsed.protocol}`);
  }
  // https://user:pass@host/… is sent as HTTP Basic auth, as curl would
  const credentials = parsed.username !== '' || parsed.password !== '';
  const authorization = credentials
    ? `Basic ${Buffer.from(`${decoded(parsed.username)}:${decoded(parsed.password)}`).toString('base64')}`
    : null;
  parsed.username = '';
  parsed.password = '';
  return {
    url: parsed.toString(),
    authorization,
    // the number tells several urls on one host apart
    shown: count > 1 ? `${shownUrl(url)} (#${index + 1})` : shownUrl(url),
  };
}

/**
 * POSTs one event's `body` to `target`, signed with `secret` (null: unsigned). Resolves with
 * null when answered 2xx, else with why not (a status, a network error, the abort reason of
 * `signal`); never rejects.
 */
export async function postWebhook(
  target: WebhookTarget,
  eventId: string,
  body: string,
  secret: string | null,
  signal: AbortSignal,
): Promise<string | null> {
  try {
    const timestamp = Math.floor(Date.now() / 1000);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'x-webhook-id': eventId,
      'x-webhook-timestamp': String(timestamp),
    };
    if (secret !== null) headers['x-signature'] = webhookSignature(secret, timestamp, body);
    if (target.authorization !== null) headers.authorization = target.authorization;
    const res = await fetch(target.url, {
      method: 'POST',
      headers,
      body,
      signal,
      // A redirect would re-send a signed body somewhere not configured: a failure instead.
      redirect: 'manual',
    });
    // The answer's body is not used; cancelling frees the connection.
    await res.body?.cancel().catch(() => undefined);
    return res.ok ? null : `answered ${res.status}`;
  } catch (err) {
    return describe(signal.aborted ? signal.reason : err);
  }
}

/** A URL's percent-encoded user or password as sent; a stray % stays as written. */
function decoded(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/** A short reason: fetch hides the network error (ECONNREFUSED, ...) in `cause`. */
function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause;
    if (cause instanceof Error) return (cause as NodeJS.ErrnoException).code ?? cause.message;
    return err.message;
  }
  return String(err);
}
