"""Signing webhook requests both ways: `Switchboard-Signature: t=<unix>,v1=<hex>`.

`hex` is HMAC-SHA256, keyed with a channel secret, of `"{t}.{raw body}"` — the scheme
Stripe made familiar. A header may carry several `v1` values (one per secret while secrets
rotate); a request is accepted when any of them matches any configured secret, its `t` is
within `tolerance_s` of now (either way) and the comparison runs in constant time.
A signed request is accepted once: its `replay_key` is remembered for twice the tolerance,
so re-sending a captured request (with any other unsigned header) is a duplicate.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Sequence

HEADER = "Switchboard-Signature"
TOLERANCE_S = 300


class InvalidSignature(Exception):
    """The request is not (provably, recently) signed with a known secret."""


def sign(body: bytes, secrets: Sequence[str], timestamp: int | None = None) -> str:
    """The header value signing `body` with each of `secrets` (a `v1` each)."""
    t = int(time.time()) if timestamp is None else timestamp
    parts = [f"t={t}"] + [f"v1={_digest(secret, t, body)}" for secret in secrets]
    return ",".join(parts)


def _digest(secret: str, timestamp: int | str, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify(
    header: str | None,
    body: bytes,
    secrets: Sequence[str],
    *,
    now: Callable[[], float] = time.time,
    tolerance_s: int = TOLERANCE_S,
) -> int:
    """Raise `InvalidSignature` unless `header` signs `body` with one of `secrets`, now;
    else the signature's time `t` (with the body, what makes the request unique)."""
    if not header:
        raise InvalidSignature(f"missing {HEADER} header")
    timestamp, candidates = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not (timestamp.isascii() and timestamp.isdigit()):
        raise InvalidSignature(f"{HEADER} has no t=<unix time>")
    if not candidates:
        raise InvalidSignature(f"{HEADER} has no v1=<signature>")
    if abs(now() - int(timestamp)) > tolerance_s:
        raise InvalidSignature(f"the signature's time is more than {tolerance_s} s from now")
    matched = False
    for secret in secrets:  # every comparison runs, whatever matched first
        expected = _digest(secret, timestamp, body).encode()
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise InvalidSignature("no signature matches the body with a known secret")
    return int(timestamp)


def replay_key(timestamp: int, body: bytes) -> str:
    """What one signed request is known by: its time and body, whatever else the header
    (or an unsigned header such as Idempotency-Key) says."""
    return hashlib.sha256(str(timestamp).encode() + b"." + body).hexdigest()
