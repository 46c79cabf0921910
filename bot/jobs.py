"""A durable job queue: work acknowledged to a caller is done once, even if a process dies.

Connectors acknowledge Slack events and webhook calls at once and do the turn here, in the
background; outbound deliveries (webhook replies, Slack posts) wait here between retries.
Every API process runs one worker; any worker may take any job.

Redis layout (every key with the settings' prefix):

- `jobs`              stream of jobs (field `j`: the job as JSON), consumer group `workers`
- `jobs:later`        sorted set of jobs waiting for a retry, scored by when they are due
- `jobs:dead`         hash: job id -> {job, error, failed_at}: jobs that used up their tries
- `once:{scope}:{k}`  idempotency marks (a Slack `event_id`, a webhook `Idempotency-Key`)

A job read by a worker stays pending in the group until it is settled (done, rescheduled
or dead, in one transaction). While it runs, its worker keeps claiming it (a heartbeat); a
worker that dies stops doing so, and after `claim_idle_s` another worker claims the job and
runs it again. Handlers are therefore written to be repeatable (the turn pipeline answers a
repeated message id with its stored answer; posts remember that they were made).

Without Redis, `MemoryJobQueue` does the same in one process, and loses its jobs with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from bot.errors import StoreUnavailable
from bot.observability import JOBS, JOBS_BACKLOG
from bot.sessions import store_call
from bot.types import new_id

log = logging.getLogger(__name__)

GROUP = "workers"
DEFAULT_TRIES = 5  # for a handler that fails unexpectedly (its own policy: RetryLater/GiveUp)
MAX_TRIES = 50  # even a job that asks to be retried goes to the dead letters after these
BACKLOG_EVERY_S = 5.0  # how often a worker reads the queue's size for the metrics
UNHANDLED_TTL_S = 3600  # a job no worker has a handler for is dead after an hour


@dataclass(frozen=True, slots=True)
class Job:
    """One unit of background work: `kind` names its handler."""

    kind: str
    payload: dict[str, Any]
    id: str = field(default_factory=new_id)
    attempt: int = 0  # tries made before this one
    created: float = field(default_factory=time.time)
    last_error: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Job:
        return cls(**json.loads(raw))


class RetryLater(Exception):
    """Raised by a handler: try the job again after `delay_s`."""

    def __init__(self, delay_s: float, reason: str) -> None:
        super().__init__(reason)
        self.delay_s = delay_s
        self.reason = reason


class GiveUp(Exception):
    """Raised by a handler: the job cannot succeed; it goes to the dead letters."""


Handler = Callable[[Job], Awaitable[None]]


def backoff(attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)],
    but never under a tenth of that bound (a retry storm needs some spacing)."""
    bound = min(cap_s, base_s * 2**attempt)
    return (rng or random).uniform(bound / 10, bound)


class JobQueue(Protocol):
    async def put(
        self, kind: str, payload: dict[str, Any], *, once: str | None = None, delay_s: float = 0
    ) -> tuple[str, bool]:
        """Queue a job: its id, and True. With `once`, only if that key was not used in the
        last day; for a repeat, the first job's id and False."""
        ...

    def handle(self, kind: str, handler: Handler) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def dead(self, limit: int = 100) -> list[dict[str, Any]]: ...

    async def replay(self, job_id: str) -> bool: ...


ONCE_TTL_S = 24 * 3600  # Slack retries for about 5 minutes; senders retry for hours


