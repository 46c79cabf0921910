"""Who may open the widget's websocket, and who may resume a conversation.

- A page asks `POST /api/widget/token` for a short-lived token with its site key; the
  server checks the page's `Origin` against the site's allowed origins and signs
  `{site, origin, expiry}`. The websocket handshake must carry that token (`?token=`) and
  come from the same origin, else it is refused with HTTP 403.
- A conversation is resumed (after a reload, or from another pod) with its resume token,
  an HMAC of its id: a conversation id alone, seen in a log, does not open it.

Tokens are `base64url(payload).base64url(HMAC-SHA256)` under one secret shared by every
process (settings, or a random one kept in Redis).
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bot.settings import WebSettings

SECRET_KEY = "web:secret"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def shared_secret(settings: WebSettings, redis: Any | None, prefix: str) -> bytes:
    """The signing secret: configured, else one random secret shared through Redis."""
    if settings.secret is not None:
        return settings.secret.get_secret_value().encode()
    if redis is None:  # a single process: its own secret is enough
        return secrets.token_bytes(32)
    key = prefix + SECRET_KEY
    await redis.set(key, secrets.token_hex(32), nx=True)
    value = await redis.get(key)
    return (value.decode() if isinstance(value, bytes) else str(value)).encode()


class Denied(Exception):
    """A token or an origin is refused; the message says why (for logs and 403 bodies)."""


@dataclass(frozen=True, slots=True)
class WidgetGrant:
    """What a valid widget token allows: this site, from this origin."""

    site: str
    origin: str


def same_origin(origin: str, host: str | None, scheme: str = "http") -> bool:
    """Whether `origin` is the server's own (the page was served by this host)."""
    if not host:
        return False
    parts = urlsplit(origin)
    return parts.netloc.lower() == host.lower() and parts.scheme in (scheme, "http", "https")


class Signer:
    """Issues and checks widget tokens and resume tokens."""

    def __init__(
        self, secret: bytes, settings: WebSettings, clock: Callable[[], float] = time.time
    ) -> None:
        self._secret = secret
        self._settings = settings
        self._clock = clock

    def _mac(self, purpose: str, payload: bytes) -> str:
        return _b64(hmac.new(self._secret, purpose.encode() + b":" + payload, "sha256").digest())

    def origin_allowed(self, site: str, origin: str, host: str | None) -> bool:
        config = self._settings.sites.get(site)
        if config is None:
            return False
        return origin.lower() in config.origins or same_origin(origin, host)

    def widget_token(self, site: str, origin: str, host: str | None) -> tuple[str, int]:
        """A token for `origin` to open the websocket as `site`, and its lifetime (s)."""
        if site not in self._settings.sites:
            raise Denied(f"unknown site key {site!r}")
        if not self.origin_allowed(site, origin, host):
            raise Denied(
                f"origin {origin!r} may not use site key {site!r}; add it to the site's "
                "origins (SWITCHBOARD_WEB__SITES)"
            )
        ttl = self._settings.token_ttl_s
        payload = json.dumps(
            {"s": site, "o": origin.lower(), "e": int(self._clock()) + ttl},
            separators=(",", ":"),
        ).encode()
        return f"{_b64(payload)}.{self._mac('widget', payload)}", ttl

    def check_widget_token(self, token: str, origin: str | None, host: str | None) -> WidgetGrant:
        """The grant of a valid token presented from `origin`; raises `Denied` otherwise."""
        try:
            body, mac = token.split(".", 1)
            payload = _unb64(body)
        except ValueError:
            raise Denied("the widget token is malformed") from None
        if not hmac.compare_digest(mac.encode(), self._mac("widget", payload).encode()):
            raise Denied("the widget token's signature does not match")
        try:
            data = json.loads(payload)
            expiry, site, issued_to = float(data["e"]), str(data["s"]), str(data["o"])
        except (ValueError, KeyError, TypeError):
            raise Denied("the widget token is malformed") from None
        if expiry < self._clock():
            raise Denied("the widget token has expired; ask for a new one")
        if origin is not None and origin.lower() != issued_to:
            raise Denied(f"the widget token was issued to {issued_to!r}, not {origin!r}")
        if not self.origin_allowed(site, issued_to, host):
            raise Denied(f"origin {issued_to!r} is no longer allowed for {site!r}")
        return WidgetGrant(site, issued_to)

    def resume_token(self, conversation_id: str) -> str:
        return self._mac("resume", conversation_id.encode())

    def check_resume_token(self, conversation_id: str, token: object) -> bool:
        return isinstance(token, str) and hmac.compare_digest(
            token.encode(), self.resume_token(conversation_id).encode()
        )

    def user_id(self, email: str) -> str:
        """A stable pseudonymous user id for an identified visitor (the email is not kept)."""
        return "u_" + self._mac("user", email.strip().lower().encode())[:22]


class TokenBucket:
    """A per-connection message rate limit: `burst` at once, then `per_minute`."""

    def __init__(
        self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = per_minute / 60
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._at = clock()

    def take(self) -> float:
        """0 when a message may go now, else the seconds until one may."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self._rate
