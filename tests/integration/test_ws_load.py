"""32 widget conversations at once on one server: each is answered within 10 s, every
answered message is stored once with one answer after it, and no turn fails for want of a
Redis connection. (`bench/ws_load.py` runs 32 and 128 against a server process.)"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from websockets.asyncio.client import connect

from tests.openai_server import serve_openai
from tests.processes import ROOT, ScriptedAnswers, ServerProcess, free_port
from tests.support import DEMO_ABSTENTION

pytestmark = pytest.mark.integration

CHATS = 32
PREFIX = "sbwsload:"
QUESTIONS = [
    "How long do I have to return an item?",
    "How much does express shipping cost?",
    "Can I change my delivery address?",
    "How long does a refund take?",
]


@pytest.fixture
def server(
    demo_index: Path, redis_url: str, clean_redis: redis.Redis, tmp_path: Path
) -> Iterator[ServerProcess]:
    """A `switchboard serve` process as `make demo` runs it, a scripted model behind it."""
    with serve_openai(ScriptedAnswers({"": "Yes."}), name="scripted") as llm:
        env = {
            **os.environ,
            "SWITCHBOARD_REDIS_URL": redis_url,
            "SWITCHBOARD_KEY_PREFIX": PREFIX,
            "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"),
            "SWITCHBOARD_LLM__ENGINE": "openai",
            "SWITCHBOARD_LLM__BASE_URL": llm.base_url,
            "SWITCHBOARD_LLM__MODEL": "scripted",
            "SWITCHBOARD_POLICY_FILE": str(ROOT / "demo" / "policy.yaml"),
            "SWITCHBOARD_KNOWLEDGE__INDEX_DIR": str(demo_index),
            "SWITCHBOARD_KNOWLEDGE__DOCUMENTS_DIR": str(ROOT / "demo" / "kb"),
            "SWITCHBOARD_KNOWLEDGE__ABSTENTION_MODEL": str(DEMO_ABSTENTION),
            "SWITCHBOARD_LOG_LEVEL": "warning",
        }
        process = ServerProcess(env, free_port(), tmp_path / "server.log")
        process.start()
        try:
            process.wait_ready()
            yield process
        finally:
            process.stop()


async def _chat(url: str, number: int) -> tuple[str, list[str], Counter[str], float]:
    """Two turns on one socket from its own address: the conversation, the answered
    client ids, how the turns ended, and the seconds the conversation took."""
    ended: Counter[str] = Counter()
    answered: list[str] = []
    conversation = ""
    started = time.perf_counter()
    async with connect(url, additional_headers={"X-Forwarded-For": f"10.0.0.{number}"}) as ws:
        for turn in range(2):
            client_id = f"c{number}-{turn}"
            text = QUESTIONS[(number + turn) % len(QUESTIONS)]
            await ws.send(json.dumps({"type": "message", "text": text, "id": client_id}))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if frame["type"] == "message":
                    conversation = frame["conversation_id"]
                    answered.append(client_id)
                    ended["answered"] += 1
                    break
                if frame["type"] == "error":
                    ended[frame["code"]] += 1
                    break
        with pytest.raises(TimeoutError):  # nothing more: no second answer
            await asyncio.wait_for(ws.recv(), 0.5)
    return conversation, answered, ended, time.perf_counter() - started


async def _all(url: str) -> list[tuple[str, list[str], Counter[str], float]]:
    return list(await asyncio.gather(*(_chat(url, n) for n in range(CHATS))))


def test_32_conversations_at_once_are_each_answered_once_within_10_s(
    server: ServerProcess, clean_redis: redis.Redis
) -> None:
    url = server.url.replace("http://", "ws://") + "/ws/chat"
    asyncio.run(_chat(url, 250))  # the first turn loads the models: not part of it
    chats = asyncio.run(_all(url))
    ended = sum((c[2] for c in chats), Counter())
    assert ended == Counter({"answered": 2 * CHATS}), ended  # none busy, none failed
    slowest = max(c[3] for c in chats)
    assert slowest < 10, f"the slowest conversation took {slowest:.1f} s"
    for conversation, answered, _, _ in chats:
        stored = [
            json.loads(t) for t in clean_redis.lrange(f"{PREFIX}conv:{conversation}:turns", 0, -1)
        ]
        assert [t.get("client_id") for t in stored if t["role"] == "user"] == answered
        assert [t["role"] for t in stored] == ["user", "assistant"] * 2
