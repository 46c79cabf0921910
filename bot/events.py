"""A conversation's event log: every frame a client may need to see again, numbered.

Each conversation has one append-only log of events (the user's message accepted, answer
tokens, notices, the final message, errors, an agent joining). Every event gets the next
sequence number of its conversation, so a client that reconnects — after a reload, a dropped
network or a dead pod — asks for what came after the last number it saw, and any process can
answer, because the log lives in Redis:

- `conv:{id}:events`  a stream whose entry ids are `0-{seq}` (capped at `max_events`)
- `conv:{id}:seq`     the conversation's last sequence number

Both carry the session TTL. Only redacted text is ever appended (the turn pipeline redacts
user text before it is accepted and the output filter runs before a token is released).
The in-memory log is the single-process twin used without Redis.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Protocol

from bot.sessions import store_call

# XADD with ids 0-1, 0-2, ...: Redis keeps them ordered and XRANGE/XREAD select by number.
_APPEND = """
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '0-' .. seq, 'e', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return seq
"""


@dataclass(frozen=True, slots=True)
class Event:
    """One logged event: its sequence number and its frame (a JSON object with a `type`)."""

    seq: int
    frame: dict[str, Any]

    def wire(self) -> dict[str, Any]:
        return {**self.frame, "seq": self.seq}


class EventLog(Protocol):
    """Where conversations' events are kept and read back, by sequence number."""

    async def append(self, conversation_id: str, frame: dict[str, Any]) -> int: ...

    async def since(self, conversation_id: str, after: int) -> list[Event]:
        """Events with seq > `after`, oldest first (what the log still holds)."""
        ...

    async def wait(self, conversation_id: str, after: int, timeout_s: float) -> list[Event]:
        """Like `since`, but waits up to `timeout_s` for at least one event."""
        ...


def open_turn(events: list[Event]) -> tuple[Event, list[Event]] | None:
    """The last accepted user message that has no final message yet, and its events since.

    `events` must reach back to that message (e.g. the whole retained log).
    """
    ended: set[Any] = set()  # in_reply_to of the turns that ended
    for i in range(len(events) - 1, -1, -1):
        frame = events[i].frame
        kind = frame.get("type")
        if kind == "message":
            return None
        if kind == "error":  # ends its own turn only (a "busy" for another message does not)
            ended.add(frame.get("in_reply_to"))
        elif kind == "accepted":
            if frame.get("in_reply_to") in ended or frame.get("to_agent"):
                return None  # ended, or relayed to a person (the bot does not answer it)
            return events[i], events[i + 1 :]
    return None


class RedisEventLog:
    """The event log in Redis, shared by every API process."""

    def __init__(
        self,
        redis: Any,
        prefix: str,
        ttl_s: int,
        max_events: int = 5000,
        reader: Any | None = None,
    ) -> None:
        self._redis = redis
        # Blocking reads hold a connection each: a client of their own, so that many open
        # widgets never starve the turns of connections.
        self._reader = reader or redis
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._max = max_events
        self._append = redis.register_script(_APPEND)

    def _keys(self, cid: str) -> tuple[str, str]:
        base = f"{self._prefix}conv:{cid}"
        return base + ":events", base + ":seq"

    async def append(self, conversation_id: str, frame: dict[str, Any]) -> int:
        events, seq = self._keys(conversation_id)
        args = [json.dumps(frame), self._max, self._ttl_s]
        return int(await store_call(self._append(keys=[events, seq], args=args)))

    @staticmethod
    def _decode(entries: list[Any]) -> list[Event]:
        out = []
        for entry_id, fields in entries:
            eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            raw = fields.get("e", fields.get(b"e"))
            out.append(Event(int(eid.split("-")[1]), json.loads(raw)))
        return out

    async def since(self, conversation_id: str, after: int) -> list[Event]:
        key, _ = self._keys(conversation_id)
        entries = await store_call(self._redis.xrange(key, f"0-{after + 1}", "+"))
        return self._decode(entries)

    async def wait(self, conversation_id: str, after: int, timeout_s: float) -> list[Event]:
        key, _ = self._keys(conversation_id)
        block = max(1, int(timeout_s * 1000))
        reply = await store_call(self._reader.xread({key: f"0-{after}"}, block=block))
        return self._decode(reply[0][1]) if reply else []


class InMemoryEventLog:
    """The event log of a single process (no Redis): same behaviour, nothing shared."""

    def __init__(self, ttl_s: int = 7 * 24 * 3600, max_events: int = 5000) -> None:
        self._ttl_s = ttl_s
        self._max = max_events
        self._events: dict[str, list[Event]] = defaultdict(list)
        self._seq: dict[str, int] = defaultdict(int)
        self._touched: dict[str, float] = {}
        self._changed = asyncio.Condition()

    def _expire(self, cid: str) -> None:
        if time.monotonic() - self._touched.get(cid, time.monotonic()) > self._ttl_s:
            self._events.pop(cid, None)
            self._seq.pop(cid, None)

    async def append(self, conversation_id: str, frame: dict[str, Any]) -> int:
        self._expire(conversation_id)
        self._seq[conversation_id] += 1
        seq = self._seq[conversation_id]
        events = self._events[conversation_id]
        events.append(Event(seq, json.loads(json.dumps(frame))))
        del events[: max(0, len(events) - self._max)]
        self._touched[conversation_id] = time.monotonic()
        async with self._changed:
            self._changed.notify_all()
        return seq

    async def since(self, conversation_id: str, after: int) -> list[Event]:
        self._expire(conversation_id)
        return [e for e in self._events.get(conversation_id, []) if e.seq > after]

    async def wait(self, conversation_id: str, after: int, timeout_s: float) -> list[Event]:
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._seq.get(conversation_id, 0) > after),
                    timeout_s,
                )
            except TimeoutError:
                return []
        return await self.since(conversation_id, after)


class FeedbackStore:
    """Thumbs up/down on answers, by conversation and message id, for the admin API.

    Kept in Redis (`feedback` hash: `{conversation}:{message}` -> JSON) when there is one,
    else in memory. A rating of None withdraws the feedback.
    """

    def __init__(self, redis: Any | None, prefix: str) -> None:
        self._redis = redis
        self._key = prefix + "feedback"
        self._memory: dict[str, str] = {}

    async def put(self, conversation_id: str, message_id: str, rating: str | None) -> None:
        field = f"{conversation_id}:{message_id}"
        value = json.dumps({"rating": rating, "at": time.time()})
        if self._redis is None:
            if rating is None:
                self._memory.pop(field, None)
            else:
                self._memory[field] = value
        elif rating is None:
            await store_call(self._redis.hdel(self._key, field))
        else:
            await store_call(self._redis.hset(self._key, field, value))

    async def all(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The newest `limit` ratings, newest first."""
        raw = (
            self._memory
            if self._redis is None
            else await store_call(self._redis.hgetall(self._key))
        )
        rows = []
        for field, value in raw.items():
            name = field.decode() if isinstance(field, bytes) else field
            cid, _, mid = name.partition(":")
            rows.append({"conversation_id": cid, "message_id": mid, **json.loads(value)})
        rows.sort(key=lambda row: row["at"], reverse=True)
        return rows[:limit]
