// A webhook receiver: checks that each POST comes from the push server before trusting it.
//   WEBHOOK_SECRET=… PORT=8000 node webhook.mjs
// and start the server with WEBHOOK_URL=http://127.0.0.1:8000/ and the same WEBHOOK_SECRET.
// PORT=0 takes any free port; the first line printed says which.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';

const MAX_BODY_BYTES = 1024 * 1024; // events are small (a client.message is at most a few KiB)
const MAX_AGE_SECONDS = 300; // refuse older timestamps: a captured request cannot be replayed later

/** null when the request was signed with `secret`, else why not. `rawBody`: the bytes as received. */
function verifyWebhook(secret, timestamp, signature, rawBody, now = Date.now() / 1000) {
  if (!/^\d{1,12}$/.test(timestamp)) return 'X-Webhook-Timestamp is not unix seconds';
  if (Math.abs(now - Number(timestamp)) > MAX_AGE_SECONDS) return 'X-Webhook-Timestamp is more than 5 minutes off';
  // X-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>
  const hmac = createHmac('sha256', secret).update(`${timestamp}.`).update(rawBody).digest('hex');
  const expected = Buffer.from(`sha256=${hmac}`);
  const given = Buffer.from(signature);
  // constant-time: a plain === would tell an attacker how many leading characters were right
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'X-Signature does not match';
  return null;
}

const secret = process.env.WEBHOOK_SECRET || '';
if (!secret) {
  console.error('WEBHOOK_SECRET must be set (the same as the push server\'s)');
  process.exit(2);
}

const server = createServer((req, res) => {
  if (req.method !== 'POST') return res.writeHead(405).end();
  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      res.writeHead(413).end();
      req.destroy();
    } else chunks.push(chunk);
  });
  req.on('end', () => {
    const body = Buffer.concat(chunks); // verify the raw bytes, before JSON.parse
    const problem = verifyWebhook(secret, req.headers['x-webhook-timestamp'] ?? '', req.headers['x-signature'] ?? '', body);
    if (problem) {
      console.log(`webhook rejected: ${problem}`);
      return res.writeHead(401).end();
    }
    // Now the event can be trusted. The same event may come twice (delivery is at least
    // once): dedupe by event.id (also in X-Webhook-Id) when that matters.
    const event = JSON.parse(body.toString('utf8'));
    console.log(`webhook verified: ${event.type} uid=${event.uid} id=${event.id}`);
    res.writeHead(204).end(); // any 2xx; anything else is retried
  });
});
server.listen(Number(process.env.PORT ?? 8000), '127.0.0.1', () => {
  console.log(`webhook receiver listening on http://127.0.0.1:${server.address().port}/`);
});
