"""The real `TransformersEngine` on a tiny random model: streaming, cancellation, timeout."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bot.errors import ModelError
from bot.llm.base import ChatMessage, GenerationParams
from bot.llm.transformers_engine import TransformersEngine
from bot.settings import LLMSettings

pytestmark = pytest.mark.integration

PROMPT = [ChatMessage("system", "you are support"), ChatMessage("user", "how long do i have")]


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> TransformersEngine:
    engine = TransformersEngine(LLMSettings(model=str(tiny_model_dir), dtype="float32"), Path("."))
    engine.warm_up()
    return engine


async def test_stream_yields_text_pieces_when_generating(engine: TransformersEngine) -> None:
    pieces = [p async for p in engine.stream(PROMPT, GenerationParams(max_new_tokens=12))]
    # Each piece holds at least one new token; max_new_tokens bounds them.
    assert 2 <= len(pieces) <= 12
    assert engine.count_tokens(PROMPT) > 5


async def test_generation_stops_when_consumer_closes_early(engine: TransformersEngine) -> None:
    stream = engine.stream(PROMPT, GenerationParams(max_new_tokens=4000))
    started = time.perf_counter()
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    # The lock is free again at once: the next request is not stuck behind 4000 tokens.
    pieces = [p async for p in engine.stream(PROMPT, GenerationParams(max_new_tokens=3))]
    assert pieces
    assert time.perf_counter() - started < 10


async def test_model_error_when_generation_times_out(engine: TransformersEngine) -> None:
    with pytest.raises(ModelError, match="timed out"):
        async for _ in engine.stream(
            PROMPT, GenerationParams(max_new_tokens=100_000, timeout_s=0.3)
        ):
            pass


async def test_requests_take_turns_when_concurrent(engine: TransformersEngine) -> None:
    async def run() -> str:
        return "".join([p async for p in engine.stream(PROMPT, GenerationParams(max_new_tokens=8))])

    first, second = await asyncio.gather(run(), run())
    assert first == second  # greedy and not interleaved


async def test_time_waiting_for_a_slot_is_not_taken_from_the_answer(tiny_model_dir: Path) -> None:
    """One slot: the second request waits for the first, then has its whole timeout to
    write (it used to count from when it was queued, and timed out mid-answer)."""
    single = TransformersEngine(
        LLMSettings(model=str(tiny_model_dir), dtype="float32", max_batch_size=1), Path(".")
    )
    single.warm_up()
    long = GenerationParams(max_new_tokens=300, ignore_eos=True)
    _ = [p async for p in single.stream(PROMPT, GenerationParams(max_new_tokens=20))]  # warm
    started = time.perf_counter()
    _ = [p async for p in single.stream(PROMPT, long)]  # how long 300 tokens take here
    alone = time.perf_counter() - started

    async def run(params: GenerationParams) -> str:
        return "".join([p async for p in single.stream(PROMPT, params)])

    # The second needs `alone` in line and `alone` to write: 2 x alone, allowed 1.6 x alone.
    patient = GenerationParams(max_new_tokens=300, ignore_eos=True, timeout_s=alone * 1.6)
    first, second = await asyncio.gather(run(long), run(patient))
    assert second == first
