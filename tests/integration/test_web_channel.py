"""The widget's websocket protocol on a real server and Redis, with a real websocket client.

Handshake rules (token, origin), resume with sequence numbers, resends answered once, the
per-connection rate limit, feedback, and a dead turn finished by another process (two apps
sharing one Redis; the first one's turn is abandoned mid-answer with its lock still held).
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
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from bot.app import create_app
from tests.support import LiveServer, demo_settings, live_server, ws_turn

pytestmark = pytest.mark.integration

PARTNER = "https://partner.example.com"


@pytest.fixture(scope="module")
def server(
    tiny_model_dir: Path, demo_index: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    settings = demo_settings(
        tiny_model_dir,
        demo_index,
        redis_url,
        tmp_path_factory.mktemp("data"),
        "sbweb:",
        web={"sites": {"demo": {}, "partner": {"origins": [PARTNER]}}, "burst": 4},
        admin_api_key="admin-key",
    )
    with live_server(create_app(settings)) as live:
        yield live


def _recv(ws: ClientConnection) -> dict[str, Any]:
    frame = json.loads(ws.recv(timeout=60))
    assert isinstance(frame, dict)
    return frame


def _token(server: LiveServer, origin: str, site: str = "partner") -> httpx.Response:
    return httpx.post(
        server.http + "/api/widget/token",
        content=json.dumps({"site_key": site}),
        headers={"Origin": origin, "Content-Type": "text/plain"},
    )


def test_browser_handshake_needs_a_token_for_its_own_origin(server: LiveServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(server.ws, origin=PARTNER)  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    issued = _token(server, PARTNER)
    assert issued.status_code == 200, issued.text
    assert issued.headers["access-control-allow-origin"] == PARTNER
    token = issued.json()["token"]
    with pytest.raises(InvalidStatus):  # the token was issued to another origin
        connect(f"{server.ws}?token={token}", origin="https://evil.example.com")  # type: ignore[arg-type]
    with connect(f"{server.ws}?token={token}", origin=PARTNER) as ws:  # type: ignore[arg-type]
        ws.send(json.dumps({"type": "ping"}))
        assert _recv(ws) == {"type": "pong"}
    denied = _token(server, "https://evil.example.com")
    assert denied.status_code == 403
    assert "may not use site key 'partner'" in denied.json()["error"]["message"]
    assert _token(server, PARTNER, site="nope").status_code == 403
    no_origin = httpx.post(server.http + "/api/widget/token", json={"site_key": "partner"})
    assert no_origin.status_code == 400
    preflight = httpx.options(server.http + "/api/widget/token", headers={"Origin": PARTNER})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == PARTNER


def test_resume_with_last_seq_sends_only_what_was_missed(
    server: LiveServer, clean_redis: redis.Redis
) -> None:
    with connect(server.ws) as ws:
        _, first, frames = ws_turn(ws, "How long do I have to return an item?", "m1")
    started = next(f for f in frames if f["type"] == "conversation")
    cid, token = started["conversation_id"], started["resume_token"]
    seqs = [f["seq"] for f in frames if "seq" in f]
    assert seqs == list(range(1, len(seqs) + 1)), "events are numbered 1, 2, 3…"
    middle = seqs[len(seqs) // 2]
    with connect(server.ws) as ws:
        hello = {"type": "hello", "conversation_id": cid, "resume_token": token}
        ws.send(json.dumps({**hello, "last_seq": middle}))
        resumed = _recv(ws)
        assert resumed["resumed"] is True and resumed["seq"] == middle
        missed = [_recv(ws) for _ in range(len(seqs) - middle)]
        assert [f["seq"] for f in missed] == seqs[middle:]
        assert missed[-1]["type"] == "message" and missed[-1]["id"] == first["id"]
        # A resend of an accepted message (same client id) is not answered twice.
        ws.send(json.dumps({"type": "message", "text": "How long?", "id": "m1"}))
        ws.send(json.dumps({"type": "ping"}))
        assert _recv(ws) == {"type": "pong"}
    stored = clean_redis.lrange(f"sbweb:conv:{cid}:turns", 0, -1)
    assert len(stored) == 2
    # Without last_seq: the whole history, and the stream goes on from its end.
    with connect(server.ws) as ws:
        ws.send(json.dumps(hello))
        full = _recv(ws)
        assert [t["role"] for t in full["history"]] == ["user", "assistant"]
        assert full["seq"] == seqs[-1]


def test_messages_beyond_the_burst_are_refused_on_that_connection(server: LiveServer) -> None:
    with connect(server.ws) as ws:
        for i in range(4):
            ws.send(json.dumps({"type": "message", "text": "   ", "id": f"e{i}"}))
            assert _recv(ws)["code"] == "empty_message"
        ws.send(json.dumps({"type": "message", "text": "hello", "id": "e5"}))
        error = _recv(ws)
        assert error["code"] == "rate_limited" and "wait" in error["message"]


def test_feedback_is_stored_for_an_answer_and_listed_for_admins(
    server: LiveServer, clean_redis: redis.Redis
) -> None:
    with connect(server.ws) as ws:
        _, final, _ = ws_turn(ws, "How long do I have to return an item?", "f1")
        ws.send(json.dumps({"type": "feedback", "message_id": final["id"], "rating": "down"}))
        echoed = _recv(ws)
        assert echoed["type"] == "feedback" and echoed["rating"] == "down"
        ws.send(json.dumps({"type": "feedback", "message_id": "nope", "rating": "up"}))
        assert _recv(ws)["code"] == "unknown_message"
        ws.send(json.dumps({"type": "feedback", "message_id": final["id"], "rating": "meh"}))
        assert _recv(ws)["code"] == "bad_frame"
    rows = httpx.get(
        server.http + "/admin/feedback", headers={"Authorization": "Bearer admin-key"}
    ).json()
    assert rows[0]["message_id"] == final["id"] and rows[0]["rating"] == "down"
    assert httpx.get(server.http + "/admin/feedback").status_code == 401


def test_a_turn_whose_process_died_is_finished_by_a_watching_connection(
    server: LiveServer, clean_redis: redis.Redis
) -> None:
    """Another process accepted a message, streamed a little, and died holding nothing."""
    with connect(server.ws) as ws:
        _, _, frames = ws_turn(ws, "Do you ship to Canada?", "d1")
    started = next(f for f in frames if f["type"] == "conversation")
    cid = started["conversation_id"]
    # What a dead process leaves: the question stored and accepted, a few tokens, no answer,
    # and a lock that has expired.
    question = {"role": "user", "text": "How long do I have to return an item?",
                "message_id": "q-dead", "created": time.time(), "citations": []}  # fmt: skip
    clean_redis.rpush(f"sbweb:conv:{cid}:turns", json.dumps(question))
    for frame in (
        {"type": "accepted", "id": "q-dead", "text": question["text"], "in_reply_to": "d2"},
        {"type": "token", "text": "Half an "},
    ):
        seq = clean_redis.incr(f"sbweb:conv:{cid}:seq")
        clean_redis.xadd(f"sbweb:conv:{cid}:events", {"e": json.dumps(frame)}, id=f"0-{seq}")
    with connect(server.ws) as ws:
        hello = {"type": "hello", "conversation_id": cid, "resume_token": started["resume_token"]}
        ws.send(json.dumps(hello))
        assert _recv(ws)["type"] == "hello"
        replayed = _recv(ws)
        assert replayed == {"type": "token", "text": "Half an ", "seq": replayed["seq"]}
        while (frame := _recv(ws))["type"] != "message":
            assert frame["type"] in ("token", "notice"), frame
    assert frame["in_reply_to"] == "d2"
    assert frame["text"].startswith("Half an"), "finished from what was said"
    turns = [json.loads(t) for t in clean_redis.lrange(f"sbweb:conv:{cid}:turns", 0, -1)]
    assert [t["role"] for t in turns][-2:] == ["user", "assistant"]
    assert turns[-1]["text"] == frame["text"]


def test_a_resend_with_the_same_client_id_gets_the_stored_answer_not_a_second_one(
    server: LiveServer, clean_redis: redis.Redis
) -> None:
    body = {"text": "How long do I have to return an item?", "id": "r1"}
    first = httpx.post(server.http + "/api/messages", json=body, timeout=60).json()
    again = {
        **body,
        "conversation_id": first["conversation_id"],
        "conversation_token": first["conversation_token"],
    }
    second = httpx.post(server.http + "/api/messages", json=again, timeout=60).json()
    assert second["id"] == first["id"] and second["text"] == first["text"]
    turns = clean_redis.lrange(f"sbweb:conv:{first['conversation_id']}:turns", 0, -1)
    assert len(turns) == 2, "answered once"
    other = {**again, "id": "r2"}
    third = httpx.post(server.http + "/api/messages", json=other, timeout=60).json()
    assert third["id"] != first["id"]
