"""`OpenAIEngine`'s faults against a real OpenAI-compatible server on a free port.

The server (tests/openai_server.py) answers from a `ScriptedModel` here, so each test picks
its words and faults; test_llm_conformance.py runs the same path on the real tiny model.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app import create_app
from bot.errors import ModelError
from bot.llm.base import ChatMessage, GenerationParams, ScriptedModel
from bot.llm.openai_engine import OpenAIEngine
from bot.settings import LLMSettings, Settings
from policies.engine import PolicyEngine
from tests.openai_server import OpenAIServer, serve_openai
from tests.support import live_server

pytestmark = pytest.mark.integration

PROMPT = [ChatMessage("user", "where is my order")]
PARAMS = GenerationParams(max_new_tokens=64, timeout_s=10)


@pytest.fixture(scope="module")
def shared_server() -> Iterator[OpenAIServer]:
    with serve_openai(ScriptedModel([])) as server:
        yield server


@pytest.fixture
def server(shared_server: OpenAIServer) -> OpenAIServer:
    shared_server.reset(ScriptedModel([]))
    return shared_server


def _engine(server: OpenAIServer, **settings: Any) -> OpenAIEngine:
    llm = LLMSettings(engine="openai", base_url=server.base_url, model=server.name, **settings)
    return OpenAIEngine(llm, backoff_s=0.01, warm_up_wait_s=0.5)


@pytest.fixture
async def engine(server: OpenAIServer) -> AsyncIterator[OpenAIEngine]:
    engine = _engine(server)
    yield engine
    await engine.close()


async def _collect(
    engine: OpenAIEngine, pieces: list[str], params: GenerationParams = PARAMS
) -> None:
    async for piece in engine.stream(PROMPT, params):
        pieces.append(piece)


async def test_answer_streams_when_503s_pass_within_retries(
    server: OpenAIServer, engine: OpenAIEngine
) -> None:
    server.reset(ScriptedModel([["Your order ", "ships today."]]))
    server.behaviour.fail_first = 2  # the engine retries twice by default
    pieces: list[str] = []
    await _collect(engine, pieces)
    assert pieces == ["Your order ", "ships today."]
    assert [r.status for r in server.requests] == [503, 503, 200]


async def test_model_error_with_server_message_when_503s_outlast_retries(
    server: OpenAIServer, engine: OpenAIEngine
) -> None:
    server.behaviour.fail_first = 3
    with pytest.raises(ModelError, match=r"3 time\(s\).*HTTP 503: The server is overloaded"):
        await _collect(engine, [])
    assert len(server.requests) == 3


async def test_retry_when_connection_drops_before_first_token(
    server: OpenAIServer, engine: OpenAIEngine
) -> None:
    # The first answer fails inside the server after the role chunk: the connection drops.
    server.reset(ScriptedModel([RuntimeError("worker died"), ["fine"]]))
    pieces: list[str] = []
    await _collect(engine, pieces)
    assert pieces == ["fine"]
    assert len(server.requests) == 2


async def test_model_error_after_streamed_pieces_when_server_dies_mid_stream(
    server: OpenAIServer, engine: OpenAIEngine
) -> None:
    server.reset(ScriptedModel([["one ", "two ", "three ", "four"]]))
    server.behaviour.die_after_chunks = 2
    pieces: list[str] = []
    with pytest.raises(ModelError, match="closed the stream mid-answer"):
        await _collect(engine, pieces)
    assert pieces == ["one ", "two "]
    assert len(server.requests) == 1  # never retried once words were passed on


async def test_model_error_after_streamed_pieces_when_stream_ends_without_done(
    server: OpenAIServer, engine: OpenAIEngine
) -> None:
    server.reset(ScriptedModel([["one ", "two ", "three ", "four"]]))
    server.behaviour.die_after_chunks = 3
    server.behaviour.die_cleanly = True  # a well-formed body that stops short of [DONE]
    pieces: list[str] = []
    with pytest.raises(ModelError, match=r"mid-answer \(the stream ended without \[DONE\]\)"):
        await _collect(engine, pieces)
    assert pieces == ["one ", "two ", "three "]


async def test_model_error_with_server_message_when_request_is_refused(
    server: OpenAIServer, engine: OpenAIEngine
) -> None:
    params = GenerationParams(max_new_tokens=5000)
    with pytest.raises(ModelError, match="HTTP 400: max_tokens must be at most 4096, got 5000"):
        await _collect(engine, [], params)
    assert len(server.requests) == 1


async def test_model_error_when_server_is_silent_past_read_timeout(server: OpenAIServer) -> None:
    server.reset(ScriptedModel([["late"]]))
    server.behaviour.chunk_delay_s = 2
    engine = _engine(server, read_timeout_s=0.2)
    with pytest.raises(ModelError, match=r"sent nothing for 0\.2s"):
        await _collect(engine, [])
    await engine.close()


async def test_server_sees_disconnect_when_consumer_closes_early(
    server: OpenAIServer, engine: OpenAIEngine
) -> None:
    server.reset(ScriptedModel([[f"w{i} " for i in range(100)]]))
    server.behaviour.chunk_delay_s = 0.02
    stream = engine.stream(PROMPT, PARAMS)
    assert [await anext(stream), await anext(stream)] == ["w0 ", "w1 "]
    await stream.aclose()
    assert await asyncio.to_thread(server.requests[0].ended.wait, 5)
    assert server.requests[0].disconnected
    assert not server.requests[0].completed
    assert server.requests[0].chunks_sent < 20


async def test_bearer_header_sent_when_api_key_is_set(
    server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.reset(ScriptedModel([["hi"]]))
    server.behaviour.api_key = "sk-test-secret"
    engine = _engine(server, api_key="sk-test-secret")
    with caplog.at_level(logging.DEBUG):
        engine.warm_up()
        pieces: list[str] = []
        await _collect(engine, pieces)
    await engine.close()
    assert pieces == ["hi"]
    assert server.requests[0].headers["authorization"] == "Bearer sk-test-secret"
    assert "sk-test-secret" not in caplog.text
    assert "sk-test-secret" not in repr(engine._settings)


def test_warm_up_fails_when_api_key_is_wrong(server: OpenAIServer) -> None:
    server.behaviour.api_key = "sk-right"
    engine = _engine(server, api_key="sk-wrong")
    with pytest.raises(ModelError, match="HTTP 401: Incorrect API key provided") as caught:
        engine.warm_up()
    assert "sk-wrong" not in str(caught.value)
    assert not engine.ready()


def test_ready_only_after_warm_up(server: OpenAIServer) -> None:
    engine = _engine(server)
    assert not engine.ready()
    engine.warm_up()
    assert engine.ready()


def test_warm_up_names_the_url_when_server_is_unreachable() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    engine = OpenAIEngine(LLMSettings(engine="openai", base_url=url), warm_up_wait_s=0.5)
    started = time.monotonic()
    with pytest.raises(ModelError, match=f"{url}/models did not answer within 0.5s"):
        engine.warm_up()
    assert time.monotonic() - started < 5
    assert not engine.ready()


def test_app_answers_through_remote_engine_and_falls_back_when_stream_breaks(
    server: OpenAIServer, tmp_path: Path
) -> None:
    """The whole pipeline with `SWITCHBOARD_LLM__ENGINE=openai`: settings → factory → turn."""
    server.reset(
        ScriptedModel([["Orders ship ", "within two days."], ["Orders ", "ship ", "within"]])
    )
    llm = LLMSettings(engine="openai", base_url=server.base_url, model=server.name)
    settings = Settings(data_dir=tmp_path, redis_url=None, llm=llm)  # no index: degraded, serving
    with live_server(create_app(settings)) as app:
        ready = httpx.get(f"{app.http}/readyz", timeout=10).json()["checks"]
        assert ready["model"] == "ok"
        ask = {"text": "When does my order ship?"}
        first = httpx.post(f"{app.http}/api/messages", json=ask, timeout=30)
        assert first.status_code == 200, first.text
        assert first.json()["text"] == "Orders ship within two days."
        server.behaviour.die_after_chunks = 2
        second = httpx.post(f"{app.http}/api/messages", json=ask, timeout=30).json()
    fallback = PolicyEngine.from_file(None).messages(None).fallback
    assert second["text"].endswith(fallback)  # the cut answer is not passed off as whole
    assert [r.body["model"] for r in server.requests] == [server.name, server.name]
