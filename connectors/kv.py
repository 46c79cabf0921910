"""Small named values the connectors keep beside the conversations (Redis, or memory).

Which conversation a Slack thread or a webhook's conversation id is, whether a reply was
already posted. Keys get the settings' prefix; every value expires.
"""

from __future__ import annotations

import time
from typing import Any

from bot.sessions import store_call


class KeyValue:
    """`get`/`put` of strings with a time to live, in Redis when given one."""

    def __init__(self, redis: Any | None, prefix: str) -> None:
        self._redis = redis  # a client with decode_responses=True
        self._prefix = prefix
        self._memory: dict[str, tuple[str, float]] = {}

    async def get(self, key: str) -> str | None:
        if self._redis is not None:
            value = await store_call(self._redis.get(self._prefix + key))
            return None if value is None else str(value)
        found = self._memory.get(key)
        if found is None or found[1] < time.monotonic():
            self._memory.pop(key, None)
            return None
        return found[0]

    async def put(self, key: str, value: str, ttl_s: int, *, only_new: bool = False) -> bool:
        """Store `value`; with `only_new`, only if the key holds nothing (True if stored)."""
        if self._redis is not None:
            done = await store_call(
                self._redis.set(self._prefix + key, value, ex=ttl_s, nx=only_new)
            )
            return bool(done)
        if only_new and await self.get(key) is not None:
            return False
        self._memory[key] = (value, time.monotonic() + ttl_s)
        return True

    async def delete(self, key: str) -> None:
        if self._redis is not None:
            await store_call(self._redis.delete(self._prefix + key))
            return
        self._memory.pop(key, None)
