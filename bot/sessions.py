"""Conversation state: the `SessionStore` protocol, Redis and in-memory implementations.

Redis layout (every key starts with the configured prefix, e.g. `sb:`):

- `conv:{id}`         hash: channel, user, status (bot|pending_human|human|closed), created,
                      updated, and `m:{name}` fields: what channels and the handoff desk keep
                      about the conversation (where to reach the customer, the agents' thread)
- `conv:{id}:turns`   list of JSON turns, capped at `max_turns`, oldest dropped
- `lock:conv:{id}`    the per-conversation lock that serializes turns across replicas: a
                      lease of `lock_timeout_s`, renewed while the turn runs, so that a
                      dead process's turn can be finished by another one soon after. Its
                      value is the holder's token, the fencing token: a turn's writes
                      (`append(..., lease=)`) are refused once another process holds the
                      lock, so a process that was paused past its lease cannot answer too

Both conversation keys carry the session TTL, renewed on every turn. Turns are appended
in one Lua script, so a turn is stored whole or not at all. Only redacted
text ever reaches a store: the manager redacts before it calls `append`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, TypeVar

from bot.errors import Busy, LeaseLost, StoreUnavailable
from bot.observability import REDIS_ERRORS
from bot.settings import SessionSettings
from bot.types import Turn, new_id

log = logging.getLogger(__name__)
# Connections to Redis per process (the store's client: turns, locks, the job queue's
# writes); a turn past it waits up to POOL_WAIT_S for one to come free.
MAX_CONNECTIONS = 200
POOL_WAIT_S = 10.0

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


@dataclass(slots=True)
class Lease:
    """A turn's hold on its conversation's lock, as `SessionStore.lock` yields it.

    `token` fences the turn's writes: the store refuses them once the lock is someone else's.
    `confirmed` is when the store last said the lock was still ours (monotonic clock); a
    lease not confirmed for half its length may have run out (the process was paused, or
    starved), and `SessionStore.confirm` asks the store before anything more is said.
    """

    conversation_id: str
    token: str
    ttl_s: float
    confirmed: float = field(default_factory=time.monotonic)
    lost: bool = False

    def doubtful(self) -> bool:
        return self.lost or time.monotonic() - self.confirmed > self.ttl_s / 2


class SessionStore(Protocol):
    """Where conversations live. Faults raise `StoreUnavailable`, never lose a turn silently."""

    description: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    async def create(self, channel: str, user: str | None = None) -> Session: ...

    async def get(self, conversation_id: str) -> Session | None: ...

    async def append(
        self, conversation_id: str, turns: Sequence[Turn], lease: Lease | None = None
    ) -> None:
        """Store `turns` whole; with `lease`, only while it holds the conversation's lock
        (else `LeaseLost`, and nothing is stored)."""
        ...

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

    def lock(self, conversation_id: str) -> AbstractAsyncContextManager[Lease]: ...

    async def confirm(self, lease: Lease) -> None:
        """Make sure `lease` still holds its lock (and extend it); `LeaseLost` if not."""
        ...

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
        self._holders: dict[str, str] = {}  # conversation id -> the lock holder's token

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

    async def append(
        self, conversation_id: str, turns: Sequence[Turn], lease: Lease | None = None
    ) -> None:
        if lease is not None:
            await self.confirm(lease)
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
    async def lock(self, conversation_id: str) -> AsyncIterator[Lease]:
        lock = self._locks.setdefault(conversation_id, asyncio.Lock())
        try:
            await asyncio.wait_for(lock.acquire(), self._settings.lock_wait_s)
        except TimeoutError:
            raise Busy("another message of this conversation is still being answered") from None
        lease = Lease(conversation_id, uuid.uuid4().hex, self._settings.lock_timeout_s)
        self._holders[conversation_id] = lease.token
        try:
            yield lease
        finally:
            self._holders.pop(conversation_id, None)
            lock.release()

    async def confirm(self, lease: Lease) -> None:
        # One process: a lock is held until it is released, never taken over.
        if self._holders.get(lease.conversation_id) != lease.token:
            lease.lost = True
            raise LeaseLost(f"conversation {lease.conversation_id}: the turn's lock is gone")
        lease.confirmed = time.monotonic()

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
        self._append: Any = None
        self._extend: Any = None
        self.description = f"redis ({_safe_url(url)}, key prefix {prefix!r})"

    @property
    def client(self) -> Any:
        """The Redis client (after `start`), for state kept beside the conversations."""
        return self._redis

    async def start(self) -> None:
        import redis.asyncio as aioredis

        # A turn waits for a free connection rather than failing: redis-py's default pool
        # raises "Too many connections" past 100 at once, and 128 open widgets sending at
        # the same moment got `store_unavailable` (bench/ws_load.py).
        pool = aioredis.BlockingConnectionPool.from_url(
            self._url,
            decode_responses=True,
            socket_connect_timeout=3,
            socket_timeout=10,
            max_connections=MAX_CONNECTIONS,
            timeout=POOL_WAIT_S,
        )
        self._redis = aioredis.Redis.from_pool(pool)
        self._set_status = self._redis.register_script(_SET_STATUS)
        self._append = self._redis.register_script(_APPEND)
        self._extend = self._redis.register_script(_EXTEND)
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

    async def append(
        self, conversation_id: str, turns: Sequence[Turn], lease: Lease | None = None
    ) -> None:
        key = self._conv(conversation_id)
        keys = [key, key + ":turns", self._lock_key(conversation_id)]
        args = [
            lease.token if lease is not None else "",
            self._settings.max_turns,
            time.time(),
            self._settings.ttl_s,
            *(json.dumps(t.to_json()) for t in turns),
        ]
        stored = await self._call(lambda: self._append(keys=keys, args=args))
        if not stored:
            assert lease is not None
            lease.lost = True
            raise LeaseLost(
                f"conversation {conversation_id}: another process took the turn over; "
                "this one's answer is not stored"
            )

    async def history(self, conversation_id: str, limit: int | None = None) -> list[Turn]:
        if limit == 0:
            return []
        start = -limit if limit else 0
        key = self._conv(conversation_id) + ":turns"
        raw = await self._call(lambda: self._redis.lrange(key, start, -1))
        return [Turn.from_json(json.loads(item)) for item in raw]

    def _lock_key(self, conversation_id: str) -> str:
        return f"{self._prefix}lock:conv:{conversation_id}"

    @asynccontextmanager
    async def lock(self, conversation_id: str) -> AsyncIterator[Lease]:
        from redis.exceptions import ConnectionError, LockError, TimeoutError

        lock = self._redis.lock(
            self._lock_key(conversation_id),
            timeout=self._settings.lock_timeout_s,
            blocking_timeout=self._settings.lock_wait_s,
        )
        lease = Lease(conversation_id, uuid.uuid4().hex, self._settings.lock_timeout_s)
        acquired = await self._call(lambda: lock.acquire(token=lease.token))
        if not acquired:
            raise Busy("another message of this conversation is still being answered")
        lease.confirmed = time.monotonic()
        renew = asyncio.create_task(self._renew(lock, lease))
        try:
            yield lease
        finally:
            renew.cancel()
            try:
                await lock.release()
            except LockError:  # expired while we held it; the next turn may already run
                log.warning("lock for conversation %s expired before release", conversation_id)
            except (ConnectionError, TimeoutError, OSError):  # it expires by itself
                log.warning("could not release the lock of conversation %s", conversation_id)

    async def _renew(self, lock: Any, lease: Lease) -> None:
        """Keep the lease while the turn runs: a third of its length between renewals."""
        from redis.exceptions import ConnectionError, LockError, TimeoutError

        while True:
            await asyncio.sleep(self._settings.lock_timeout_s / 3)
            try:
                await lock.reacquire()
                lease.confirmed = time.monotonic()
            except LockError:
                log.warning("the lock of conversation %s was lost", lease.conversation_id)
                lease.lost = True
                return
            except (ConnectionError, TimeoutError, OSError) as exc:
                log.warning("could not renew the lock of %s: %s", lease.conversation_id, exc)

    async def confirm(self, lease: Lease) -> None:
        key, ttl_ms = self._lock_key(lease.conversation_id), int(lease.ttl_s * 1000)
        held = not lease.lost and await self._call(
            lambda: self._extend(keys=[key], args=[lease.token, ttl_ms])
        )
        if not held:
            lease.lost = True
            raise LeaseLost(
                f"conversation {lease.conversation_id}: another process took the turn over"
            )
        lease.confirmed = time.monotonic()

    async def locked(self, conversation_id: str) -> bool:
        key = self._lock_key(conversation_id)
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


# Append turns, whole, to a conversation: KEYS conv, its turns, its lock; ARGV the writer's
# lease token ('' for none), max turns, now, TTL, then the turns. With a token, nothing is
# written unless the lock still holds it (the fencing check): 0.
_APPEND = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
for i = 5, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('HSET', KEYS[1], 'updated', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""

# Extend a lock still held by ARGV[1] to ARGV[2] ms: 1, else 0 (someone else holds it).
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
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
