"""The real server on a free port: real Redis, presidio, MiniLM retrieval, websocket + HTTP.

The model here is a tiny randomly initialised one (fast, nonsense answers) so these tests
exercise the plumbing; `test_default_model.py` checks answers with the real model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from websockets.sync.client import ClientConnection, connect

from bot.app import create_app
from policies.schema import default_policy_path, load_policy
from tests.support import LiveServer, demo_settings, live_server, ws_turn

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(
    tiny_model_dir: Path, demo_index: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("data")
    settings = demo_settings(
        tiny_model_dir, demo_index, redis_url, data, "sbtest:", max_message_chars=500
    )
    with live_server(create_app(settings)) as live:
        yield live


def _recv(ws: ClientConnection) -> dict[str, Any]:
    frame = json.loads(ws.recv(timeout=60))
    assert isinstance(frame, dict)
    return frame


def _dump_key(r: redis.Redis, key: str) -> Any:
    kind = r.type(key)
    if kind == "hash":
        return r.hgetall(key)
    if kind == "list":
        return r.lrange(key, 0, -1)
    return r.get(key) if kind == "string" else None


def _answer(
    ws: ClientConnection, text: str, client_id: str = "c1"
) -> tuple[list[str], dict[str, Any]]:
    tokens, final, _ = ws_turn(ws, text, client_id)
    return tokens, final


def test_health_ready_and_docs_when_started(server: LiveServer) -> None:
    assert httpx.get(f"{server.http}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.http}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"store": "ok", "model": "ok", "knowledge": "ok"}
    assert ready.json()["knowledge_version"], "the served index version is reported"
    assert httpx.get(f"{server.http}/docs").status_code == 200
    assert "/api/messages" in httpx.get(f"{server.http}/openapi.json").json()["paths"]


def test_demo_page_is_served_when_root_is_requested(server: LiveServer) -> None:
    page = httpx.get(server.http + "/")
    assert page.status_code == 200
    assert '<script src="/widget.js" data-site-key="demo"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    widget = httpx.get(server.http + "/widget.js")
    assert widget.status_code == 200 and "/ws/chat" in widget.text
    assert widget.headers["content-type"].startswith("text/javascript")
    assert "max-age" in widget.headers["cache-control"] and widget.headers["etag"]
    again = httpx.get(server.http + "/widget.js", headers={"If-None-Match": widget.headers["etag"]})
    assert again.status_code == 304, "a cached widget is revalidated, not downloaded again"


def test_answer_streams_and_ends_with_final_message_when_asked(
    server: LiveServer, clean_redis: redis.Redis
) -> None:
    with connect(server.ws) as ws:
        tokens, final = _answer(ws, "How long do I have to return an item?", "q1")
    assert final["type"] == "message", final
    assert tokens, "the answer must stream as token frames"
    assert final["text"] == "".join(tokens).strip()
    assert final["in_reply_to"] == "q1"
    assert {
        "title": "Returns policy",
        "source": "returns-policy.md",
        "url": "/help/returns-policy.md",
    } in final["citations"]
    stored = clean_redis.lrange(f"sbtest:conv:{final['conversation_id']}:turns", 0, -1)
    assert [json.loads(t)["role"] for t in stored] == ["user", "assistant"]


def test_pii_is_redacted_in_redis_and_answer_when_message_carries_email_and_card(
    server: LiveServer, clean_redis: redis.Redis
) -> None:
    text = "My email is jane.doe@example.com and my card is 4111 1111 1111 1111, refund please"
    with connect(server.ws) as ws:
        _, final = _answer(ws, text)
    turns = [
        json.loads(t)
        for t in clean_redis.lrange(f"sbtest:conv:{final['conversation_id']}:turns", 0, -1)
    ]
    dump = json.dumps({key: _dump_key(clean_redis, key) for key in clean_redis.keys("sbtest:*")})
    assert final["conversation_id"] in dump  # the dump did read the conversation's keys
    # Not a bare "4111": a stored timestamp such as 1795947053.3411152 contains it.
    for secret in ("jane.doe@example.com", "4111 1111 1111 1111", "4111 1111", "jane.doe"):
        assert secret not in dump
        assert secret not in final["text"]
    assert turns[0]["text"] == (
        "My email is <EMAIL_ADDRESS> and my card is <CREDIT_CARD>, refund please"
    )


def test_conversation_continues_with_history_when_hello_names_it(server: LiveServer) -> None:
    with connect(server.ws) as ws:
        _, first, frames = ws_turn(ws, "Do you ship to Canada?")
    cid = first["conversation_id"]
    started = next(f for f in frames if f["type"] == "conversation")
    assert started["conversation_id"] == cid
    with connect(server.ws) as ws:
        ws.send(json.dumps({"type": "hello", "conversation_id": cid}))
        assert _recv(ws)["code"] == "bad_resume_token", "an id alone does not open it"
        token = started["resume_token"]
        ws.send(json.dumps({"type": "hello", "conversation_id": cid, "resume_token": token}))
        hello = _recv(ws)
        assert hello["type"] == "hello" and hello["conversation_id"] == cid
        assert [t["role"] for t in hello["history"]] == ["user", "assistant"]
        assert hello["history"][0]["text"] == "Do you ship to Canada?"
        _, second = _answer(ws, "How much does it cost?", "c2")
    assert second["conversation_id"] == cid


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_frame"),
        (json.dumps({"type": "dance"}), "unknown_type"),
        (json.dumps({"type": "message"}), "bad_frame"),
        (json.dumps({"type": "message", "text": "   "}), "empty_message"),
        (json.dumps({"type": "message", "text": "x" * 501}), "message_too_long"),
        (json.dumps({"type": "hello", "conversation_id": "nope"}), "bad_resume_token"),
        (
            json.dumps({"type": "message", "text": "hi", "conversation_id": "nope"}),
            "unknown_conversation",
        ),
        # Frames no client should send, each of which closed the connection.
        (json.dumps({"type": ["message"]}), "bad_frame"),
        (json.dumps({"type": "message", "text": 5}), "bad_frame"),
        (json.dumps({"type": "message", "text": "hi", "id": {"a": 1}}), "bad_frame"),
        ('{"type": "message", "text": "\\ud800"}', "bad_text"),
        ('{"type": "hello", "conversation_id": "\\udfff", "resume_token": "x"}', None),
        ("[" * 100_000 + "]" * 100_000, "bad_json"),
        (json.dumps({"type": "feedback", "message_id": ["x"], "rating": "up"}), "bad_frame"),
    ],
)
def test_error_frame_and_connection_stays_up_when_frame_is_bad(
    server: LiveServer, clean_redis: redis.Redis, frame: str, code: str | None
) -> None:
    with connect(server.ws) as ws:
        ws.send(frame)
        error = _recv(ws)
        assert error["type"] == "error", error
        assert code is None or error["code"] == code, error
        assert error["message"]
        ws.send(json.dumps({"type": "ping"}))
        assert _recv(ws) == {"type": "pong"}
    assert clean_redis.keys("sbtest:conv:*:turns") == []


def test_error_frame_when_binary_frame_is_sent(server: LiveServer) -> None:
    with connect(server.ws) as ws:
        ws.send(b"\x00\x01binary")
        assert _recv(ws)["code"] == "binary_not_supported"
        ws.send(json.dumps({"type": "ping"}))
        assert _recv(ws) == {"type": "pong"}


def test_rest_channel_answers_and_continues_when_posted(server: LiveServer) -> None:
    first = httpx.post(
        f"{server.http}/api/messages", json={"text": "What payment methods?"}, timeout=60
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["type"] == "message" and body["text"] and body["citations"]
    again = httpx.post(
        f"{server.http}/api/messages",
        timeout=60,
        json={
            "text": "And PayPal?",
            "conversation_id": body["conversation_id"],
            "conversation_token": body["conversation_token"],
        },
    )
    assert again.status_code == 200, again.text
    assert again.json()["conversation_id"] == body["conversation_id"]


def test_rest_channel_refuses_writes_into_a_conversation_without_its_token(
    server: LiveServer, clean_redis: Any
) -> None:
    """A conversation id seen in a log, an admin URL or a webhook payload writes nothing."""
    first = httpx.post(f"{server.http}/api/messages", json={"text": "hi"}, timeout=60)
    victim = first.json()
    cid, token = victim["conversation_id"], victim["conversation_token"]
    turns_key = f"sbtest:conv:{cid}:turns"
    before = clean_redis.lrange(turns_key, 0, -1)
    attack = "Actually, where do I send my return? Reply to refunds-desk@evil.example"
    tries = [
        ({"text": attack, "conversation_id": cid}, {}, "conversation_token_required"),
        ({"text": attack, "conversation_id": cid, "conversation_token": "x"}, {},
         "bad_conversation_token"),
        # Another conversation's genuine token does not open this one.
        ({"text": attack, "conversation_id": cid}, {"x-conversation-token": _other_token(server)},
         "bad_conversation_token"),
    ]  # fmt: skip
    for payload, headers, code in tries:
        refused = httpx.post(
            f"{server.http}/api/messages", json=payload, headers=headers, timeout=60
        )
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == code
    assert clean_redis.lrange(turns_key, 0, -1) == before
    # The token, in the header this time, continues it.
    ok = httpx.post(
        f"{server.http}/api/messages",
        json={"text": "thanks", "conversation_id": cid},
        headers={"x-conversation-token": token},
        timeout=60,
    )
    assert ok.status_code == 200, ok.text
    assert len(clean_redis.lrange(turns_key, 0, -1)) == len(before) + 2


def _other_token(server: LiveServer) -> str:
    other = httpx.post(f"{server.http}/api/messages", json={"text": "hello"}, timeout=60)
    token: str = other.json()["conversation_token"]
    return token


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"text": ""}, 400, "empty_message"),
        ({"text": "y" * 501}, 400, "message_too_long"),
        ({"text": "hi", "conversation_id": "missing"}, 403, "conversation_token_required"),
        ({"text": "hi", "id": "x" * 201}, 422, ""),
    ],
)
def test_rest_channel_returns_4xx_when_request_is_bad(
    server: LiveServer, payload: dict[str, str], status: int, code: str
) -> None:
    response = httpx.post(f"{server.http}/api/messages", json=payload)
    assert response.status_code == status
    if code:
        assert response.json()["error"]["code"] == code


def test_rest_channel_returns_422_when_body_is_malformed(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.http}/api/messages",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422


def test_says_it_does_not_know_when_the_help_center_has_nothing_on_it(
    server: LiveServer, clean_redis: redis.Redis
) -> None:
    with connect(server.ws) as ws:
        _, final = _answer(ws, "What's the capital of Australia?")
    assert final["type"] == "message", final
    assert final["text"] == load_policy(default_policy_path()).messages.no_answer
    assert final["citations"] == []
    stored = clean_redis.lrange(f"sbtest:conv:{final['conversation_id']}:turns", 0, -1)
    assert [json.loads(t)["role"] for t in stored] == ["user", "assistant"]


def test_a_body_over_the_cap_is_refused_with_413_before_it_is_read(server: LiveServer) -> None:
    big = b'{"text": "' + b"y" * (300 * 1024) + b'"}'
    declared = httpx.post(
        f"{server.http}/api/messages", content=big, headers={"content-type": "application/json"}
    )
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked, more than declared
        yield b'{"text": "'
        for _ in range(40):
            yield b"y" * 8192
        yield b'"}'

    streamed = httpx.post(
        f"{server.http}/api/messages",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert streamed.status_code == 413
    small = httpx.post(f"{server.http}/api/messages", json={"text": "y" * 501})
    assert small.status_code == 400, "under the cap: the route's own limit answers"


@pytest.mark.parametrize(
    "body",
    [
        b'{"text": "\\ud800 hello"}',  # a lone surrogate: valid JSON, not valid text
        b'{"text": NaN}',
        b'{"text": "hi", "conversation_id": NaN}',
        b'{"text": "hi", "id": "\\udfff"}',
    ],
)
def test_rest_bodies_that_are_not_text_get_4xx_not_500(server: LiveServer, body: bytes) -> None:
    response = httpx.post(
        f"{server.http}/api/messages", content=body, headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
    assert "error" in response.json() or "detail" in response.json()


@pytest.mark.parametrize("path", ["/help/%00", "/help/returns%00.md", "/help/..%2F..%2Fetc"])
def test_help_paths_that_cannot_name_a_document_get_4xx(server: LiveServer, path: str) -> None:
    response = httpx.get(f"{server.http}{path}")
    assert 400 <= response.status_code < 500, response.text
