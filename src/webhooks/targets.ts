// One webhook URL and one POST to it: credentials taken out of the URL into Basic auth, the
// form logs may show, the signed headers and a failure's short reason. Queueing, retries and
// bounds are the sender's (sender.ts).
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { shownUrl } from '../secrets.ts';
import { webhookSignature } from './events.ts';

export interface WebhookTarget {
  /** Without its credentials: they go in `authorization`, never in a request line or an error. */
  readonly url: string;
  /** `Basic …` from the URL's user and password, or null. */
  readonly authorization: string | null;
  /** Scheme and host only (see shownUrl): a path or query may hold a token, and logs must not. */
  readonly shown: string;
  /**
   * Keep-alive connections to the url, at most the sender's concurrency. node:http rather than
   * fetch(): a POST costs about 56 µs of CPU against fetch's 230 µs (10000 POSTs, 10 in
   * flight, measured on this project's 2-core machine), and undici's first use alone adds
   * tens of MB of RSS: after a mass login every user.online is a POST, next to the pushes.
   */
  readonly agent: HttpAgent;
}

/**
 * The target of the `index`th of `count` urls.
 * @throws Error for a url that is not http(s): a configuration error, found at start.
 */
export function webhookTarget(url: string, index: number, count: number, concurrency: number): WebhookTarget {
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
  const https = parsed.protocol === 'https:';
  const agentOptions = { keepAlive: true, maxSockets: concurrency };
  return {
    url: parsed.toString(),
    authorization,
    agent: https ? new HttpsAgent(agentOptions) : new HttpAgent(agentOptions),
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
    headers['content-length'] = String(Buffer.byteLength(body));
    const status = await post(target, headers, body, signal);
    // redirects are not followed: one would re-send a signed body somewhere not configured
    return status >= 200 && status < 300 ? null : `answered ${status}`;
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

/**
 * POSTs `body` and resolves the answer's status once its body is read to the end (the
 * connection then goes back to the agent's pool); rejects on a network error or an abort.
 */
function post(target: WebhookTarget, headers: Record<string, string>, body: string, signal: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = target.url.startsWith('https:') ? httpsRequest : httpRequest;
    const req = request(target.url, { method: 'POST', headers, agent: target.agent, signal }, (res: IncomingMessage) => {
      res.once('error', reject);
      res.once('end', () => resolve(res.statusCode ?? 0));
      res.once('close', () => reject(new Error('the answer was cut short')));
      res.resume(); // the answer's body is not used
    });
    req.once('error', reject);
    req.end(body);
  });
}

/** A short reason: the network error's code (ECONNREFUSED, ...) or message. */
function describe(err: unknown): string {
  if (err instanceof Error) return (err as NodeJS.ErrnoException).code ?? err.message;
  return String(err);
}
