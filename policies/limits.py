"""The `limits` stage: message length at input, answer length at output, and rate limits.

Rate limits are a sliding window per user and per client IP kept in Redis (a sorted set of
request times per key, trimmed and counted in one Lua call), so every API replica counts the
same requests. If Redis cannot be reached the request is let through: the conversation store
fails the turn loudly in that case anyway, and a limiter must not become an outage of its own.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from typing import Any

from pydantic import Field

from policies.base import Context, Strict
from policies.verdicts import Allow, Block, Finding, Verdict

log = logging.getLogger(__name__)

# KEYS[1]: the window's sorted set; ARGV: now (ms), window (ms), limit, a unique member.
# Counts before adding, so a refused request does not extend the caller's own penalty.
_SLIDING_WINDOW = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1] - ARGV[2])
local count = redis.call('ZCARD', KEYS[1])
if count >= tonumber(ARGV[3]) then
  return count
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return count
"""


class RateLimit(Strict):
    """At most `requests` messages in any `window_s` seconds."""

    requests: int = Field(ge=1)
    window_s: int = Field(ge=1, le=86_400)


class LimitRules(Strict):
    """How long messages and answers may be, and how often one may write."""

    # A longer message is refused with the `limits` reply (0: no limit beyond the API's own).
    max_input_chars: int = Field(2000, ge=0)
    # An answer is cut at this length, at a word (0: no limit).
    max_answer_chars: int = Field(4000, ge=0)
    # Messages per user (the channel's user id, else the conversation) and per client IP.
    per_user: RateLimit | None = Field(default_factory=lambda: RateLimit(requests=20, window_s=60))
    per_ip: RateLimit | None = Field(default_factory=lambda: RateLimit(requests=60, window_s=60))
    # Sent when a message is too long or too frequent.
    reply: str = "You're sending messages faster than I can answer. Please wait a moment."
    too_long_reply: str = "That message is too long for me. Could you shorten it?"


class LengthStage:
    """Refuses over-long messages (input point); the answer cut happens in the stream."""

    name = "limits"

    def __init__(self, rules: LimitRules) -> None:
        self._rules = rules

    def warm_up(self) -> None:
        """Nothing to load."""

    def check(self, text: str, context: Context) -> Verdict:
        limit = self._rules.max_input_chars
        if context.point == "input" and limit and len(text) > limit:
            finding = Finding(self.name, "max_input_chars", "block")
            return Block("message too long", self._rules.too_long_reply, (finding,))
        return Allow(text)


class RateLimiter:
    """Sliding-window rate limits in Redis, per user and per IP, per the `limits` rules."""

    def __init__(self, rules: LimitRules, redis: Any | None, prefix: str = "switchboard:") -> None:
        self._rules = rules
        self._redis = redis
        self._prefix = prefix
        self._script: Any = None

    async def check(self, context: Context) -> Verdict:
        """`Block` when this message would exceed a limit; `Allow("")` otherwise."""
        if self._redis is None:
            return Allow("")
        checks = (
            ("per_user", self._rules.per_user, context.user or context.conversation),
            ("per_ip", self._rules.per_ip, context.ip),
        )
        for rule, limit, who in checks:
            if limit is None or not who:
                continue
            try:
                count = await self._hit(rule, who, limit)
            except Exception as exc:  # fail open: see the module docstring
                log.warning("rate limit %s not checked: %s", rule, type(exc).__name__)
                return Allow("", findings=(Finding("limits", f"rate:{rule}", "error"),))
            if count >= limit.requests:
                finding = Finding("limits", f"rate:{rule}", "block")
                return Block(f"rate limit {rule}", self._rules.reply, (finding,))
        return Allow("")

    async def _hit(self, rule: str, who: str, limit: RateLimit) -> int:
        if self._script is None:
            assert self._redis is not None  # checked by the caller
            self._script = self._redis.register_script(_SLIDING_WINDOW)
        # Hashed: a user id or IP address is personal data and must not sit in Redis keys.
        digest = hashlib.sha256(who.encode()).hexdigest()[:24]
        key = f"{self._prefix}rate:{rule}:{digest}"
        now_ms = int(time.time() * 1000)
        count = await self._script(
            keys=[key], args=[now_ms, limit.window_s * 1000, limit.requests, uuid.uuid4().hex]
        )
        return int(count)
