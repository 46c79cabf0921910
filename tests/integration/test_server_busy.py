"""A full engine answers busy at once, over both channels, and the connection stays up."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from bot.app import create_app
from bot.settings import LLMSettings, Settings
from tests.support import DEMO_ABSTENTION, LiveServer, live_server, ws_turn

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(
    tiny_model_dir: Path, demo_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        llm=LLMSettings(
            model=str(tiny_model_dir), max_new_tokens=2000, max_batch_size=1, max_queue=0
        ),
        knowledge={"index_dir": demo_index, "abstention_model": DEMO_ABSTENTION},
        answers={"mode": "generate"},  # a long answer holds the model's only slot
    )
    with live_server(create_app(settings)) as live:
        yield live


def test_busy_error_when_the_only_slot_is_taken_then_served_when_it_frees(
    server: LiveServer,
) -> None:
    with connect(server.ws) as long_answer:
        long_answer.send(json.dumps({"type": "message", "text": "How do I reset my password?"}))
        while json.loads(frame := long_answer.recv(timeout=60))["type"] != "token":
            pass

        rest = httpx.post(
            f"{server.http}/api/messages", json={"text": "How long does a refund take?"}, timeout=30
        )
        assert rest.status_code == 503
        assert rest.json()["error"]["code"] == "busy"
        assert "try again" in rest.json()["error"]["message"]
        with connect(server.ws) as ws:
            _, frame, _ = ws_turn(ws, "How long does a refund take?", timeout=30)
            assert frame["type"] == "error" and frame["code"] == "busy", frame
            ws.send(json.dumps({"type": "ping"}))
            assert json.loads(ws.recv(timeout=10)) == {"type": "pong"}
    # The long answer goes on after its client left (a reload must not lose it); when it is
    # done, the slot is free again.
    deadline = time.monotonic() + 180
    while True:
        rest = httpx.post(
            f"{server.http}/api/messages", json={"text": "How long does a refund take?"}, timeout=60
        )
        if rest.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert rest.status_code == 200, rest.text
