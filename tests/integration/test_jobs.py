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


async def test_a_worker_never_takes_back_a_job_another_took_over(
    clients: list[aioredis.Redis],
) -> None:
    """If a worker went silent long enough for another to take its job, its late heartbeat
    and its result do not take the job back or settle it (the other's run counts)."""
    queue = _queue(clients, reader=1, claim_idle_s=1.0)
    started = asyncio.Event()

    async def slow(job: Job) -> None:
        started.set()
        await asyncio.sleep(1.5)

    queue.handle("t", slow)
    await queue.start()
    try:
        await queue.put("t", {})
        await asyncio.wait_for(started.wait(), 10)
        [entry] = await clients[0].xpending_range("jt:jobs", "workers", "-", "+", 10)
        # Another worker takes it over (as after a long pause of this one), and lives on:
        # it keeps its claim fresh, as its heartbeat would.
        for _ in range(7):  # 2.1 s: the slow run ends and tries to settle; heartbeats ran
            await clients[0].xclaim("jt:jobs", "workers", "thief", 0, [entry["message_id"]])
            await asyncio.sleep(0.3)
        [still] = await clients[0].xpending_range("jt:jobs", "workers", "-", "+", 10)
        assert still["consumer"] == "thief"
        assert await clients[0].zcard("jt:jobs:later") == 0
        assert await queue.dead() == []
    finally:
        await queue.close()


async def test_a_double_replay_queues_the_job_once(clients: list[aioredis.Redis]) -> None:
    queue = _queue(clients)
    runs: list[int] = []

    async def handler(job: Job) -> None:
        runs.append(job.attempt)
        if len(runs) == 1:
            raise GiveUp("first time")

    queue.handle("t", handler)
    await queue.start()
    try:
        job_id, _ = await queue.put("t", {})
        for _ in range(100):
            if await queue.dead():
                break
            await asyncio.sleep(0.05)
        results = await asyncio.gather(queue.replay(job_id), queue.replay(job_id))
        assert sorted(results) == [False, True]
        await _until(lambda: len(runs) == 2)
        await asyncio.sleep(0.5)
        assert len(runs) == 2
    finally:
        await queue.close()


async def test_an_unreadable_job_goes_to_the_dead_letters(clients: list[aioredis.Redis]) -> None:
    queue = _queue(clients)
    await clients[0].xgroup_create("jt:jobs", "workers", id="0", mkstream=True)
    await clients[0].xadd("jt:jobs", {"j": '{"kind": "t", "unknown_field": 1}'})
    ran: list[Job] = []

    async def handler(job: Job) -> None:
        ran.append(job)

    queue.handle("t", handler)
    await queue.start()
    try:
        await queue.put("t", {"after": True})
        await _until(lambda: ran)  # the queue kept going
        dead = await queue.dead()
        assert len(dead) == 1 and dead[0]["error"].startswith("unreadable")
    finally:
        await queue.close()


async def test_the_queue_recovers_when_its_stream_is_deleted(clients: list[aioredis.Redis]) -> None:
    """A flush (or a failover to an empty replica) deletes the stream and its group: the
    worker makes them again instead of never taking a job again."""
    queue = _queue(clients)
    ran: list[Job] = []

    async def handler(job: Job) -> None:
        ran.append(job)

    queue.handle("t", handler)
    await queue.start()
    try:
        await queue.put("t", {})
        await _until(lambda: len(ran) == 1)
        await clients[0].flushdb()
        await asyncio.sleep(1.5)
        await queue.put("t", {})
        await _until(lambda: len(ran) == 2, within=15)
    finally:
        await queue.close()


async def test_a_worker_without_the_jobs_handler_passes_it_to_one_that_has_it(
    clients: list[aioredis.Redis],
) -> None:
    """Servers sharing a queue need not run the same channels: a server without Slack must
    not dead-letter a Slack turn."""
    from prometheus_client import REGISTRY

    def counted(outcome: str) -> float:
        labels = {"kind": "slack.turn", "outcome": outcome}
        return REGISTRY.get_sample_value("switchboard_jobs_total", labels) or 0.0

    before = {outcome: counted(outcome) for outcome in ("done", "pass", "dead")}
    without = _queue(clients, reader=1)
    with_it = _queue(clients, reader=2)
    done: list[str] = []

    async def handler(job: Job) -> None:
        done.append(job.payload["n"])

    with_it.handle("slack.turn", handler)
    await without.start()  # first, alone: it reads every job first
    ids = [(await without.put("slack.turn", {"n": str(i)}))[0] for i in range(4)]
    await asyncio.sleep(0.5)
    await with_it.start()
    try:
        await _until(lambda: len(done) == 4, within=60)
        assert sorted(done) == ["0", "1", "2", "3"]
        assert await without.dead() == [] and await with_it.dead() == []
        # Counted: four done, at least one passed on, none dead.
        assert counted("done") - before["done"] == 4
        assert counted("pass") > before["pass"] and counted("dead") == before["dead"]
    finally:
        await without.close()
        await with_it.close()
    assert len(ids) == 4
