"""The conformance suite every `LanguageModel` engine passes, whatever runs the model.

Subclass `LanguageModelConformance` in a `Test...` class and give it an `engine` fixture:
a warmed-up engine serving one request at a time, with a model that never ends early
(tests/support.py's tiny model never picks end-of-sequence), so answers run to
`max_new_tokens`.
"""

from __future__ import annotations

import time

import pytest

from bot.errors import ModelError
from bot.llm.base import ChatMessage, GenerationParams, LanguageModel

PROMPT = [ChatMessage("system", "you are support"), ChatMessage("user", "how long do i have")]


async def answer(
    engine: LanguageModel, max_new_tokens: int, prompt: list[ChatMessage] = PROMPT
) -> list[str]:
    """The pieces of one greedy answer."""
    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0)
    return [piece async for piece in engine.stream(prompt, params)]


class LanguageModelConformance:
    """What the pipeline relies on from a `LanguageModel`."""

    def test_ready_when_warmed_up(self, engine: LanguageModel) -> None:
        assert engine.ready()
        assert engine.name

    async def test_stream_yields_text_pieces_when_generating(self, engine: LanguageModel) -> None:
        pieces = await answer(engine, 12)
        assert pieces
        assert all(isinstance(piece, str) and piece for piece in pieces)

    async def test_same_text_when_greedy_prompt_repeats(self, engine: LanguageModel) -> None:
        first = "".join(await answer(engine, 16))
        assert first
        assert "".join(await answer(engine, 16)) == first

    async def test_answer_is_bounded_when_max_new_tokens_is_set(
        self, engine: LanguageModel
    ) -> None:
        # Each piece carries at least one new token, so pieces bound tokens from below.
        short, longer = await answer(engine, 4), await answer(engine, 24)
        assert 1 <= len(short) <= 4
        assert len(longer) <= 24
        assert len("".join(longer)) > len("".join(short))

    async def test_generation_stops_when_consumer_closes_early(self, engine: LanguageModel) -> None:
        # The engine under test serves one request at a time, so had the abandoned 4000-token
        # answer gone on, the next answer would wait behind ~20 times a 200-token answer.
        started = time.perf_counter()
        await answer(engine, 200)
        yardstick = time.perf_counter() - started
        stream = engine.stream(PROMPT, GenerationParams(max_new_tokens=4000))
        async for _ in stream:
            break
        started = time.perf_counter()
        await stream.aclose()
        assert await answer(engine, 3)
        assert time.perf_counter() - started < max(3 * yardstick, 1.0)

    async def test_model_error_when_timeout_is_too_short(self, engine: LanguageModel) -> None:
        params = GenerationParams(max_new_tokens=4000, timeout_s=0.3)
        started = time.perf_counter()
        with pytest.raises(ModelError, match="timed out"):
            async for _ in engine.stream(PROMPT, params):
                pass
        assert time.perf_counter() - started < 5
        assert await answer(engine, 3)  # and the engine still answers

    def test_count_tokens_grows_when_prompt_grows(self, engine: LanguageModel) -> None:
        short = engine.count_tokens(PROMPT)
        longer = engine.count_tokens([*PROMPT, ChatMessage("user", "where is my order " * 5)])
        assert 0 < short < longer
