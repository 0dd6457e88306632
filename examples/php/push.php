<?php
// Pushes to one user through both push APIs, with PHP's curl extension (php-curl).
//   PUSH_API_URL=http://127.0.0.1:2121 PUSH_SECRET=… PUSH_TO=42 php push.php
// Prints each answer; exits 1 when a push was refused.

$api    = getenv('PUSH_API_URL') ?: 'http://127.0.0.1:2121';
$secret = getenv('PUSH_SECRET') ?: '';   // the server's PUSH_SECRET; empty when it has none
$to     = getenv('PUSH_TO') ?: '42';

/** POSTs $body (an array is sent as multipart/form-data) and returns [status, answer text]. */
function post(string $url, $body, array $headers = []): array
{
    $ch = curl_init($url);
    curl_setopt_array($ch, [
        CURLOPT_POST           => true,
        CURLOPT_POSTFIELDS     => $body,
        CURLOPT_HTTPHEADER     => $headers,
        CURLOPT_RETURNTRANSFER => true,
        CURLOPT_TIMEOUT        => 10,
    ]);
    $answer = curl_exec($ch);
    $status = curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
    if ($answer === false) {
        $answer = curl_error($ch);       // no answer at all: connection refused, timeout
    }
    curl_close($ch);
    return [$status, $answer];
}

// 1. The legacy API, exactly as web-msg-sender backends call it: type=publish, to, content.
//    The page gets `content` on `new_msg`, HTML-escaped by the server.
//    With PUSH_SECRET on, the least change is one more array entry: `secret`.
$fields = ['type' => 'publish', 'to' => $to, 'content' => 'Hello from PHP & curl <3'];
if ($secret !== '') {
    $fields['secret'] = $secret;
}
[$status, $answer] = post("$api/", $fields);
echo "legacy push: $status $answer\n";   // ok (a page is open), offline (none is), fail (refused)
$legacyOk = $status === 200 && $answer !== 'fail';

// 2. The v1 JSON API: the page gets `data` on `message`, as JSON (not escaped: show it as
//    text). ttl: kept 600 s for the user until a page acks it, so a user offline now gets it at
//    their next login. Signed: the secret itself never travels, and a signed request cannot be
//    replayed (the server refuses it twice, or 5 minutes late).
$target  = '/api/v1/push';               // path and query exactly as sent: part of the signature
$body    = json_encode(['to' => $to, 'data' => ['text' => 'Your order has shipped', 'order' => 17], 'ttl' => 600]);
$headers = ['Content-Type: application/json'];
if ($secret !== '') {
    $timestamp = (string) time();
    // hex HMAC-SHA256 of: timestamp \n METHOD \n target \n body
    $headers[] = "X-Push-Timestamp: $timestamp";
    $headers[] = 'X-Push-Signature: ' . hash_hmac('sha256', "$timestamp\nPOST\n$target\n$body", $secret);
}
[$status, $answer] = post($api . $target, $body, $headers); // a string: sent as is, the bytes signed
echo "v1 push: $status $answer\n";       // {"id", "online"/"offline" or counts, "stored"}

exit($legacyOk && $status === 200 ? 0 : 1);
