"""Real HTTP servers standing in for the outside world in tests.

- `FakeSlack`: Slack's Web API (chat.postMessage, chat.update, users.info, auth.test) on a
  free port; records every call; can answer 429 with `Retry-After` for the next calls.
- `Receiver`: a webhook receiver that records deliveries (and checks their signatures); it
  can fail the first N, answer slowly, or be down (not listening) for a while.
- Helpers that sign requests the way Slack and webhook senders do.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import httpx

from connectors.slack.signature import slack_signature
from connectors.webhook.signature import HEADER, sign


@dataclass
class Call:
    method: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float = field(default_factory=time.time)
    ts: str = ""  # the ts Slack gave a posted message


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 and a port (free, or the one given)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        self._handler = handler
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        httpd = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler)
        httpd.daemon_threads = True
        httpd.owner = self  # type: ignore[attr-defined]
        self._port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening (the port stays this server's: `start` listens on it again)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"


class _SlackHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        fake: FakeSlack = self.server.owner  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        method = self.path.rstrip("/").split("/")[-1]
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        status, headers, reply = fake.answer(method, body, dict(self.headers.items()))
        data = json.dumps(reply).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeSlack(_Server):
    """Slack's Web API, recording calls. `calls` holds successful and refused ones alike."""

    BOT_USER = "UBOT"

    def __init__(self) -> None:
        super().__init__(_SlackHandler)
        self.calls: list[Call] = []
        self.limited: list[Call] = []  # answered 429
        self.names = {"UAGENT": "Dana"}
        self._lock = threading.Lock()
        self._rate_limit = 0
        self.retry_after = 1
        self._ts = 1_700_000_000.000100
        self.texts: dict[str, str] = {}  # ts -> the message's text now (after edits)

    def rate_limit_next(self, count: int, retry_after: int = 1) -> None:
        with self._lock:
            self._rate_limit, self.retry_after = count, retry_after

    def answer(
        self, method: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        call = Call(method, body, headers)
        with self._lock:
            if method in ("chat.postMessage", "chat.update") and self._rate_limit > 0:
                self._rate_limit -= 1
                self.limited.append(call)
                return (
                    429,
                    {"Retry-After": str(self.retry_after)},
                    {"ok": False, "error": "ratelimited"},
                )
            if not headers.get("Authorization", "").startswith("Bearer xoxb-"):
                return 200, {}, {"ok": False, "error": "not_authed"}
            self.calls.append(call)
            self._ts += 1
            ts = call.ts = f"{self._ts:.6f}"
        if method == "auth.test":
            return 200, {}, {"ok": True, "user_id": self.BOT_USER, "bot_id": "BBOT"}
        if method == "users.info":
            user = body.get("user", "")
            name = self.names.get(user, user)
            return (
                200,
                {},
                {"ok": True, "user": {"id": user, "name": name, "profile": {"display_name": name}}},
            )
        if method == "chat.update":
            with self._lock:
                if body.get("ts") not in self.texts:
                    return 200, {}, {"ok": False, "error": "message_not_found"}
                self.texts[body["ts"]] = body.get("text", "")
            return 200, {}, {"ok": True, "channel": body.get("channel"), "ts": body["ts"]}
        if method == "chat.postMessage":
            with self._lock:
                self.texts[ts] = body.get("text", "")
            reply = {"ok": True, "channel": body.get("channel"), "ts": ts}
            return 200, {}, {**reply, "message": {"text": body.get("text")}}
        return 200, {}, {"ok": False, "error": "unknown_method"}

    def messages(self, channel: str | None = None, thread: str | None = None) -> list[str]:
        """The texts of the messages posted (to `channel`, in `thread`), as edited since."""
        with self._lock:
            texts = dict(self.texts)
        return [
            texts.get(call.ts, call.body.get("text", "")) for call in self.posts(channel, thread)
        ]

    def edits(self, ts: str) -> list[str]:
        """The texts a message was edited to, in order."""
        with self._lock:
            return [
                c.body.get("text", "")
                for c in self.calls
                if c.method == "chat.update" and c.body.get("ts") == ts
            ]

    def posts(self, channel: str | None = None, thread: str | None = None) -> list[Call]:
        with self._lock:
            return [
                c
                for c in self.calls
                if c.method == "chat.postMessage"
                and (channel is None or c.body.get("channel") == channel)
                and (thread is None or c.body.get("thread_ts") == thread)
            ]


class _ReceiverHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        receiver: Receiver = self.server.owner  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        status = receiver.take(raw, dict(self.headers.items()))
        if receiver.delay_s:
            time.sleep(receiver.delay_s)
        try:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
        except OSError:  # the sender gave up waiting
            pass


@dataclass
class Delivery:
    body: dict[str, Any]
    raw: bytes
    headers: dict[str, str]
    status: int
    at: float = field(default_factory=time.time)


class Receiver(_Server):
    """A webhook receiver: answers 500 to the first `fail_first` deliveries, waits `delay_s`
    before answering, records everything (`deliveries`; `accepted` are the 2xx ones)."""

    def __init__(self, fail_first: int = 0, delay_s: float = 0.0, port: int = 0) -> None:
        super().__init__(_ReceiverHandler, port)
        self.fail_first = fail_first
        self.delay_s = delay_s
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()

    def take(self, raw: bytes, headers: dict[str, str]) -> int:
        with self._lock:
            status = 500 if self.fail_first > 0 else 200
            self.fail_first = max(0, self.fail_first - 1)
            body = json.loads(raw) if raw else {}
            self.deliveries.append(Delivery(body, raw, headers, status))
            return status

    @property
    def accepted(self) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.status == 200]

    def wait_for(self, count: int, timeout: float = 60, **match: Any) -> list[Delivery]:
        """The accepted deliveries whose body has `match`, once there are `count` of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [d for d in self.accepted if all(d.body.get(k) == v for k, v in match.items())]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)


# --- signing requests as the senders do ---------------------------------------------------


def slack_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack_signature(secret, ts, body),
    }


def slack_event(
    base_url: str,
    secret: str,
    event: dict[str, Any],
    event_id: str,
    *,
    retry: int | None = None,
    timestamp: int | None = None,
    team: str = "T1",
) -> httpx.Response:
    """POST an Events API callback, signed as Slack signs it."""
    payload = {
        "token": "unused",
        "team_id": team,
        "api_app_id": "A1",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "event": event,
    }
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **slack_headers(secret, body, timestamp)}
    if retry is not None:
        headers["X-Slack-Retry-Num"] = str(retry)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    return httpx.post(base_url + "/slack/events", content=body, headers=headers, timeout=10)


def slack_form(base_url: str, path: str, secret: str, form: dict[str, str]) -> httpx.Response:
    """POST a slash command or an interaction (form-encoded), signed as Slack signs it."""
    body = urlencode(form).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        **slack_headers(secret, body),
    }
    return httpx.post(base_url + path, content=body, headers=headers, timeout=10)


def webhook_post(
    base_url: str,
    name: str,
    secrets: list[str],
    message: dict[str, Any],
    *,
    key: str | None = None,
    timestamp: int | None = None,
) -> httpx.Response:
    """POST a message to a webhook channel, signed with `secrets`."""
    body = json.dumps(message).encode()
    headers = {"Content-Type": "application/json", HEADER: sign(body, secrets, timestamp)}
    if key is not None:
        headers["Idempotency-Key"] = key
    return httpx.post(f"{base_url}/webhooks/{name}", content=body, headers=headers, timeout=10)
