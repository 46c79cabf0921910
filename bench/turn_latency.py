"""Cold start to ready, time to first token and to the full answer, over the real server.

    .venv/bin/python bench/turn_latency.py [--questions N] [--port P] [--stages]

Starts `switchboard serve` as a subprocess with the current settings (ingest the demo KB
first: `make ingest`), waits for /readyz, asks demo questions one at a time over the
websocket, and prints medians and p95. With --stages the server exports its traces to a
small OTLP/HTTP receiver here, and the turn's budget is printed stage by stage (policy
input, retrieval, quotes, the model, grounding...: p50/p95 of each span, and the rest of
the turn outside them: Redis, output policies, streaming). A figure, not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import httpx
from websockets.sync.client import connect

QUESTIONS = [
    "How long do I have to return an item?",
    "How much is express shipping?",
    "Can I cancel my order?",
    "Which payment methods do you accept?",
    "How long does a refund take?",
    "How do I reset my password?",
    "Do you ship internationally?",
    "How can I track my order?",
]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Spans:
    """An OTLP/HTTP trace receiver on a free port: spans' (name, id, parent id, seconds)."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        self.spans: list[tuple[str, bytes, bytes, float]] = []
        spans = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            seconds = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e9
                            spans.append((span.name, span.span_id, span.parent_span_id, seconds))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def table(self) -> None:
        turns = {sid: sec for name, sid, _, sec in self.spans if name == "switchboard.turn"}
        inside: dict[bytes, float] = {}
        by_name: dict[str, list[float]] = {}
        for name, _, parent, seconds in self.spans:
            if parent in turns:  # a stage of a turn (the web framework's spans are not)
                by_name.setdefault(name, []).append(seconds)
                inside[parent] = inside.get(parent, 0.0) + seconds
        if not turns:
            print("no turn spans received (is opentelemetry installed in the server's venv?)")
            return
        rest = [total - inside.get(span_id, 0.0) for span_id, total in turns.items()]
        rows = [*sorted(by_name.items()), ("(rest of the turn)", rest)]
        rows.append(("whole turn", list(turns.values())))
        print(f"turn budget by stage, {len(turns)} turns (ms):")
        print(f"  {'stage':<22} {'count':>5} {'p50':>8} {'p95':>8}")
        for name, values in rows:
            print(
                f"  {name:<22} {len(values):>5} {statistics.median(values) * 1e3:>8.1f} "
                f"{pct(values, 0.95) * 1e3:>8.1f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--questions", type=int, default=len(QUESTIONS))
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--stages", action="store_true", help="the turn's budget by stage")
    args = parser.parse_args()
    env = {**os.environ, "SWITCHBOARD_PORT": str(args.port)}
    spans = Spans() if args.stages else None
    if spans is not None:
        env["SWITCHBOARD_OTEL_ENDPOINT"] = spans.url
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{args.port}"
    try:
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                sys.exit("server exited during start-up; run it by hand to see why")
            time.sleep(0.2)
        ready_s = time.perf_counter() - started
        print(f"cold start to ready: {ready_s:.1f}s")
        firsts, totals, lengths = [], [], []
        with connect(f"ws://127.0.0.1:{args.port}/ws/chat") as ws:
            for question in (QUESTIONS * 4)[: args.questions]:
                t0 = time.perf_counter()
                ws.send(json.dumps({"type": "message", "text": question}))
                first = None
                while (frame := json.loads(ws.recv(timeout=300)))["type"] != "message":
                    if frame["type"] == "token" and first is None:
                        first = time.perf_counter() - t0
                    if frame["type"] == "error":
                        sys.exit(f"error: {frame}")
                total = time.perf_counter() - t0
                firsts.append(first or total)
                totals.append(total)
                lengths.append(len(frame["text"]))
                print(
                    f"  {first or total:5.2f}s first, {total:5.2f}s full, "
                    f"{len(frame['text']):4d} chars  {question}"
                )
        print(
            f"time to first token: median {statistics.median(firsts):.2f}s, "
            f"p95 {pct(firsts, 0.95):.2f}s"
        )
        print(
            f"time to full answer: median {statistics.median(totals):.2f}s, "
            f"p95 {pct(totals, 0.95):.2f}s (answers median {statistics.median(lengths):.0f} "
            "chars)"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    if spans is not None:
        spans.table()


if __name__ == "__main__":
    main()
