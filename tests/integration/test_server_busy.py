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


def _settings(data: Path, model: Path, index: Path, **overrides: object) -> Settings:
    """One model slot and no model queue; a long answer holds the slot."""
    return Settings(
        data_dir=data,
        llm=LLMSettings(model=str(model), max_new_tokens=2000, max_batch_size=1, max_queue=0),
        knowledge={"index_dir": index, "abstention_model": DEMO_ABSTENTION},
        answers={"mode": "generate"},
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def server(
    tiny_model_dir: Path, demo_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    settings = _settings(
        tmp_path_factory.mktemp("data"),
        tiny_model_dir,
        demo_index,
        admin_api_key="admin-key",
        # Two turns through the pipeline at once: the second reaches the model, which is
        # full (the model refusing a stored question; admission's own refusal: below).
        admission={"active": 2},
    )
    with live_server(create_app(settings)) as live:
        yield live


@pytest.fixture(scope="module")
def gated(
    tiny_model_dir: Path, demo_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    # Admission by default: one turn at once, none waiting.
    settings = _settings(tmp_path_factory.mktemp("gated"), tiny_model_dir, demo_index)
    with live_server(create_app(settings)) as live:
        yield live


def test_admission_refuses_busy_before_storing_and_a_resend_is_answered(gated: LiveServer) -> None:
    with connect(gated.ws) as long_answer:
        long_answer.send(json.dumps({"type": "message", "text": "How do I reset my password?"}))
        while json.loads(long_answer.recv(timeout=60))["type"] != "token":
            pass
        question = {"text": "How long does a refund take?", "id": "gated-1"}
        rest = httpx.post(f"{gated.http}/api/messages", json=question, timeout=30)
        assert rest.status_code == 503 and rest.json()["error"]["code"] == "busy"
        assert rest.headers["retry-after"]
        assert "conversation_id" not in rest.json()["error"], "refused before anything was stored"
    deadline = time.monotonic() + 180
    while True:  # the same message again once the slot is free: a fresh turn, answered
        rest = httpx.post(f"{gated.http}/api/messages", json=question, timeout=60)
        if rest.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert rest.status_code == 200, rest.text
    assert rest.json()["in_reply_to"] == "gated-1"


def test_busy_error_when_the_only_slot_is_taken_then_served_when_it_frees(
    server: LiveServer,
) -> None:
    with connect(server.ws) as long_answer:
        long_answer.send(json.dumps({"type": "message", "text": "How do I reset my password?"}))
        while json.loads(frame := long_answer.recv(timeout=60))["type"] != "token":
            pass

        question = {"text": "How long does a refund take?", "id": "busy-1"}
        rest = httpx.post(f"{server.http}/api/messages", json=question, timeout=30)
        assert rest.status_code == 503
        refused = rest.json()["error"]
        assert refused["code"] == "busy"
        assert "try again" in refused["message"]
        # The question was stored before the model refused it: the caller gets its
        # conversation, to send it again.
        assert refused["conversation_id"] and refused["conversation_token"]
        waiting = _Waiting(server, "busy-1", refused["conversation_id"])
        with connect(server.ws) as ws:
            _, frame, frames = ws_turn(ws, "How long does a refund take?", timeout=30)
            assert frame["type"] == "error" and frame["code"] == "busy", frame
            ws.send(json.dumps({"type": "ping"}))
            assert json.loads(ws.recv(timeout=10)) == {"type": "pong"}
            web = next(f for f in frames if f["type"] == "conversation")
    # The long answer goes on after its client left (a reload must not lose it); when it is
    # done, the slot is free again, and the refused question, sent again with the same id,
    # is answered.
    resend = {
        **question,
        "conversation_id": refused["conversation_id"],
        "conversation_token": refused["conversation_token"],
    }
    deadline = time.monotonic() + 180
    while True:
        rest = httpx.post(f"{server.http}/api/messages", json=resend, timeout=60)
        if rest.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert rest.status_code == 200, rest.text
    assert rest.json()["in_reply_to"] == "busy-1"
    assert waiting.questions() == 1, "the stored question was answered, not stored twice"
    # The widget's resend (same client id, after a reconnect) is answered too.
    with connect(server.ws) as ws:
        ws.send(
            json.dumps(
                {"type": "hello", **{k: web[k] for k in ("conversation_id", "resume_token")}}
            )
        )
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
        for _ in range(20):  # the slot may take a moment to free after the last answer
            _, frame, _ = ws_turn(ws, "How long does a refund take?", timeout=120)
            if frame.get("code") != "busy":
                break
            time.sleep(0.5)
        assert frame["type"] == "message" and frame["in_reply_to"] == "c1", frame


class _Waiting:
    """A conversation's stored questions with one client id, read through the admin API."""

    def __init__(self, server: LiveServer, client_id: str, cid: str) -> None:
        self.server, self.client_id, self.cid = server, client_id, cid

    def questions(self) -> int:
        reply = httpx.get(
            f"{self.server.http}/admin/conversations/{self.cid}",
            headers={"Authorization": "Bearer admin-key"},
        )
        assert reply.status_code == 200, reply.text
        turns = reply.json()["turns"]
        return sum(t["role"] == "user" and t.get("client_id") == self.client_id for t in turns)
