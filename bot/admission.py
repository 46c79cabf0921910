"""Admission control: how many turns run at once, who waits, and who is told `busy`.

Every turn passes `Admission.admit(client)` before anything of it is stored or computed. At
most `active` turns run through the pipeline (PII, retrieval, the model) at once; the others
wait in line, one line per client (the caller's IP for the widget and REST, the Slack user,
the webhook conversation), and a freed slot goes to the clients in turn (round robin), so one
client sending forty messages at once waits behind its own, not in front of everyone else.

A turn is refused with `Busy` — before it is stored, so nothing is left unanswered — when its
client already has `per_client` turns waiting, when `waiting` turns wait in all, or when it
has waited `wait_s`. Without it every turn of a burst went through the single-threaded PII
and embedding stages at once and none finished in time.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.errors import Busy
from bot.observability import ADMISSION_REFUSED, ADMISSION_WAIT_SECONDS, ADMISSION_WAITING
from bot.settings import Settings


def default_active(settings: Settings) -> int:
    """How many turns run at once by default: quoted answers are CPU work only (PII,
    retrieval, scoring), so one per CPU core — more would only share the cores and make every
    turn slower; written answers hold their slot while the model writes, so as many as the
    model decodes at once."""
    if settings.answers.mode == "quote":
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    return settings.llm.max_batch_size


def default_waiting(settings: Settings) -> int:
    """How many turns may wait by default: with written answers, as many as the model's own
    queue would hold (a turn let in would wait there instead, after it was stored)."""
    return 64 if settings.answers.mode == "quote" else settings.llm.max_queue


class Admission:
    """A fair, bounded line in front of the turn pipeline (one per process)."""

    def __init__(self, active: int, waiting: int, per_client: int, wait_s: float) -> None:
        self.active = active
        self.waiting = waiting
        self.per_client = per_client
        self.wait_s = wait_s
        self._free = active
        self._lines: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self._queued = 0

    @property
    def queued(self) -> int:
        """Turns waiting for a slot now."""
        return self._queued

    @asynccontextmanager
    async def admit(self, client: str) -> AsyncIterator[None]:
        """Hold one of the pipeline's slots for the body; `Busy` if none comes in time."""
        started = time.perf_counter()
        if self._free > 0 and not self._queued:
            self._free -= 1
        else:
            await self._wait(client)
        ADMISSION_WAIT_SECONDS.observe(time.perf_counter() - started)
        try:
            yield
        finally:
            self._release()

    async def _wait(self, client: str) -> None:
        line = self._lines.get(client)
        if self._queued >= self.waiting:
            self._refuse("full")
        if line is not None and len(line) >= self.per_client:
            self._refuse("client")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if line is None:
            line = self._lines[client] = deque()
        line.append(future)
        self._queued += 1
        ADMISSION_WAITING.set(self._queued)
        try:
            await asyncio.wait_for(asyncio.shield(future), self.wait_s)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if future.done() and not future.cancelled():
                # The slot came just as the wait ended: give it on.
                self._release()
            else:
                future.cancel()
                self._forget(client, future)
            if isinstance(exc, TimeoutError):
                self._refuse("timeout")
            raise

    def _forget(self, client: str, future: asyncio.Future[None]) -> None:
        line = self._lines.get(client)
        if line is not None and future in line:
            line.remove(future)
            self._queued -= 1
            ADMISSION_WAITING.set(self._queued)
            if not line:
                del self._lines[client]

    def _release(self) -> None:
        """A slot is free: to the next client in turn, else back to the pool."""
        while self._lines:
            client, line = next(iter(self._lines.items()))
            future = line.popleft()
            self._queued -= 1
            if line:
                self._lines.move_to_end(client)  # its next turn waits for everyone else's
            else:
                del self._lines[client]
            ADMISSION_WAITING.set(self._queued)
            if not future.done():
                future.set_result(None)
                return
        self._free += 1

    def _refuse(self, why: str) -> None:
        ADMISSION_REFUSED.labels(why).inc()
        if why == "client":
            raise Busy(
                "you have too many messages waiting for an answer; wait for one, then try again"
            )
        raise Busy("the assistant is busy with other customers; try again in a moment")
