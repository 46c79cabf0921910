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
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert REDIS_SERVER
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
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
