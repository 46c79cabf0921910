"""Conversation state: the `SessionStore` protocol, Redis and in-memory implementations.

Redis layout (every key starts with the configured prefix, e.g. `sb:`):

- `conv:{id}`         hash: channel, user, status (bot|pending_human|human|closed), created,
                      updated, and `m:{name}` fields: what channels and the handoff desk keep
                      about the conversation (where to reach the customer, the agents' thread)
- `conv:{id}:turns`   list of JSON turns, capped at `max_turns`, oldest dropped
- `lock:conv:{id}`    the per-conversation lock that serializes turns across replicas: a
                      lease of `lock_timeout_s`, renewed while the turn runs, so that a
                      dead process's turn can be finished by another one soon after

Both conversation keys carry the session TTL, renewed on every turn. Turns are appended
in one MULTI/EXEC transaction, so a turn is stored whole or not at all. Only redacted
text ever reaches a store: the manager redacts before it calls `append`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, TypeVar

from bot.errors import Busy, StoreUnavailable
from bot.observability import REDIS_ERRORS
from bot.settings import SessionSettings
from bot.types import Turn, new_id

log = logging.getLogger(__name__)

Status = Literal["bot", "pending_human", "human", "closed"]
STATUSES: tuple[Status, ...] = ("bot", "pending_human", "human", "closed")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Session:
    """A conversation's metadata."""

    id: str
    channel: str
    user: str | None = None
    status: Status = "bot"
    created: float = 0.0
    updated: float = 0.0
    meta: Mapping[str, str] = field(default_factory=dict)  # see `SessionStore.set_meta`


class SessionStore(Protocol):
    """Where conversations live. Faults raise `StoreUnavailable`, never lose a turn silently."""

    description: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    async def create(self, channel: str, user: str | None = None) -> Session: ...

    async def get(self, conversation_id: str) -> Session | None: ...

    async def append(self, conversation_id: str, turns: Sequence[Turn]) -> None: ...

    async def set_status(
        self, conversation_id: str, status: Status, expect: Sequence[Status] = ()
    ) -> bool:
        """Set the status, atomically, if it is one of `expect` (any when empty); False if it
        was not, or the conversation does not exist."""
        ...

    async def set_meta(self, conversation_id: str, fields: Mapping[str, str]) -> None:
        """Keep small named strings with the conversation (read back as `Session.meta`)."""
        ...

    async def history(self, conversation_id: str, limit: int | None = None) -> list[Turn]: ...

    def lock(self, conversation_id: str) -> AbstractAsyncContextManager[None]: ...

    async def locked(self, conversation_id: str) -> bool:
        """Whether a turn of this conversation holds its lock now (in any process)."""
        ...


