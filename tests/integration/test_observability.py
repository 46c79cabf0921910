"""Metrics, JSON logs and traces from real servers after real turns.

- In process (tiny real model, real Redis, presidio, MiniLM): `/metrics` is scraped before
  and after a REST turn and a websocket turn, and the counters moved by exactly what the
  turns did.
- A `switchboard serve` process with JSON logs and an OTLP endpoint: a real HTTP receiver
  decodes the exported protobuf spans (the turn and its stages, linked), and the log lines
  parse as JSON, carry the request and conversation ids, and never the customer's e-mail.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from bot.app import create_app
from tests.openai_server import serve_openai
from tests.processes import ScriptedAnswers, ServerProcess, free_port
from tests.support import LiveServer, demo_settings, live_server, ws_turn

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base: str) -> Samples:
    response = httpx.get(base + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(
        v for (n, have), v in samples.items() if n == name and set(labels.items()) <= set(have)
    )


@pytest.fixture(scope="module")
def server(
    tiny_model_dir: Path, demo_index: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("data")
    settings = demo_settings(
        tiny_model_dir,
        demo_index,
        redis_url,
        data,
        "sbobs:",
        max_new_tokens=12,
        answers={"mode": "generate"},  # model metrics (first token, tokens/s) move too
    )
    with live_server(create_app(settings)) as live:
        yield live


def test_metrics_move_with_real_turns(server: LiveServer) -> None:
    before = scrape(server.http)
    asked = "How long do I have to return an item? Write to me at jo.smith@example.org"
    reply = httpx.post(
        server.http + "/api/messages",
        json={"text": asked},
        headers={"X-Request-ID": "req-abc.123"},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-request-id"] == "req-abc.123"
    generated = httpx.get(server.http + "/healthz").headers["x-request-id"]
    assert len(generated) == 32 and generated != "req-abc.123"
    bad = httpx.get(server.http + "/healthz", headers={"X-Request-ID": "no spaces allowed"})
    assert bad.headers["x-request-id"] != "no spaces allowed"

    with connect(server.ws, open_timeout=30) as ws:
        during = scrape(server.http)
        assert value(during, "switchboard_websocket_connections") == (
            value(before, "switchboard_websocket_connections") + 1
        )
        _, final, _ = ws_turn(ws, "How much does express shipping cost?")
        assert final["type"] == "message"
    after = scrape(server.http)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("switchboard_turns_total", channel="rest") == 1
    assert moved("switchboard_turns_total", channel="web") == 1
    assert moved("switchboard_turns_total", outcome="error") == 0
    assert moved("switchboard_turn_seconds_count", channel="rest") == 1
    assert moved("switchboard_turn_seconds_sum", channel="rest") > 0
    assert moved("switchboard_retrieval_seconds_count") == 2
    # The model answered at least one of them (the other may be an "I don't know"):
    assert moved("switchboard_ttft_seconds_count") >= 1
    assert moved("switchboard_llm_tokens_total") >= 1
    assert moved("switchboard_policy_decisions_total", point="input", stage="pii") >= 1
    assert value(after, "switchboard_websocket_connections") == value(
        before, "switchboard_websocket_connections"
    )
    for gauge in ("switchboard_llm_queue_depth", "switchboard_llm_batch_size"):
        assert (gauge, ()) in after
    assert ("switchboard_redis_errors_total", ()) in after


class _OtlpReceiver(BaseHTTPRequestHandler):
    spans: list[Any]

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                self.server.spans.extend(scope.spans)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def otlp() -> Iterator[ThreadingHTTPServer]:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _OtlpReceiver)
    receiver.spans = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.shutdown()
    receiver.server_close()


def test_a_served_turn_is_traced_and_logged_as_json(
    otlp: ThreadingHTTPServer, demo_index: Path, redis_url: str, tmp_path: Path
) -> None:
    model = ScriptedAnswers({"return an item": "You have **30 days** to return an item."})
    with serve_openai(model, name="scripted") as llm:
        env = {
            **os.environ,
            "SWITCHBOARD_REDIS_URL": redis_url,
            "SWITCHBOARD_KEY_PREFIX": "sbobs2:",
            "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"),
            "SWITCHBOARD_LLM__ENGINE": "openai",
            "SWITCHBOARD_LLM__BASE_URL": llm.base_url,
            "SWITCHBOARD_LLM__MODEL": "scripted",
            "SWITCHBOARD_KNOWLEDGE__INDEX_DIR": str(demo_index),
            "SWITCHBOARD_KNOWLEDGE__ABSTAIN": "false",
            "SWITCHBOARD_ANSWERS__MODE": "generate",  # the model's span is traced too
            "SWITCHBOARD_LOG_FORMAT": "json",
            "SWITCHBOARD_OTEL_ENDPOINT": f"http://127.0.0.1:{otlp.server_address[1]}",
            "SWITCHBOARD_OTEL_SERVICE_NAME": "switchboard-test",
            "HF_HUB_OFFLINE": "1",
            "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "",
        }
        server = ServerProcess(env, free_port(), tmp_path / "server.log")
        server.start()
        try:
            server.wait_ready()
            reply = httpx.post(
                server.url + "/api/messages",
                json={"text": "How do I return an item? I am jo.smith@example.org"},
                headers={"X-Request-ID": "trace-me-1"},
                timeout=60,
            )
            assert reply.status_code == 200, reply.text
            conversation = reply.json()["conversation_id"]
        finally:
            server.stop()  # a clean stop flushes the spans still in their batch
    logs = server.log_path.read_text()
    assert "jo.smith@example.org" not in logs

    entries = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert entries and len(entries) == len([x for x in logs.splitlines() if x.strip()]), (
        "every log line is JSON"
    )
    turn = [e for e in entries if e["logger"] == "switchboard.audit" and "turn" in e["message"]]
    assert turn and turn[0]["request_id"] == "trace-me-1"
    assert turn[0]["conversation_id"] == conversation

    spans = {span.name: span for span in otlp.spans}  # type: ignore[attr-defined]
    assert {"switchboard.turn", "policy.input", "retrieval", "llm.generate"} <= set(spans)
    root = spans["switchboard.turn"]
    for name in ("policy.input", "retrieval", "llm.generate"):
        assert spans[name].trace_id == root.trace_id
        assert spans[name].parent_span_id == root.span_id
    attributes = {a.key: a.value.string_value for a in root.attributes}
    assert attributes["switchboard.conversation"] == conversation
    assert attributes["switchboard.channel"] == "rest"
    assert attributes["switchboard.outcome"] == "answered"
    assert root.end_time_unix_nano >= spans["llm.generate"].end_time_unix_nano
