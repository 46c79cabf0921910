"""One conformance suite for every `SessionStore`; the Redis run uses the real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis

from bot.errors import Busy, StoreUnavailable
from bot.sessions import InMemorySessionStore, RedisSessionStore, SessionStore
from bot.settings import SessionSettings
from bot.types import Citation, Turn

pytestmark = pytest.mark.integration

SETTINGS = SessionSettings(max_turns=4, ttl_s=600, lock_wait_s=0.5, lock_timeout_s=5)


@pytest.fixture(params=["memory", "redis"])
async def store(
    request: pytest.FixtureRequest, clean_redis: redis.Redis, redis_url: str
) -> AsyncIterator[SessionStore]:
    impl: SessionStore
    if request.param == "memory":
        impl = InMemorySessionStore(SETTINGS)
    else:
        impl = RedisSessionStore(redis_url, SETTINGS, prefix="sbtest:")
    await impl.start()
    yield impl
    await impl.close()


async def test_created_conversation_is_found_when_fetched(store: SessionStore) -> None:
    session = await store.create("web", "u1")
    found = await store.get(session.id)
    assert found is not None
    assert (found.id, found.channel, found.user, found.status) == (session.id, "web", "u1", "bot")


async def test_get_returns_none_when_conversation_is_unknown(store: SessionStore) -> None:
    assert await store.get("does-not-exist") is None


async def test_turns_round_trip_in_order_when_appended(store: SessionStore) -> None:
    session = await store.create("web")
    first = Turn("user", "hello")
    second = Turn("assistant", "hi", citations=(Citation("Returns", "returns.md"),))
    await store.append(session.id, [first])
    await store.append(session.id, [second])
    assert await store.history(session.id) == [first, second]
    assert await store.history(session.id, limit=1) == [second]
    assert await store.history(session.id, limit=0) == []


async def test_history_is_capped_when_over_max_turns(store: SessionStore) -> None:
    session = await store.create("web")
    turns = [Turn("user", f"m{i}") for i in range(7)]
    for turn in turns:
        await store.append(session.id, [turn])
    assert [t.text for t in await store.history(session.id)] == ["m3", "m4", "m5", "m6"]


async def test_lock_serializes_turns_when_two_run_at_once(store: SessionStore) -> None:
    session = await store.create("web")
    events: list[str] = []

    async def turn(name: str) -> None:
        async with store.lock(session.id):
            events.append(f"{name}-start")
            await asyncio.sleep(0.05)
            events.append(f"{name}-end")

    await asyncio.gather(turn("a"), turn("b"))
    assert events in (
        ["a-start", "a-end", "b-start", "b-end"],
        ["b-start", "b-end", "a-start", "a-end"],
    )


async def test_lock_raises_busy_when_held_too_long(store: SessionStore) -> None:
    session = await store.create("web")
    async with store.lock(session.id):
        with pytest.raises(Busy):
            async with store.lock(session.id):
                pass


async def test_redis_keys_have_prefix_and_ttl_when_stored(
    clean_redis: redis.Redis, redis_url: str
) -> None:
    store = RedisSessionStore(redis_url, SETTINGS, prefix="acme:")
    await store.start()
    session = await store.create("web")
    await store.append(session.id, [Turn("user", "hello")])
    keys = sorted(clean_redis.keys("*"))
    assert keys == [f"acme:conv:{session.id}", f"acme:conv:{session.id}:turns"]
    assert all(0 < clean_redis.ttl(key) <= SETTINGS.ttl_s for key in keys)
    await store.close()


async def test_start_fails_clearly_when_redis_is_unreachable() -> None:
    store = RedisSessionStore("redis://127.0.0.1:1/0", SETTINGS)
    with pytest.raises(StoreUnavailable, match=r"cannot reach Redis at redis://127\.0\.0\.1:1/0"):
        await store.start()
    await store.close()


async def test_operations_raise_store_unavailable_when_redis_goes_away() -> None:
    store = RedisSessionStore("redis://127.0.0.1:1/0", SETTINGS)
    with pytest.raises(StoreUnavailable):
        await store.start()
    with pytest.raises(StoreUnavailable):
        await store.create("web")
    assert await store.ping() is False
    await store.close()
