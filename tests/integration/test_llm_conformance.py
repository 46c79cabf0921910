"""The conformance suite against both engines, on the same tiny model.

`TransformersEngine` runs it in-process; `OpenAIEngine` talks to tests/openai_server.py,
which serves that model from its own `TransformersEngine` over real HTTP. Greedy answers
must match word for word across the two.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.llm.base import LanguageModel
from bot.llm.openai_engine import OpenAIEngine
from bot.llm.transformers_engine import TransformersEngine
from bot.settings import LLMSettings
from tests.integration.llm_conformance import PROMPT, LanguageModelConformance, answer
from tests.openai_server import OpenAIServer, serve_openai

pytestmark = pytest.mark.integration


def _local(model_dir: Path) -> TransformersEngine:
    # One request at a time: then an abandoned answer that kept decoding would hold up the
    # next one, which is what the cancellation test looks for.
    settings = LLMSettings(model=str(model_dir), dtype="float32", max_batch_size=1)
    engine = TransformersEngine(settings, Path("."))
    engine.warm_up()
    return engine


@pytest.fixture(scope="module")
def local_engine(tiny_model_dir: Path) -> Iterator[TransformersEngine]:
    engine = _local(tiny_model_dir)
    yield engine
    asyncio.run(engine.close())


@pytest.fixture(scope="module")
def tiny_server(tiny_model_dir: Path) -> Iterator[OpenAIServer]:
    """The tiny model behind an OpenAI-compatible server (its own engine, its own loop)."""
    served = _local(tiny_model_dir)
    with serve_openai(served, name="tiny") as server:
        yield server
    asyncio.run(served.close())


@pytest.fixture
async def remote_engine(
    tiny_server: OpenAIServer, tiny_model_dir: Path
) -> AsyncIterator[OpenAIEngine]:
    settings = LLMSettings(
        engine="openai", base_url=tiny_server.base_url, model="tiny", tokenizer=str(tiny_model_dir)
    )
    engine = OpenAIEngine(settings)
    engine.warm_up()
    yield engine
    await engine.close()


class TestTransformersEngine(LanguageModelConformance):
    @pytest.fixture
    def engine(self, local_engine: TransformersEngine) -> LanguageModel:
        return local_engine


class TestOpenAIEngine(LanguageModelConformance):
    @pytest.fixture
    def engine(self, remote_engine: OpenAIEngine) -> LanguageModel:
        return remote_engine


async def test_same_greedy_text_when_served_remotely(
    local_engine: TransformersEngine, remote_engine: OpenAIEngine
) -> None:
    local, remote = await answer(local_engine, 24), await answer(remote_engine, 24)
    assert "".join(remote) == "".join(local)
    assert remote == local  # the server relays the engine's pieces one event each
    assert remote_engine.count_tokens(PROMPT) == local_engine.count_tokens(PROMPT)