class _Worker:
    """Running jobs and deciding their outcome; shared by both queues."""

    def __init__(self, concurrency: int) -> None:
        self._handlers: dict[str, Handler] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False

    def handle(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    async def _execute(self, job: Job) -> tuple[str, float, str]:
        outcome, delay, error = await self._attempt(job)
        JOBS.labels(job.kind, outcome).inc()
        return outcome, delay, error

    async def _attempt(self, job: Job) -> tuple[str, float, str]:
        """Run the job: ("done" | "retry" | "pass" | "dead", delay, error); "pass": this
        worker has no handler for it, another may."""
        handler = self._handlers.get(job.kind)
        if handler is None:
            # Another worker may have it (servers sharing a queue need not run the same
            # channels): passed on, not a try; dead only when nobody took it for a while.
            if time.time() - job.created > UNHANDLED_TTL_S:
                return "dead", 0.0, f"no worker has a handler for jobs of kind {job.kind!r}"
            return "pass", random.uniform(0.5, 2.0), ""
        try:
            await handler(job)
        except RetryLater as later:
            if job.attempt + 1 >= MAX_TRIES:
                log.warning("job %s (%s) gave up after %d tries", job.id, job.kind, MAX_TRIES)
                return "dead", 0.0, f"{later.reason} (after {MAX_TRIES} tries)"
            log.info("job %s (%s) will be retried: %s", job.id, job.kind, later.reason)
            return "retry", later.delay_s, later.reason
        except GiveUp as exc:
            log.warning("job %s (%s) gave up: %s", job.id, job.kind, exc)
            return "dead", 0.0, str(exc)
        except Exception as exc:  # a bug or an unexpected fault: a few more tries, then dead
            log.exception("job %s (%s) failed", job.id, job.kind)
            reason = f"{type(exc).__name__}: {exc}"[:500]
            if job.attempt + 1 >= DEFAULT_TRIES:
                return "dead", 0.0, reason
            return "retry", backoff(job.attempt, 1.0, 60.0), reason
        return "done", 0.0, ""

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            finally:
                self._slots.release()

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop taking jobs and cancel the running ones (left pending: another worker runs
        them again). The loop is asked to stop, not cancelled: a Redis command cancelled
        halfway can leave its task stuck."""
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._loop_task is not None:
            _, pending = await asyncio.wait([self._loop_task], timeout=10)
            for task in pending:
                task.cancel()


# Queue a job unless its idempotency mark exists: mark and job together or neither.
_PUT = """
if KEYS[2] ~= '' then
  local prior = redis.call('GET', KEYS[2])
  if prior then return {0, prior} end
  redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
end
if tonumber(ARGV[2]) > 0 then
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
else
  redis.call('XADD', KEYS[1], '*', 'j', ARGV[1])
end
return {1, ARGV[3]}
"""

# Move the jobs that are due from the retry set to the stream.
_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, job in ipairs(due) do
  redis.call('ZREM', KEYS[2], job)
  redis.call('XADD', KEYS[1], '*', 'j', job)
end
return #due
"""


# Renew a running job's claim only while this consumer still owns it.
_BEAT = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if p[1] == nil or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
"""

_REPLAY = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', 'j', ARGV[2])
return 1
"""

DEAD_TTL_S = 30 * 24 * 3600  # dead letters are kept a month after the last one


class RedisJobQueue(_Worker):
    """The queue in Redis, shared by every process (see the module docstring)."""

    def __init__(
        self,
        redis: Any,
        reader: Any,
        prefix: str,
        *,
        claim_idle_s: float = 30.0,
        concurrency: int = 8,
        poll_s: float = 0.5,
    ) -> None:
        super().__init__(concurrency)
        self._redis = redis
        self._reader = reader  # blocking reads hold a connection: a client of their own
        self._stream = prefix + "jobs"
        self._later = prefix + "jobs:later"
        self._dead = prefix + "jobs:dead"
        self._once = prefix + "once:"
        self._claim_idle_ms = int(claim_idle_s * 1000)
        self._poll_ms = max(1, int(poll_s * 1000))
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{new_id()[:6]}"
        self._put = redis.register_script(_PUT)
        self._promote = redis.register_script(_PROMOTE)
        self._beat = redis.register_script(_BEAT)
        self._replay = redis.register_script(_REPLAY)
        self._cursor = "0-0"
        self._counted = 0.0

    async def _count_backlog(self) -> None:
        """The queue's shared state, for the metrics (every process reports the same)."""
        self._counted = time.monotonic()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self._stream)
            pipe.zcard(self._later)
            pipe.hlen(self._dead)
            queued, later, dead = await pipe.execute()
        JOBS_BACKLOG.labels("queued").set(queued)
        JOBS_BACKLOG.labels("waiting_retry").set(later)
        JOBS_BACKLOG.labels("dead").set(dead)

    async def put(
        self, kind: str, payload: dict[str, Any], *, once: str | None = None, delay_s: float = 0
    ) -> tuple[str, bool]:
        job = Job(kind, payload)
        due = time.time() + delay_s if delay_s > 0 else 0
        keys = [self._stream, self._once + once if once else "", self._later]
        added, job_id = await store_call(
            self._put(keys=keys, args=[job.to_json(), due, job.id, ONCE_TTL_S])
        )
        return str(job_id.decode() if isinstance(job_id, bytes) else job_id), bool(added)

    async def start(self) -> None:
        await self._ensure_group()
        self._loop_task = asyncio.create_task(self._loop(), name="jobs")

    async def _ensure_group(self) -> None:
        from redis.exceptions import ResponseError

        try:
            await store_call(self._redis.xgroup_create(self._stream, GROUP, id="0", mkstream=True))
        except StoreUnavailable as exc:  # fine if the group exists (another process made it)
            if not isinstance(exc.__cause__, ResponseError) or "BUSYGROUP" not in str(exc):
                raise

    async def _loop(self) -> None:
        failing = False
        while not self._stopping:
            try:
                await self._promote(keys=[self._stream, self._later], args=[time.time()])
                if time.monotonic() - self._counted > BACKLOG_EVERY_S:
                    await self._count_backlog()
                await self._take()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: keep trying; the jobs wait in Redis
                if not failing:
                    log.error("job queue: %s; retrying", exc)
                failing = True
                if "NOGROUP" in str(exc) or "no longer exists" in str(exc):
                    # The stream was deleted (a flush, a failover to an empty replica): make
                    # it again, or this process would never take a job again.
                    with contextlib.suppress(Exception):
                        await self._ensure_group()
                await asyncio.sleep(1.0)

    async def _take(self) -> None:
        """Claim abandoned jobs, then read new ones, as many as there are free slots."""
        await self._slots.acquire()
        self._slots.release()
        free = self._free()
        # Resumed from where the last scan stopped: live jobs at the head of the pending
        # list must not hide an abandoned one behind them.
        cursor, claimed, *_ = await self._redis.xautoclaim(
            self._stream, GROUP, self.consumer, self._claim_idle_ms, self._cursor, count=free
        )
        self._cursor = cursor or "0-0"
        claimed = [entry for entry in claimed or [] if entry and entry[0] is not None]
        if claimed:
            log.info("job queue: took over %d job(s) of a silent worker", len(claimed))
        entries = list(claimed)
        if len(entries) < free:
            reply = await self._reader.xreadgroup(
                GROUP,
                self.consumer,
                {self._stream: ">"},
                count=free - len(entries),
                block=self._poll_ms,
            )
            for _, batch in reply or []:
                entries.extend(batch)
        for entry_id, fields in entries:
            if self._stopping:
                return  # left pending: claimed again after claim_idle_s
            raw = fields.get("j", fields.get(b"j")) if fields else None
            if raw is None:  # deleted while pending
                await self._redis.xack(self._stream, GROUP, entry_id)
                continue
            try:
                job = Job.from_json(raw)
            except (ValueError, TypeError) as exc:  # e.g. written by another version
                log.error("job queue: unreadable job %s: %s", entry_id, exc)
                broken = Job("unreadable", {"raw": str(raw)[:2000]}, id=str(entry_id))
                await self._settle(entry_id, broken, "dead", 0.0, f"unreadable: {exc}")
                continue
            await self._slots.acquire()
            self._spawn(self._run(entry_id, job))

    def _free(self) -> int:
        return max(1, self._slots._value)

    async def _run(self, entry_id: str, job: Job) -> None:
        beat = asyncio.create_task(self._heartbeat(entry_id))
        try:
            outcome, delay, error = await self._execute(job)
        finally:
            beat.cancel()
        await self._settle(entry_id, job, outcome, delay, error)

    async def _heartbeat(self, entry_id: str) -> None:
        """Keep claiming a running job, so that no other worker takes it over; never take
        it back from a worker that did (after this one went silent)."""
        while True:
            await asyncio.sleep(self._claim_idle_ms / 3000)
            try:
                keys = [self._stream]
                if not await self._beat(keys=keys, args=[GROUP, self.consumer, entry_id]):
                    log.warning("job queue: job %s was taken over by another worker", entry_id)
                    return
            except Exception as exc:
                log.warning("job queue: heartbeat failed: %s", exc)

    async def _settle(
        self, entry_id: str, job: Job, outcome: str, delay: float, error: str
    ) -> None:
        for attempt in range(30):  # Redis may be down for a while: the job stays pending
            try:
                if not await self._owned(entry_id):
                    log.warning("job queue: job %s is another worker's now", job.id)
                    return
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.xack(self._stream, GROUP, entry_id)
                    pipe.xdel(self._stream, entry_id)
                    if outcome in ("retry", "pass"):
                        tries = job.attempt + (outcome == "retry")
                        later = replace(job, attempt=tries, last_error=error or job.last_error)
                        pipe.zadd(self._later, {later.to_json(): time.time() + delay})
                    elif outcome == "dead":
                        record = {"job": asdict(job), "error": error, "failed_at": time.time()}
                        pipe.hset(self._dead, job.id, json.dumps(record))
                        pipe.expire(self._dead, DEAD_TTL_S)
                    await pipe.execute()
                return
            except Exception as exc:
                log.warning("job queue: could not settle job %s (%s); retrying", job.id, exc)
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
        log.error("job queue: job %s left pending; another worker will run it again", job.id)

    async def _owned(self, entry_id: str) -> bool:
        """Whether this worker still holds the pending job (not taken over)."""
        pending = await self._redis.xpending_range(
            self._stream, GROUP, min=entry_id, max=entry_id, count=1
        )
        return bool(pending) and pending[0]["consumer"] == self.consumer

    async def dead(self, limit: int = 100) -> list[dict[str, Any]]:
        raw = await store_call(self._redis.hvals(self._dead))
        rows = [json.loads(item) for item in raw]
        rows.sort(key=lambda row: row["failed_at"], reverse=True)
        return rows[:limit]

    async def replay(self, job_id: str) -> bool:
        """Queue a dead job again, with fresh tries; False if there is no such dead job."""
        raw = await store_call(self._redis.hget(self._dead, job_id))
        if raw is None:
            return False
        job = replace(Job(**json.loads(raw)["job"]), attempt=0)
        # Only the replay that removes the dead letter queues it (a double click is one).
        done = await store_call(
            self._replay(keys=[self._dead, self._stream], args=[job_id, job.to_json()])
        )
        return bool(done)


