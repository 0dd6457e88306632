// Pushes to one user through both push APIs, with Node's built-in fetch (Node 18 or newer).
//   PUSH_API_URL=http://127.0.0.1:2121 PUSH_SECRET=… PUSH_TO=42 node push.mjs
// Prints each answer; exits 1 when a push was refused.
import { createHmac } from 'node:crypto';

const api = process.env.PUSH_API_URL || 'http://127.0.0.1:2121';
const secret = process.env.PUSH_SECRET || ''; // the server's PUSH_SECRET; empty when it has none
const to = process.env.PUSH_TO || '42';

/** POSTs and resolves [status, answer text]; status 0 when no answer came at all. */
async function post(url, init) {
  try {
    const res = await fetch(url, { method: 'POST', signal: AbortSignal.timeout(10_000), ...init });
    return [res.status, await res.text()];
  } catch (err) {
    return [0, err.cause?.message ?? err.message]; // connection refused, timeout
  }
}

// 1. The legacy API, as web-msg-sender backends call it: type=publish, to, content.
//    The page gets `content` on `new_msg`, HTML-escaped by the server.
//    With PUSH_SECRET on, the least change is one more field: `secret` (in the body, never the URL).
const form = new URLSearchParams({ type: 'publish', to, content: 'Hello from Node & fetch <3' });
if (secret) form.set('secret', secret);
const [legacyStatus, answer] = await post(`${api}/`, { body: form });
console.log(`legacy push: ${legacyStatus} ${answer}`); // ok (a page is open), offline (none is), fail (refused)

// 2. The v1 JSON API: the page gets `data` on `message`, as JSON (not escaped: show it with
//    textContent). ttl: kept 600 s for the user until a page acks it, so a user offline now
//    gets it at their next login. Signed: the secret itself never travels, and a signed
//    request cannot be replayed (the server refuses it twice, or 5 minutes late).
const target = '/api/v1/push'; // path and query exactly as sent: part of the signature
const body = JSON.stringify({ to, data: { text: 'Your order has shipped', order: 17 }, ttl: 600 });
const headers = { 'content-type': 'application/json' };
if (secret) {
  const timestamp = String(Math.floor(Date.now() / 1000));
  headers['x-push-timestamp'] = timestamp;
  // hex HMAC-SHA256 of: timestamp \n METHOD \n target \n body
  headers['x-push-signature'] = createHmac('sha256', secret).update(`${timestamp}\nPOST\n${target}\n${body}`).digest('hex');
}
const [v1Status, v1Answer] = await post(api + target, { headers, body });
console.log(`v1 push: ${v1Status} ${v1Answer}`); // {"id", "online"/"offline" or counts, "stored"}

process.exitCode = legacyStatus === 200 && answer !== 'fail' && v1Status === 200 ? 0 : 1;
