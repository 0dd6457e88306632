"""Pushes to one user through both push APIs, with Python's standard library only.

    PUSH_API_URL=http://127.0.0.1:2121 PUSH_SECRET=... PUSH_TO=42 python3 push.py

Prints each answer; exits 1 when a push was refused.
"""
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

API = os.environ.get("PUSH_API_URL") or "http://127.0.0.1:2121"
SECRET = os.environ.get("PUSH_SECRET", "")  # the server's PUSH_SECRET; empty when it has none
TO = os.environ.get("PUSH_TO") or "42"


def post(url, body, headers):
    """POSTs and returns (status, answer text), also for a 4xx/5xx answer."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:  # urllib raises on >= 400; the body says why
        return error.code, error.read().decode()
    except OSError as error:  # no answer at all: connection refused, timeout
        return 0, str(getattr(error, "reason", error))


# 1. The legacy API, as web-msg-sender backends call it: type=publish, to, content.
#    The page gets `content` on `new_msg`, HTML-escaped by the server.
#    With PUSH_SECRET on, the least change is one more field: `secret` (in the body, never the URL).
fields = {"type": "publish", "to": TO, "content": "Hello from Python & urllib <3"}
if SECRET:
    fields["secret"] = SECRET
status, answer = post(API + "/", urllib.parse.urlencode(fields).encode(),
                      {"Content-Type": "application/x-www-form-urlencoded"})
print(f"legacy push: {status} {answer}")  # ok (a page is open), offline (none is), fail (refused)
legacy_ok = status == 200 and answer != "fail"

# 2. The v1 JSON API: the page gets `data` on `message`, as JSON (not escaped: show it as
#    text). ttl: kept 600 s for the user until a page acks it, so a user offline now gets it at
#    their next login. Signed: the secret itself never travels, and a signed request cannot be
#    replayed (the server refuses it twice, or 5 minutes late).
target = "/api/v1/push"  # path and query exactly as sent: part of the signature
body = json.dumps({"to": TO, "data": {"text": "Your order has shipped", "order": 17}, "ttl": 600})
headers = {"Content-Type": "application/json"}
if SECRET:
    timestamp = str(int(time.time()))
    signed = f"{timestamp}\nPOST\n{target}\n{body}"  # timestamp \n METHOD \n target \n body
    headers["X-Push-Timestamp"] = timestamp
    headers["X-Push-Signature"] = hmac.new(SECRET.encode(), signed.encode(), hashlib.sha256).hexdigest()
status, answer = post(API + target, body.encode(), headers)  # send exactly the bytes signed
print(f"v1 push: {status} {answer}")  # {"id", "online"/"offline" or counts, "stored"}

sys.exit(0 if legacy_ok and status == 200 else 1)
