"""The durable job queue on real Redis: once-only puts, retries, dead letters, replay, and a
job whose worker died taken over by another worker."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from bot.jobs import GiveUp, Job, MemoryJobQueue, RedisJobQueue, RetryLater, backoff

pytestmark = pytest.mark.integration


@pytest.fixture
async def clients(aredis: aioredis.Redis, redis_url: str) -> AsyncIterator[list[aioredis.Redis]]:
    made = [aioredis.Redis.from_url(redis_url, decode_responses=True) for _ in range(3)]
    yield [aredis, *made]
    for client in made:
        await client.aclose()


def _queue(clients: list[aioredis.Redis], reader: int = 1, **kw: float) -> RedisJobQueue:
    return RedisJobQueue(clients[0], clients[reader], "jt:", poll_s=0.1, **kw)  # type: ignore[arg-type]


async def _until(check: object, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_once_keys_make_concurrent_repeats_one_job(clients: list[aioredis.Redis]) -> None:
    queue = _queue(clients)
    ran: list[str] = []

    async def handler(job: Job) -> None:
        ran.append(job.payload["n"])

    queue.handle("t", handler)
    puts = await asyncio.gather(*(queue.put("t", {"n": str(i)}, once="event-1") for i in range(8)))
    ids = {job_id for job_id, _ in puts}
    assert len(ids) == 1 and sum(new for _, new in puts) == 1  # every repeat names the first
    await queue.start()
    try:
        await _until(lambda: ran)
        await asyncio.sleep(0.3)
        assert len(ran) == 1
    finally:
        await queue.close()


async def test_retries_with_backoff_then_dead_then_replayed(clients: list[aioredis.Redis]) -> None:
    queue = _queue(clients)
    tries: list[tuple[int, float]] = []
    healthy = False

    async def handler(job: Job) -> None:
        tries.append((job.attempt, time.monotonic()))
        if healthy:
            return
        if job.attempt < 2:
            raise RetryLater(0.3, f"try {job.attempt} failed")
        raise GiveUp("receiver says no")

    queue.handle("t", handler)
    await queue.start()
    try:
        job_id, _ = await queue.put("t", {})
        await _until(lambda: len(tries) == 3)
        gaps = [b[1] - a[1] for a, b in itertools.pairwise(tries)]
        assert all(gap >= 0.25 for gap in gaps), gaps  # waited, not hammered
        for _ in range(50):
            dead = await queue.dead()
            if dead:
                break
            await asyncio.sleep(0.1)
        assert [row["job"]["id"] for row in dead] == [job_id]
        assert dead[0]["error"] == "receiver says no" and dead[0]["job"]["attempt"] == 2
        assert dead[0]["job"]["last_error"] == "try 1 failed"
        healthy = True
        assert await queue.replay(job_id)
        assert not await queue.replay(job_id)  # gone from the dead letters
        await _until(lambda: len(tries) == 4)
        assert tries[-1][0] == 0  # fresh tries
        assert await queue.dead() == []
    finally:
        await queue.close()


async def test_a_dead_workers_job_is_taken_over(clients: list[aioredis.Redis]) -> None:
    first = _queue(clients, reader=1, claim_idle_s=1.0)
    second = _queue(clients, reader=2, claim_idle_s=1.0)
    started = asyncio.Event()
    done: list[str] = []

    async def hang(job: Job) -> None:
        started.set()
        await asyncio.sleep(3600)

    async def finish(job: Job) -> None:
        done.append(job.id)

    first.handle("t", hang)
    second.handle("t", finish)
    await first.start()
    job_id, _ = await first.put("t", {})
    await asyncio.wait_for(started.wait(), 10)
    await first.close()  # dies mid-job: nothing settled, no more heartbeats
    began = time.monotonic()
    await second.start()
    try:
        await _until(lambda: done, within=15)
        assert done == [job_id]
        assert time.monotonic() - began >= 0.5  # only after the job went silent
    finally:
        await second.close()


async def test_a_running_job_keeps_its_claim(clients: list[aioredis.Redis]) -> None:
    """A long job (a slow turn) is not taken over while its worker lives."""
    first = _queue(clients, reader=1, claim_idle_s=1.0)
    second = _queue(clients, reader=2, claim_idle_s=1.0)
    runs: list[str] = []

    async def slow(job: Job) -> None:
        runs.append(job.id)
        await asyncio.sleep(3.0)

    first.handle("t", slow)
    second.handle("t", slow)
    await first.start()
    await first.put("t", {})
    await _until(lambda: runs)
    await second.start()
    try:
        await asyncio.sleep(3.5)
        assert len(runs) == 1
    finally:
        await first.close()
        await second.close()


async def test_a_delayed_job_survives_its_process(clients: list[aioredis.Redis]) -> None:
    """A retry scheduled by one process is run by another after the first is gone."""
    first = _queue(clients, reader=1)
    failed = asyncio.Event()

    async def fail(job: Job) -> None:
        failed.set()
        raise RetryLater(1.0, "down")

    first.handle("t", fail)
    await first.start()
    await first.put("t", {"x": 1})
    await asyncio.wait_for(failed.wait(), 10)
    await asyncio.sleep(0.2)
    await first.close()
    second = _queue(clients, reader=2)
    got: list[Job] = []

    async def ok(job: Job) -> None:
        got.append(job)

    second.handle("t", ok)
    await second.start()
    try:
        await _until(lambda: got)
        assert got[0].payload == {"x": 1} and got[0].attempt == 1 and got[0].last_error == "down"
    finally:
        await second.close()


async def test_memory_queue_behaves_alike() -> None:
    queue = MemoryJobQueue()
    tries: list[int] = []

    async def handler(job: Job) -> None:
        tries.append(job.attempt)
        if job.attempt == 0:
            raise RetryLater(0.1, "once more")
        if job.payload.get("fatal"):
            raise GiveUp("no")

    queue.handle("t", handler)
    await queue.start()
    try:
        _, new = await queue.put("t", {}, once="k")
        assert new
        assert not (await queue.put("t", {}, once="k"))[1]
        await _until(lambda: tries == [0, 1])
        job_id, _ = await queue.put("t", {"fatal": True})
        await _until(lambda: len(tries) == 4)
        await asyncio.sleep(0.05)
        assert [row["job"]["id"] for row in await queue.dead()] == [job_id]
    finally:
        await queue.close()


def test_backoff_grows_and_is_capped_with_jitter() -> None:
    rng = random.Random(1)
    delays = [backoff(attempt, 1.0, 30.0, rng) for attempt in range(10)]
    assert all(0.1 * min(30, 2**a) <= d <= min(30, 2**a) for a, d in enumerate(delays))
    assert max(delays) <= 30.0
    assert len({round(d, 3) for d in delays}) == len(delays)  # jittered
