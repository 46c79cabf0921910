"""The whole product as a user runs it: the real default model behind the real server.

Slow on first use (the model is joined, verified and converted once, ~1 minute), then it
loads in seconds from the cache.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from websockets.sync.client import connect

from bot.app import create_app
from bot.settings import LLMSettings, Settings
from tests.support import DEMO_ABSTENTION, LiveServer, live_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(demo_index: Path, redis_url: str) -> Iterator[LiveServer]:
    settings = Settings(
        redis_url=redis_url,
        key_prefix="sbtest:",
        llm=LLMSettings(max_new_tokens=96),
        knowledge={"index_dir": demo_index, "abstention_model": DEMO_ABSTENTION},
    )
    with live_server(create_app(settings)) as live:
        yield live


def _ask(server: LiveServer, text: str) -> tuple[list[str], dict[str, Any], float, float]:
    with connect(server.ws) as ws:
        started = time.perf_counter()
        ws.send(json.dumps({"type": "message", "text": text, "id": "m1"}))
        tokens: list[str] = []
        first = 0.0
        while (frame := json.loads(ws.recv(timeout=180)))["type"] not in ("message", "error"):
            if frame["type"] == "token":
                first = first or time.perf_counter() - started
                tokens.append(frame["text"])
        return tokens, frame, first, time.perf_counter() - started


def test_returns_question_is_answered_from_the_knowledge_base_when_asked(
    server: LiveServer, clean_redis: redis.Redis
) -> None:
    tokens, final, first, total = _ask(server, "How many days do I have to return an item?")
    print(
        f"\nreturns question: first token {first:.2f}s, full answer {total:.2f}s; {final['text']!r}"
    )
    assert final["type"] == "message", final
    assert len(tokens) >= 1
    assert "30 days" in final["text"]
    assert final["citations"][0]["source"] == "returns-policy.md"


def test_pii_is_redacted_everywhere_when_the_real_model_answers(
    server: LiveServer, clean_redis: redis.Redis
) -> None:
    text = (
        "Hi, I'm Jane Cooper, email jane.cooper@example.com, card 4111 1111 1111 1111. "
        "How long does a refund take?"
    )
    _, final, _, _ = _ask(server, text)
    assert final["type"] == "message", final
    stored = clean_redis.lrange(f"sbtest:conv:{final['conversation_id']}:turns", 0, -1)
    everything = json.dumps(stored) + final["text"]
    for secret in ("Jane Cooper", "jane.cooper@example.com", "4111 1111 1111 1111", "4111 1111"):
        assert secret not in everything
    user_turn = json.loads(stored[0])["text"]
    assert "<EMAIL_ADDRESS>" in user_turn and "<CREDIT_CARD>" in user_turn
    assert "5 business days" in final["text"]


def test_ready_reports_the_default_model_when_loaded(server: LiveServer) -> None:
    assert httpx.get(f"{server.http}/readyz").json()["checks"]["model"] == "ok"
