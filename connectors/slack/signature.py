"""Verifying that a request comes from Slack (its "signing secret" scheme).

Slack sends `X-Slack-Request-Timestamp` and `X-Slack-Signature: v0=<hex>`, the hex being
HMAC-SHA256 of `v0:{timestamp}:{raw body}` keyed with the app's signing secret. A request is
accepted only if both headers are there, the timestamp is within `tolerance_s` of now (either
way: a replayed old request and a forged future one are both refused) and the signature
matches (compared in constant time).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping

TOLERANCE_S = 300


class InvalidSignature(Exception):
    """The request is not (provably, recently) from Slack; the message says why."""


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Slack-Signature` value for a request."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify_slack_request(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: Callable[[], float] = time.time,
    tolerance_s: int = TOLERANCE_S,
) -> None:
    """Raise `InvalidSignature` unless `body` with `headers` was signed by Slack just now.

    `headers` must look names up case-insensitively (Starlette's and httpx's do; pass
    lower-case keys in a plain dict). `now` is the clock, injectable for tests.
    """
    timestamp = headers.get("x-slack-request-timestamp")
    signature = headers.get("x-slack-signature")
    if not timestamp or not signature:
        raise InvalidSignature("missing X-Slack-Request-Timestamp or X-Slack-Signature")
    try:
        sent = int(timestamp)
    except ValueError:
        raise InvalidSignature("X-Slack-Request-Timestamp is not a number") from None
    if abs(now() - sent) > tolerance_s:
        raise InvalidSignature(
            f"the request timestamp is more than {tolerance_s} s from now (a replay, or a "
            "clock out of sync)"
        )
    expected = slack_signature(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise InvalidSignature("the signature does not match the body")
