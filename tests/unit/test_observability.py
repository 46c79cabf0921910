"""The observability pieces on their own: JSON log lines, the Redis error counter, turn
spans and their stages, the metrics' names."""

from __future__ import annotations

import json
import logging

import pytest
from prometheus_client import REGISTRY

from bot import observability
from bot.errors import StoreUnavailable
from bot.observability import (
    REDIS_ERRORS,
    JsonFormatter,
    TurnTrace,
    conversation_id,
    current_trace,
    request_id,
    stage,
)
from bot.sessions import store_call


def test_json_lines_carry_the_ids_in_context() -> None:
    record = logging.LogRecord("switchboard.audit", logging.INFO, "x", 1, "turn %s", ("{}",), None)
    assert json.loads(JsonFormatter().format(record)).keys() == {
        "time",
        "level",
        "logger",
        "message",
    }
    rid, cid = request_id.set("r-1"), conversation_id.set("c-1")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(rid)
        conversation_id.reset(cid)
    assert line["message"] == "turn {}" and line["level"] == "info"
    assert (line["request_id"], line["conversation_id"]) == ("r-1", "c-1")
    assert line["time"].endswith("Z")


async def test_a_failed_redis_call_is_counted() -> None:
    from redis.exceptions import ConnectionError

    async def failing() -> None:
        raise ConnectionError("gone")

    before = REGISTRY.get_sample_value("switchboard_redis_errors_total") or 0.0
    with pytest.raises(StoreUnavailable):
        await store_call(failing())
    assert REGISTRY.get_sample_value("switchboard_redis_errors_total") == before + 1
    assert REDIS_ERRORS is not None


def test_a_turn_span_parents_its_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(observability, "_tracer", provider.get_tracer("test"))
    with stage("outside"):  # no turn in progress: nothing is recorded
        pass
    trace = TurnTrace("web")
    token = current_trace.set(trace)
    try:
        with stage("retrieval"):
            pass
        with pytest.raises(RuntimeError), stage("llm.generate"):
            raise RuntimeError("model died")
    finally:
        current_trace.reset(token)
    trace.end("fallback")
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"switchboard.turn", "retrieval", "llm.generate"}
    root = spans["switchboard.turn"]
    assert root.attributes is not None and root.attributes["switchboard.outcome"] == "fallback"
    for name in ("retrieval", "llm.generate"):
        assert spans[name].parent is not None
        assert spans[name].parent.span_id == root.context.span_id
    assert spans["llm.generate"].events[0].name == "exception"


def test_the_documented_metrics_exist() -> None:
    names = {metric.name for metric in REGISTRY.collect()}
    for name in (
        "switchboard_turns",
        "switchboard_turn_seconds",
        "switchboard_ttft_seconds",
        "switchboard_retrieval_seconds",
        "switchboard_handoffs",
        "switchboard_deliveries",
        "switchboard_redis_errors",
        "switchboard_websocket_connections",
        "switchboard_llm_queue_depth",
        "switchboard_llm_batch_size",
        "switchboard_llm_tokens_per_second",
        "switchboard_llm_tokens",
        "switchboard_policy_decisions",
    ):
        assert name in names, name
