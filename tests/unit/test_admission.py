"""The fair, bounded line in front of the turn pipeline."""

from __future__ import annotations

import asyncio

import pytest

from bot.admission import Admission
from bot.errors import Busy


async def _turn(gate: Admission, client: str, done: list[str], hold_s: float = 0.01) -> None:
    async with gate.admit(client):
        await asyncio.sleep(hold_s)
        done.append(client)


async def test_a_polite_client_is_served_next_beside_a_flooding_one() -> None:
    gate = Admission(active=2, waiting=64, per_client=30, wait_s=10)
    done: list[str] = []
    flood = [asyncio.create_task(_turn(gate, "flood", done)) for _ in range(30)]
    await asyncio.sleep(0)  # the flood is in line first
    polite = asyncio.create_task(_turn(gate, "polite", done))
    await asyncio.gather(*flood, polite)
    # The two running when it came, then one more of the flood's at most (the line's turn
    # order), then the polite client's: not behind the 28 waiting.
    assert done.index("polite") <= 3, done


async def test_a_client_over_its_share_of_the_line_is_refused_and_others_are_not() -> None:
    gate = Admission(active=1, waiting=64, per_client=2, wait_s=10)
    done: list[str] = []
    running = asyncio.create_task(_turn(gate, "a", done, hold_s=0.2))
    await asyncio.sleep(0.01)
    waiting = [asyncio.create_task(_turn(gate, "a", done)) for _ in range(2)]
    await asyncio.sleep(0.01)
    with pytest.raises(Busy, match="too many messages waiting"):
        await _turn(gate, "a", done)
    other = asyncio.create_task(_turn(gate, "b", done))
    await asyncio.gather(running, *waiting, other)
    assert sorted(done) == ["a", "a", "a", "b"]


async def test_the_line_full_or_too_slow_is_busy_and_frees_nothing_twice() -> None:
    gate = Admission(active=1, waiting=1, per_client=5, wait_s=0.1)
    done: list[str] = []
    running = asyncio.create_task(_turn(gate, "a", done, hold_s=0.5))
    await asyncio.sleep(0.01)
    queued = asyncio.create_task(_turn(gate, "b", done))
    await asyncio.sleep(0.01)
    with pytest.raises(Busy, match="busy with other customers"):
        await _turn(gate, "c", done)  # the line is full
    with pytest.raises(Busy):
        await queued  # waited longer than wait_s
    await running
    assert gate.queued == 0
    # Every slot came back: one turn runs at once again, at once.
    await asyncio.wait_for(_turn(gate, "d", done), 1)
    assert done == ["a", "d"]


async def test_a_waiter_that_goes_away_leaves_the_line() -> None:
    gate = Admission(active=1, waiting=8, per_client=8, wait_s=10)
    done: list[str] = []
    running = asyncio.create_task(_turn(gate, "a", done, hold_s=0.1))
    await asyncio.sleep(0.01)
    gone = asyncio.create_task(_turn(gate, "b", done))
    await asyncio.sleep(0.01)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert gate.queued == 0
    await running
    await asyncio.wait_for(_turn(gate, "c", done), 1)
    assert done == ["a", "c"]
