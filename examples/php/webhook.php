<?php
// A webhook receiver: checks that each POST comes from the push server before trusting it.
// Serve it from your web server (it is one endpoint), or try it with PHP's built-in server:
//   WEBHOOK_SECRET=… php -S 127.0.0.1:8000 webhook.php
// and start the push server with WEBHOOK_URL=http://127.0.0.1:8000/ and the same WEBHOOK_SECRET.
// The body's size is bounded by PHP's post_max_size.

const MAX_AGE_SECONDS = 300;             // refuse older timestamps: a captured request cannot be replayed later

/** null when the request was signed with $secret, else why not. $rawBody: the bytes as received. */
function verify_webhook(string $secret, string $timestamp, string $signature, string $rawBody, ?int $now = null): ?string
{
    if (!preg_match('/^\d{1,12}$/', $timestamp)) {
        return 'X-Webhook-Timestamp is not unix seconds';
    }
    if (abs(($now ?? time()) - (int) $timestamp) > MAX_AGE_SECONDS) {
        return 'X-Webhook-Timestamp is more than 5 minutes off';
    }
    // X-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>
    $expected = 'sha256=' . hash_hmac('sha256', "$timestamp.$rawBody", $secret);
    // hash_equals is constant-time: === would tell an attacker how many leading characters were right
    if (!hash_equals($expected, $signature)) {
        return 'X-Signature does not match';
    }
    return null;
}

$secret = getenv('WEBHOOK_SECRET') ?: '';
if ($secret === '') {
    error_log('webhook: WEBHOOK_SECRET must be set (the same as the push server\'s)');
    http_response_code(500);
    exit;
}
if ($_SERVER['REQUEST_METHOD'] !== 'POST') {
    http_response_code(405);
    exit;
}
$body = file_get_contents('php://input'); // the raw body: verify it before json_decode
$problem = verify_webhook(
    $secret,
    $_SERVER['HTTP_X_WEBHOOK_TIMESTAMP'] ?? '',
    $_SERVER['HTTP_X_SIGNATURE'] ?? '',
    $body
);
if ($problem !== null) {
    error_log("webhook rejected: $problem");
    http_response_code(401);
    exit;
}
// Now the event can be trusted. The same event may come twice (delivery is at least once):
// dedupe by $event['id'] (also in X-Webhook-Id) when that matters.
$event = json_decode($body, true);
error_log("webhook verified: {$event['type']} uid={$event['uid']} id={$event['id']}");
http_response_code(204);                 // any 2xx; anything else is retried
