"""Many websocket conversations at once: every accepted turn answered exactly once.

    .venv/bin/python bench/ws_load.py [--chats 32,128] [--turns 2]

A real `switchboard serve` process (Redis, presidio, MiniLM, the demo help center; a
scripted model behind the OpenAI engine, so the figures are the pipeline's, not a model's),
with the default admission control. For each count, that many widget conversations open a
websocket at once, each from its own address (`X-Forwarded-For`, as behind an ingress), and
send `--turns` messages one after another. A turn ends with its answer or an error frame
(`busy` when the machine is full: the message was not taken, nothing stored). Then Redis is
read: every answered message must be stored once with one answer after it, and nothing else.

Prints per count: turns answered / refused busy / other errors, turn time p50 / p95 / max,
the slowest conversation, and the Redis check (held or the faults). Figures, not a test
(its core, 32 conversations, is tests/integration/test_ws_load.py). The help center is
indexed as bench/admission.py does it.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis
from websockets.asyncio.client import connect

from bench.admission import ANSWER, QUESTIONS, REDIS, run_server
from bench.turn_latency import pct
from tests.openai_server import serve_openai
from tests.processes import ScriptedAnswers


@dataclass
class Chat:
    """One conversation's outcome: its id, the client ids of the turns it got answers to,
    every turn's time and how each ended."""

    conversation: str = ""
    answered: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    ended: Counter[str] = field(default_factory=Counter)
    finals: Counter[str] = field(default_factory=Counter)  # final frames per client id
    errors: list[str] = field(default_factory=list)  # other than busy


async def chat(url: str, number: int, turns: int, wait_s: float) -> Chat:
    out = Chat()
    address = f"10.{number // 65536 % 256}.{number // 256 % 256}.{number % 256}"
    async with connect(url, additional_headers={"X-Forwarded-For": address}) as ws:
        for turn in range(turns):
            client_id = f"chat{number}-t{turn}"
            started = time.perf_counter()
            text = QUESTIONS[(number + turn) % len(QUESTIONS)]
            await ws.send(json.dumps({"type": "message", "text": text, "id": client_id}))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), wait_s))
                if frame["type"] == "message":
                    out.conversation = frame["conversation_id"]
                    out.answered.append(client_id)
                    out.finals[client_id] += 1
                    out.ended["answered"] += 1
                    break
                if frame["type"] == "error":
                    out.ended[frame.get("code", "error")] += 1
                    if frame.get("code") != "busy":
                        out.errors.append(frame.get("message", ""))
                    break
            out.seconds.append(time.perf_counter() - started)
        # Anything more on the socket would be a second answer.
        try:
            extra = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
            if extra.get("type") == "message":
                out.finals[extra.get("in_reply_to") or "?"] += 1
        except TimeoutError:
            pass
    return out


def check(client: Any, prefix: str, chats: list[Chat]) -> list[str]:
    """What Redis holds against what was answered: empty when it matches."""
    faults = []
    for c in chats:
        if sum(c.finals.values()) != len(c.answered):
            faults.append(f"{c.conversation}: {dict(c.finals)} final frames")
        if not c.conversation:
            continue
        stored = [
            json.loads(t) for t in client.lrange(f"{prefix}conv:{c.conversation}:turns", 0, -1)
        ]
        users = [t.get("client_id") for t in stored if t["role"] == "user"]
        roles = [t["role"] for t in stored]
        if users != c.answered or roles != ["user", "assistant"] * len(c.answered):
            faults.append(f"{c.conversation}: stored {users} {roles}, answered {c.answered}")
    return faults


async def wave(url: str, chats: int, turns: int, wait_s: float) -> tuple[list[Chat], float]:
    started = time.perf_counter()
    done = await asyncio.gather(*(chat(url, n, turns, wait_s) for n in range(chats)))
    return list(done), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", default="32,128", help="conversations at once, per wave")
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120, help="a turn's longest wait, s")
    args = parser.parse_args()
    model = ScriptedAnswers({"": ANSWER}, delay_s=0.0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, serve_openai(model, name="scripted") as llm:
        server = run_server(Path(tmp), llm.base_url, {}, "ws")
        client = redis.Redis.from_url(REDIS, decode_responses=True)
        try:
            url = server.url.replace("http://", "ws://") + "/ws/chat"
            asyncio.run(wave(url, 2, 1, args.timeout))  # warm
            for count in (int(n) for n in args.chats.split(",") if n):
                chats, wall = asyncio.run(wave(url, count, args.turns, args.timeout))
                rows.append((count, chats, wall, check(client, "sbadmws:", chats)))
        finally:
            server.stop()
            client.close()
    print(f"\n{'chats':>5} {'answered':>8} {'busy':>5} {'other':>5} {'p50 s':>6} {'p95 s':>6} "
          f"{'max s':>6} {'slowest chat s':>14} {'wall s':>6}  stored once, in order")  # fmt: skip
    for count, chats, wall, faults in rows:
        ended: Counter[str] = sum((c.ended for c in chats), Counter())
        times = [s for c in chats for s in c.seconds]
        other = sum(v for k, v in ended.items() if k not in ("answered", "busy"))
        print(
            f"{count:>5} {ended['answered']:>8} {ended['busy']:>5} {other:>5} "
            f"{statistics.median(times):>6.2f} {pct(times, 0.95):>6.2f} {max(times):>6.2f} "
            f"{max(sum(c.seconds) for c in chats):>14.2f} {wall:>6.1f}  "
            + ("held" if not faults else f"FAILED: {faults[:3]}")
        )
        if other:
            codes = {k: v for k, v in ended.items() if k not in ("answered", "busy")}
            messages = Counter(m for c in chats for m in c.errors)
            print(f"      other errors: {codes}; {messages.most_common(3)}")


if __name__ == "__main__":
    main()
