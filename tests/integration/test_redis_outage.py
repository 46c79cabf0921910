"""Redis going away: start-up refuses, readiness reports it, turns fail loudly, recovery works.

Each test runs its own `redis-server` on a free port so it can be stopped without touching the
shared one.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
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
from tests.support import DEMO_ABSTENTION, LiveServer, live_server, ws_turn

pytestmark = pytest.mark.integration

REDIS_SERVER = shutil.which("redis-server")
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A `redis-server` of its own; `aof_dir`: with the append-only file on (fsync on every
    write, as a deployment that must lose nothing acknowledged runs it) in that folder."""

    def __init__(self, port: int, aof_dir: Path | None = None) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.aof_dir = aof_dir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert REDIS_SERVER
        durability = ["--appendonly", "no"]
        if self.aof_dir is not None:
            durability = ["--appendonly", "yes", "--appendfsync", "always", "--dir",
                          str(self.aof_dir)]  # fmt: skip
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             *durability],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    if REDIS_SERVER is None:
        pytest.fail("redis-server is not installed; .ci/run installs it")
    server = PrivateRedis(_free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(
    private_redis: PrivateRedis, tiny_model_dir: Path, demo_index: Path, tmp_path: Path
) -> Iterator[LiveServer]:
    settings = Settings(
        redis_url=private_redis.url,
        data_dir=tmp_path,
        llm=LLMSettings(model=str(tiny_model_dir), max_new_tokens=8),
        knowledge={"index_dir": demo_index, "abstention_model": DEMO_ABSTENTION},
    )
    with live_server(create_app(settings)) as live:
        yield live


def _ws_turn(live: LiveServer, text: str) -> dict[str, Any]:
    with connect(live.ws) as ws:
        _, frame, _ = ws_turn(ws, text, "m1")
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "pong"}, "connection must stay up"
    assert isinstance(frame, dict)
    return frame


def test_turns_fail_clearly_and_recover_when_redis_goes_away_and_comes_back(
    server: LiveServer, private_redis: PrivateRedis
) -> None:
    before = httpx.post(f"{server.http}/api/messages", json={"text": "Hi"}, timeout=60)
    assert before.status_code == 200, before.text

    private_redis.stop()

    ready = httpx.get(f"{server.http}/readyz", timeout=30)
    assert ready.status_code == 503
    assert ready.json()["checks"]["store"] == "unreachable"
    rest = httpx.post(f"{server.http}/api/messages", json={"text": "Hi again"}, timeout=60)
    assert rest.status_code == 503
    assert rest.json()["error"]["code"] == "store_unavailable"
    assert "store" in rest.json()["error"]["message"]
    frame = _ws_turn(server, "Are you there?")
    assert frame["type"] == "error" and frame["code"] == "store_unavailable", frame

    private_redis.start()  # an empty Redis: the earlier conversation is gone, service is back

    assert httpx.get(f"{server.http}/readyz", timeout=30).status_code == 200
    after = _ws_turn(server, "Back again?")
    assert after["type"] == "message", after
    turns = redis.Redis.from_url(private_redis.url).lrange(
        f"sb:conv:{after['conversation_id']}:turns", 0, -1
    )
    assert [json.loads(t)["role"] for t in turns] == ["user", "assistant"]


def test_serve_refuses_to_start_with_a_clear_message_when_redis_is_unreachable(
    tmp_path: Path,
) -> None:
    port = _free_port()  # nothing listens here
    env = {
        **os.environ,
        "SWITCHBOARD_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "SWITCHBOARD_DATA_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--port", str(_free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert f"127.0.0.1:{port}" in result.stderr
    assert "redis" in result.stderr.lower()


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if REDIS_SERVER is None:
        pytest.fail("redis-server is not installed; .ci/run installs it")
    folder = tmp_path / "aof"
    folder.mkdir()
    server = PrivateRedis(_free_port(), folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_redis_with_aof_killed_mid_conversation_loses_nothing_acknowledged(
    aof_redis: PrivateRedis, tiny_model_dir: Path, demo_index: Path, tmp_path: Path
) -> None:
    """Redis (append-only file, fsync always) is killed -9 between turns and in the middle
    of one, and restarted on its file: every answered message is still there, once, in
    order; a message refused while Redis was down is answered once when sent again."""
    settings = Settings(
        redis_url=aof_redis.url,
        data_dir=tmp_path / "data",
        llm=LLMSettings(model=str(tiny_model_dir), max_new_tokens=8),
        knowledge={"index_dir": demo_index, "abstention_model": DEMO_ABSTENTION},
    )
    questions = [
        "how much is standard shipping?",
        "and for express?",
        "how long do i have to return something?",
        "do you take paypal?",
        "do gift cards expire?",
        "can i cancel my order?",
    ]
    answered: list[tuple[str, str]] = []  # (message id, question) acknowledged with a 200
    with live_server(create_app(settings)) as live:
        conversation: dict[str, str] = {}

        def send(index: int) -> httpx.Response:
            body = {"text": questions[index], "id": f"q{index}", **conversation}
            return httpx.post(f"{live.http}/api/messages", json=body, timeout=60)

        for index in range(len(questions)):
            if index == 2:  # killed between two turns
                aof_redis.stop()
                aof_redis.start()
            if index == 4:  # killed while the turn is under way
                killer = threading.Timer(0.05, aof_redis.stop)
                killer.start()
                reply = send(index)
                killer.join()
                aof_redis.start()
            else:
                reply = send(index)
            if reply.status_code != 200:
                assert reply.status_code == 503, reply.text
                reply = send(index)  # sent again, once Redis is back
            assert reply.status_code == 200, reply.text
            answer = reply.json()
            conversation = {
                "conversation_id": answer["conversation_id"],
                "conversation_token": answer["conversation_token"],
            }
            answered.append((f"q{index}", questions[index]))
        cid = conversation["conversation_id"]
        aof_redis.stop()  # and once more at the end: all of it is on disk
        aof_redis.start()
        history = httpx.post(
            f"{live.http}/api/messages",
            json={"text": "thanks!", "id": "last", **conversation},
            timeout=60,
        )
        assert history.status_code == 200, history.text
    stored = [
        json.loads(t)
        for t in redis.Redis.from_url(aof_redis.url).lrange(f"sb:conv:{cid}:turns", 0, -1)
    ]
    users = [(t.get("client_id"), t["text"]) for t in stored if t["role"] == "user"]
    assert users == [*answered, ("last", "thanks!")], users  # none lost, none twice
    assert [t["role"] for t in stored] == ["user", "assistant"] * (len(answered) + 1)
