"""Observability: Prometheus metrics, structured JSON logs, OpenTelemetry traces.

- **Metrics** live in prometheus_client's default registry (one per process, like the
  process itself) and are served at `GET /metrics`. The language model's gauges are read
  from the engine at scrape time. Labels are bounded sets (channel names, outcomes, policy
  stages), never ids or text.
- **Logs**: `SWITCHBOARD_LOG_FORMAT=json` writes one JSON object per line with the request
  and conversation ids of the work that logged it (context variables set by the request
  middleware and the turn). Message text never reaches a log line: the audit records carry
  types and counts only.
- **Traces**: with an OTLP endpoint (`SWITCHBOARD_OTEL_ENDPOINT`, or the standard
  `OTEL_EXPORTER_OTLP_ENDPOINT`), each turn is a trace: the turn span and one child per
  stage (input policy, retrieval, action, generation), exported over OTLP/HTTP in batches.
  Without one, the tracer is OpenTelemetry's no-op and costs nothing.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# -- metrics ------------------------------------------------------------------------------

_LATENCY = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)

TURNS = Counter(
    "switchboard_turns_total",
    "Turns by channel and outcome (answered, no_answer, blocked, fallback, action, to_agent, "
    "busy, error).",
    ["channel", "outcome"],
)
TURN_SECONDS = Histogram(
    "switchboard_turn_seconds", "Whole turn time, message in to final answer.", ["channel"],
    buckets=_LATENCY,
)  # fmt: skip
TTFT_SECONDS = Histogram(
    "switchboard_ttft_seconds", "Time to the answer's first released words.", ["channel"],
    buckets=_LATENCY,
)  # fmt: skip
RETRIEVAL_SECONDS = Histogram(
    "switchboard_retrieval_seconds",
    "Knowledge-base search time per turn.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
HANDOFFS = Counter(
    "switchboard_handoffs_total",
    "Handoff events: requested, taken, resolved, closed.",
    ["event"],
)
DELIVERIES = Counter(
    "switchboard_deliveries_total",
    "Outbound deliveries (webhook replies) by channel and outcome: delivered, retry, dead.",
    ["channel", "outcome"],
)
REDIS_ERRORS = Counter("switchboard_redis_errors_total", "Redis commands that failed.")
WEBSOCKETS = Gauge("switchboard_websocket_connections", "Open chat websockets.")
JOBS = Counter(
    "switchboard_jobs_total",
    "Background jobs run, by kind (slack.turn, slack.post, webhook.turn, webhook.deliver...) "
    "and outcome: done, retry (failed, tried again later), pass (another server's), dead.",
    ["kind", "outcome"],
)
JOBS_BACKLOG = Gauge(
    "switchboard_jobs_backlog",
    "Jobs in the shared queue by state: queued, waiting_retry, dead (read every 5 s).",
    ["state"],
)
ADMISSION_WAITING = Gauge(
    "switchboard_admission_waiting", "Turns waiting for a slot in the turn pipeline."
)
ADMISSION_WAIT_SECONDS = Histogram(
    "switchboard_admission_wait_seconds",
    "How long a turn waited for its slot in the turn pipeline.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
)
ADMISSION_REFUSED = Counter(
    "switchboard_admission_refused_total",
    "Turns refused as busy before anything was stored: full (the line is full), client (that "
    "client has too many waiting), timeout (waited too long).",
    ["reason"],
)


class _Stats(Protocol):
    queue_depth: int
    batch_size: int
    tokens_total: int
    decode_tokens_per_s: float


class _LiveCollector(Collector):
    """Figures read at scrape time from each running app's components: the language
    model's stats and the policy audit's counters."""

    def __init__(self) -> None:
        self._parts: list[weakref.ref[Any]] = []  # components are not hashable: a list

    def watch(self, components: Any) -> None:
        self._parts = [r for r in self._parts if r() is not None and r() is not components]
        self._parts.append(weakref.ref(components))

    def collect(self) -> Iterable[Any]:
        parts = [p for p in (r() for r in self._parts) if p is not None]
        stats: list[_Stats] = [
            p.llm.stats for p in parts if getattr(p.llm, "stats", None) is not None
        ]
        for name, help_, field in (
            ("switchboard_llm_queue_depth", "Requests waiting for a batch slot.", "queue_depth"),
            ("switchboard_llm_batch_size", "Conversations decoded together now.", "batch_size"),
            (
                "switchboard_llm_tokens_per_second",
                "Decode tokens/s over the batch (smoothed).",
                "decode_tokens_per_s",
            ),
        ):
            gauge = GaugeMetricFamily(name, help_)
            gauge.add_metric([], float(sum(getattr(s, field) for s in stats)))
            yield gauge
        tokens = CounterMetricFamily("switchboard_llm_tokens", "Tokens generated.")
        tokens.add_metric([], float(sum(s.tokens_total for s in stats)))
        yield tokens
        decisions = CounterMetricFamily(
            "switchboard_policy_decisions",
            "Policy findings (PII entities counted one by one) by point, stage, rule, action.",
            labels=["point", "stage", "rule", "action"],
        )
        totals: dict[tuple[str, str, str, str], int] = {}
        for part in parts:
            for key, count in part.policies.audit.counts().items():
                totals[key] = totals.get(key, 0) + count
        for key, count in sorted(totals.items()):
            decisions.add_metric(list(key), float(count))
        yield decisions

    def describe(self) -> Iterable[Any]:
        return []


LIVE = _LiveCollector()
REGISTRY.register(LIVE)


def metrics_text() -> tuple[bytes, str]:
    """The exposition (and its content type) for `GET /metrics`."""
    return _generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# -- logs -----------------------------------------------------------------------------------

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
conversation_id: contextvars.ContextVar[str] = contextvars.ContextVar("conversation_id", default="")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the ids in context."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if rid := request_id.get():
            entry["request_id"] = rid
        if cid := conversation_id.get():
            entry["conversation_id"] = cid
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, fmt: str = "text") -> None:
    """The root logger: plain lines for people, or JSON lines for a log pipeline."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request's full URL at INFO: an outbound webhook's query string may
    # carry its receiver's token. Our own lines name the channel, never the URL.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if fmt == "json":
        # uvicorn's loggers carry their own plain handlers: send them through ours (and
        # `serve` tells uvicorn not to configure logging). Progress bars are not log lines.
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logger = logging.getLogger(name)
            logger.handlers[:] = []
            logger.propagate = True
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RequestIdMiddleware:
    """Every HTTP request and websocket gets an id: the caller's `X-Request-ID` when it is
    sane, else a new one. It is in context for every log line the request writes, and
    returned in the response's `X-Request-ID` header."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                message = {**message, "headers": headers}
            await send(message)

        token = request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


# -- traces ---------------------------------------------------------------------------------

_tracer: Any = None


def setup_tracing(endpoint: str | None, service: str) -> bool:
    """Export spans to the OTLP/HTTP `endpoint` (e.g. http://otel-collector:4318); once per
    process. False (and the no-op tracer) when no endpoint is configured."""
    global _tracer
    endpoint = endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint:
        return False
    if _tracer is not None:
        return True
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("switchboard")
    logging.getLogger(__name__).info("traces: OTLP to %s as %s", endpoint, service)
    return True


def shutdown_tracing() -> None:
    """Flush the spans still waiting for their batch."""
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()


def tracer() -> Any:
    from opentelemetry import trace

    return _tracer or trace.get_tracer("switchboard")


class TurnTrace:
    """A turn's span and its stages' child spans. Spans are passed explicitly, never made
    "current": a turn is an async generator whose steps run in its consumer's context."""

    def __init__(self, channel: str) -> None:
        self.span = tracer().start_span(
            "switchboard.turn", attributes={"switchboard.channel": channel}
        )

    @contextmanager
    def stage(self, name: str, **attributes: Any) -> Iterator[Any]:
        from opentelemetry import trace

        parent = trace.set_span_in_context(self.span)
        span = tracer().start_span(name, context=parent, attributes=attributes or None)
        try:
            yield span
        except BaseException as exc:
            span.record_exception(exc)
            raise
        finally:
            span.end()

    def end(self, outcome: str) -> None:
        self.span.set_attribute("switchboard.outcome", outcome)
        self.span.end()


current_trace: contextvars.ContextVar[TurnTrace | None] = contextvars.ContextVar(
    "current_trace", default=None
)


@contextmanager
def stage(name: str, **attributes: Any) -> Iterator[Any]:
    """A child span of the turn in progress (nothing outside a turn)."""
    trace = current_trace.get()
    if trace is None:
        yield None
        return
    with trace.stage(name, **attributes) as span:
        yield span