class MemoryJobQueue(_Worker):
    """The queue of a single process without Redis: same behaviour, gone with the process."""

    def __init__(self, concurrency: int = 8) -> None:
        super().__init__(concurrency)
        self._ready: asyncio.Queue[Job] = asyncio.Queue()
        self._once: dict[str, tuple[str, float]] = {}
        self._dead: dict[str, dict[str, Any]] = {}
        self._timers: set[asyncio.TimerHandle] = set()

    async def put(
        self, kind: str, payload: dict[str, Any], *, once: str | None = None, delay_s: float = 0
    ) -> tuple[str, bool]:
        now = time.time()
        if len(self._once) > 10_000:  # forget marks older than a day
            self._once = {k: v for k, v in self._once.items() if now - v[1] < ONCE_TTL_S}
        if once is not None:
            prior = self._once.get(once)
            if prior is not None and now - prior[1] < ONCE_TTL_S:
                return prior[0], False
        job = Job(kind, payload)
        if once is not None:
            self._once[once] = (job.id, now)
        self._later(job, delay_s)
        return job.id, True

    def _later(self, job: Job, delay_s: float) -> None:
        if delay_s <= 0:
            self._ready.put_nowait(job)
            return

        def due() -> None:
            self._timers.discard(timer)
            self._ready.put_nowait(job)

        timer = asyncio.get_running_loop().call_later(delay_s, due)
        self._timers.add(timer)

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="jobs")

    async def _loop(self) -> None:
        while not self._stopping:
            job = await self._ready.get()
            await self._slots.acquire()
            self._spawn(self._run(job))

    async def _run(self, job: Job) -> None:
        outcome, delay, error = await self._execute(job)
        if outcome == "pass":  # one process: nobody else will handle it
            outcome, error = "dead", f"no handler for jobs of kind {job.kind!r}"
        if outcome == "retry":
            self._later(replace(job, attempt=job.attempt + 1, last_error=error), delay)
        elif outcome == "dead":
            self._dead[job.id] = {"job": asdict(job), "error": error, "failed_at": time.time()}

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        if self._loop_task is not None:  # waiting on an asyncio.Queue: safe to cancel
            self._loop_task.cancel()
        await super().close()

    async def dead(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = sorted(self._dead.values(), key=lambda row: row["failed_at"], reverse=True)
        return rows[:limit]

    async def replay(self, job_id: str) -> bool:
        record = self._dead.pop(job_id, None)
        if record is None:
            return False
        self._later(replace(Job(**record["job"]), attempt=0), 0)
        return True