class InMemorySessionStore:
    """A single-process store: the embedded default when no Redis URL is configured."""

    description = "in-memory (single process; conversations are lost on restart)"

    def __init__(self, settings: SessionSettings, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._turns: dict[str, list[Turn]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def start(self) -> None:
        log.warning("sessions: %s; set SWITCHBOARD_REDIS_URL to share them", self.description)

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        return True

    async def create(self, channel: str, user: str | None = None) -> Session:
        now = self._clock()
        session = Session(new_id(), channel, user, "bot", now, now)
        self._sessions[session.id] = session
        self._turns[session.id] = []
        return session

    async def get(self, conversation_id: str) -> Session | None:
        session = self._sessions.get(conversation_id)
        if session and self._clock() - session.updated > self._settings.ttl_s:
            self._sessions.pop(conversation_id, None)
            self._turns.pop(conversation_id, None)
            return None
        return session

    async def append(self, conversation_id: str, turns: Sequence[Turn]) -> None:
        session = await self.get(conversation_id)
        if session is None:
            raise KeyError(conversation_id)
        stored = self._turns.setdefault(conversation_id, [])
        stored.extend(turns)
        del stored[: max(0, len(stored) - self._settings.max_turns)]
        self._sessions[conversation_id] = replace(session, updated=self._clock())

    async def set_status(
        self, conversation_id: str, status: Status, expect: Sequence[Status] = ()
    ) -> bool:
        session = await self.get(conversation_id)
        if session is None or (expect and session.status not in expect):
            return False
        self._sessions[conversation_id] = replace(session, status=status)
        return True

    async def set_meta(self, conversation_id: str, fields: Mapping[str, str]) -> None:
        session = await self.get(conversation_id)
        if session is not None:
            meta = {**session.meta, **fields}
            self._sessions[conversation_id] = replace(session, meta=meta)

    async def history(self, conversation_id: str, limit: int | None = None) -> list[Turn]:
        if limit == 0:
            return []
        turns = self._turns.get(conversation_id, [])
        return list(turns[-limit:] if limit else turns)

    @asynccontextmanager
    async def lock(self, conversation_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(conversation_id, asyncio.Lock())
        try:
            await asyncio.wait_for(lock.acquire(), self._settings.lock_wait_s)
        except TimeoutError:
            raise Busy("another message of this conversation is still being answered") from None
        try:
            yield
        finally:
            lock.release()

    async def locked(self, conversation_id: str) -> bool:
        lock = self._locks.get(conversation_id)
        return lock is not None and lock.locked()


class RedisSessionStore:
    """Conversations in Redis: shared by every API replica, surviving restarts."""

    def __init__(self, url: str, settings: SessionSettings, prefix: str = "sb:") -> None:
        self._url = url
        self._settings = settings
        self._prefix = prefix
        self._redis: Any = None
        self._set_status: Any = None
        self.description = f"redis ({_safe_url(url)}, key prefix {prefix!r})"

    @property
    def client(self) -> Any:
        """The Redis client (after `start`), for state kept beside the conversations."""
        return self._redis

    async def start(self) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.Redis.from_url(
            self._url, decode_responses=True, socket_connect_timeout=3, socket_timeout=10
        )
        self._set_status = self._redis.register_script(_SET_STATUS)
        if not await self.ping():
            raise StoreUnavailable(
                f"cannot reach Redis at {_safe_url(self._url)}: is it running? "
                "Check SWITCHBOARD_REDIS_URL, or unset it to use the in-memory store."
            )
        log.info("sessions: %s", self.description)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception as exc:  # any fault means "not ready"; the caller reports it
            log.warning("redis ping failed: %s", exc)
            return False

    def _conv(self, cid: str) -> str:
        return f"{self._prefix}conv:{cid}"

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        return await store_call(op())

    async def create(self, channel: str, user: str | None = None) -> Session:
        now = time.time()
        session = Session(new_id(), channel, user, "bot", now, now)
        fields = {
            "channel": channel,
            "user": user or "",
            "status": "bot",
            "created": now,
            "updated": now,
        }

        async def op() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._conv(session.id), mapping=fields)
                pipe.expire(self._conv(session.id), self._settings.ttl_s)
                await pipe.execute()

        await self._call(op)
        return session

    async def get(self, conversation_id: str) -> Session | None:
        data = await self._call(lambda: self._redis.hgetall(self._conv(conversation_id)))
        if not data:
            return None
        return Session(
            conversation_id,
            data["channel"],
            data["user"] or None,
            data["status"],
            float(data["created"]),
            float(data["updated"]),
            {k[2:]: v for k, v in data.items() if k.startswith("m:")},
        )

    async def set_status(
        self, conversation_id: str, status: Status, expect: Sequence[Status] = ()
    ) -> bool:
        key = self._conv(conversation_id)
        done = await self._call(lambda: self._set_status(keys=[key], args=[status, *expect]))
        return bool(done)

    async def set_meta(self, conversation_id: str, fields: Mapping[str, str]) -> None:
        key = self._conv(conversation_id)
        mapping = {"m:" + name: value for name, value in fields.items()}
        await self._call(lambda: self._redis.hset(key, mapping=mapping))

    async def append(self, conversation_id: str, turns: Sequence[Turn]) -> None:
        key, turns_key = self._conv(conversation_id), self._conv(conversation_id) + ":turns"
        ttl = self._settings.ttl_s

        async def op() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(turns_key, *(json.dumps(t.to_json()) for t in turns))
                pipe.ltrim(turns_key, -self._settings.max_turns, -1)
                pipe.hset(key, "updated", time.time())
                pipe.expire(turns_key, ttl)
                pipe.expire(key, ttl)
                await pipe.execute()

        await self._call(op)

    async def history(self, conversation_id: str, limit: int | None = None) -> list[Turn]:
        if limit == 0:
            return []
        start = -limit if limit else 0
        key = self._conv(conversation_id) + ":turns"
        raw = await self._call(lambda: self._redis.lrange(key, start, -1))
        return [Turn.from_json(json.loads(item)) for item in raw]

    @asynccontextmanager
    async def lock(self, conversation_id: str) -> AsyncIterator[None]:
        from redis.exceptions import ConnectionError, LockError, TimeoutError

        lock = self._redis.lock(
            f"{self._prefix}lock:conv:{conversation_id}",
            timeout=self._settings.lock_timeout_s,
            blocking_timeout=self._settings.lock_wait_s,
        )
        acquired = await self._call(lock.acquire)
        if not acquired:
            raise Busy("another message of this conversation is still being answered")
        renew = asyncio.create_task(self._renew(lock, conversation_id))
        try:
            yield
        finally:
            renew.cancel()
            try:
                await lock.release()
            except LockError:  # expired while we held it; the next turn may already run
                log.warning("lock for conversation %s expired before release", conversation_id)
            except (ConnectionError, TimeoutError, OSError):  # it expires by itself
                log.warning("could not release the lock of conversation %s", conversation_id)

    async def _renew(self, lock: Any, conversation_id: str) -> None:
        """Keep the lease while the turn runs: a third of its length between renewals."""
        from redis.exceptions import ConnectionError, LockError, TimeoutError

        while True:
            await asyncio.sleep(self._settings.lock_timeout_s / 3)
            try:
                await lock.reacquire()
            except LockError:
                log.warning("the lock of conversation %s was lost", conversation_id)
                return
            except (ConnectionError, TimeoutError, OSError) as exc:
                log.warning("could not renew the lock of %s: %s", conversation_id, exc)

    async def locked(self, conversation_id: str) -> bool:
        key = f"{self._prefix}lock:conv:{conversation_id}"
        return bool(await self._call(lambda: self._redis.exists(key)))


# Compare-and-set of a conversation's status: ARGV[1] the new one, ARGV[2..] the expected.
_SET_STATUS = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
if #ARGV > 1 then
  local ok = false
  for i = 2, #ARGV do if status == ARGV[i] then ok = true end end
  if not ok then return 0 end
end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
return 1
"""


async def store_call(pending: Awaitable[T]) -> T:
    """Await a Redis command; any Redis fault (gone, timed out, READONLY after a failover,
    out of memory) becomes `StoreUnavailable`."""
    from redis.exceptions import RedisError

    try:
        return await pending
    except (RedisError, OSError) as exc:
        REDIS_ERRORS.inc()
        raise StoreUnavailable(f"conversation store unavailable: {exc}") from exc


def _safe_url(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url
