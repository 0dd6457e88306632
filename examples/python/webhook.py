"""A webhook receiver: checks that each POST comes from the push server before trusting it.

    WEBHOOK_SECRET=... PORT=8000 python3 webhook.py

and start the server with WEBHOOK_URL=http://127.0.0.1:8000/ and the same WEBHOOK_SECRET.
PORT=0 takes any free port; the first line printed says which.
"""
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY_BYTES = 1024 * 1024  # events are small (a client.message is at most a few KiB)
MAX_AGE_SECONDS = 300  # refuse older timestamps: a captured request cannot be replayed later


def verify_webhook(secret, timestamp, signature, raw_body, now=None):
    """None when the request was signed with `secret`, else why not. `raw_body`: the bytes as received."""
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return "X-Webhook-Timestamp is not unix seconds"
    if abs((time.time() if now is None else now) - int(timestamp)) > MAX_AGE_SECONDS:
        return "X-Webhook-Timestamp is more than 5 minutes off"
    # X-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + raw_body, hashlib.sha256).hexdigest()
    # constant-time: a plain == would tell an attacker how many leading characters were right
    if not hmac.compare_digest(("sha256=" + digest).encode(), signature.encode()):
        return "X-Signature does not match"
    return None


class WebhookHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = self.headers.get("Content-Length", "")  # the push server always sends one
        if not (length.isascii() and length.isdigit()) or int(length) > MAX_BODY_BYTES:
            self.send_response(413 if length.isascii() and length.isdigit() else 400)
            self.end_headers()
            return
        body = self.rfile.read(int(length))  # verify the raw bytes, before json.loads
        problem = verify_webhook(SECRET, self.headers.get("X-Webhook-Timestamp", ""),
                                 self.headers.get("X-Signature", ""), body)
        if problem:
            print(f"webhook rejected: {problem}", flush=True)
            self.send_response(401)
            self.end_headers()
            return
        # Now the event can be trusted. The same event may come twice (delivery is at least
        # once): dedupe by event["id"] (also in X-Webhook-Id) when that matters.
        event = json.loads(body)
        print(f"webhook verified: {event['type']} uid={event['uid']} id={event['id']}", flush=True)
        self.send_response(204)  # any 2xx; anything else is retried
        self.end_headers()

    def log_message(self, format, *args):  # the lines above say enough
        pass


SECRET = os.environ.get("WEBHOOK_SECRET", "")
if __name__ == "__main__":
    if not SECRET:
        sys.exit("WEBHOOK_SECRET must be set (the same as the push server's)")
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8000"))), WebhookHandler)
    print(f"webhook receiver listening on http://127.0.0.1:{server.server_address[1]}/", flush=True)
    server.serve_forever()
