"""Cold start to ready, time to first token and to the full answer, over the real server.

    .venv/bin/python bench/turn_latency.py [--questions N] [--port P]

Starts `switchboard serve` as a subprocess with the current settings (ingest the demo KB
first: `make ingest`), waits for /readyz, asks demo questions one at a time over the
websocket, and prints medians and p95. A figure, not a pass/fail test.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--questions", type=int, default=len(QUESTIONS))
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    env = {**os.environ, "SWITCHBOARD_PORT": str(args.port)}
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


if __name__ == "__main__":
    main()
