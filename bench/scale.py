"""The sizing figures behind the README's scale note, measured on this machine.

    .venv/bin/python bench/scale.py [--sockets 1000] [--conversations 200] [--turns 10]

1. Memory per open chat websocket: a `switchboard serve` process (remote engine pointed at
   a scripted model, so the figure is the connection's, not a model's) holds N idle widget
   websockets, each after its `hello`; the process's resident memory is read before and
   after (/proc), and a turn's time is measured with all of them open, side by side with the
   same turn on an idle server (the baseline).
2. Redis memory per conversation: N conversations of T turns (customer-service sized
   messages) written through the real `RedisSessionStore` on DB 14; `MEMORY USAGE` of their
   keys, per conversation and per turn.

Figures, not a pass/fail test.
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
import os
import statistics
import tempfile
import time

import httpx
import redis
import websockets

from bench.turn_latency import pct
from tests.openai_server import serve_openai
from tests.processes import ScriptedAnswers, ServerProcess, free_port

REDIS = "redis://127.0.0.1:6379/14"
ANSWER = (
    "You can return unused items within **30 days** of delivery. Start the return under "
    "Account > Orders, print the free label, and drop the parcel at any carrier point. "
    "Refunds reach your original payment method within 5 business days."
)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def turn_seconds(base: str, runs: int = 20) -> list[float]:
    times = []
    with httpx.Client(timeout=60) as client:
        for _ in range(runs):
            started = time.perf_counter()
            reply = client.post(base + "/api/messages", json={"text": "How do I return an item?"})
            reply.raise_for_status()
            times.append(time.perf_counter() - started)
    return times


async def hold_sockets(url: str, count: int, hold: asyncio.Event, opened: asyncio.Event) -> None:
    sockets = []
    for _ in range(count):
        ws = await websockets.connect(url, open_timeout=30, ping_interval=None)
        await ws.send(json.dumps({"type": "hello"}))
        await ws.recv()
        sockets.append(ws)
    opened.set()
    await hold.wait()
    for ws in sockets:
        await ws.close()


def websockets_figure(count: int, tmp: Path) -> dict[str, float]:
    index = Path(os.environ.get("SWITCHBOARD_KNOWLEDGE__INDEX_DIR", "")) or None
    model = ScriptedAnswers({"return an item": ANSWER}, delay_s=0.002)
    with serve_openai(model, name="scripted") as llm:
        env = {
            **os.environ,
            "SWITCHBOARD_REDIS_URL": REDIS,
            "SWITCHBOARD_KEY_PREFIX": "sbscale:",
            "SWITCHBOARD_DATA_DIR": str(tmp / "data"),
            "SWITCHBOARD_LLM__ENGINE": "openai",
            "SWITCHBOARD_LLM__BASE_URL": llm.base_url,
            "SWITCHBOARD_LLM__MODEL": "scripted",
            "SWITCHBOARD_KNOWLEDGE__ABSTAIN": "false",
            "SWITCHBOARD_LOG_LEVEL": "warning",
            "HF_HUB_OFFLINE": "1",
            "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "",
        }
        if index:
            env["SWITCHBOARD_KNOWLEDGE__INDEX_DIR"] = str(index)
        server = ServerProcess(env, free_port(), tmp / "server.log")
        server.start()
        try:
            server.wait_ready()
            assert server.proc is not None
            idle = turn_seconds(server.url)
            before = rss_kb(server.proc.pid)

            async def run() -> tuple[int, list[float]]:
                hold, opened = asyncio.Event(), asyncio.Event()
                url = server.url.replace("http", "ws") + "/ws/chat"
                task = asyncio.create_task(hold_sockets(url, count, hold, opened))
                await opened.wait()
                await asyncio.sleep(1)
                assert server.proc is not None
                held = rss_kb(server.proc.pid)
                busy = await asyncio.to_thread(turn_seconds, server.url)
                hold.set()
                await task
                return held, busy

            held, busy = asyncio.run(run())
        finally:
            server.stop()
    return {
        "sockets": count,
        "rss_before_mb": before / 1024,
        "rss_with_sockets_mb": held / 1024,
        "kb_per_socket": (held - before) / count,
        "turn_idle_median_ms": statistics.median(idle) * 1000,
        "turn_idle_p95_ms": pct(idle, 0.95) * 1000,
        "turn_with_sockets_median_ms": statistics.median(busy) * 1000,
        "turn_with_sockets_p95_ms": pct(busy, 0.95) * 1000,
    }


def redis_figure(conversations: int, turns: int) -> dict[str, float]:
    from bot.sessions import RedisSessionStore
    from bot.settings import SessionSettings
    from bot.types import Turn

    client = redis.Redis.from_url(REDIS)
    client.flushdb()

    async def fill() -> list[str]:
        store = RedisSessionStore(REDIS, SessionSettings(), prefix="sbscale:")
        await store.start()
        ids = []
        try:
            for _ in range(conversations):
                session = await store.create("web", "visitor-123")
                for n in range(turns // 2):
                    question = Turn("user", f"How long do I have to return an item? ({n})")
                    answer = Turn("assistant", ANSWER)
                    await store.append(session.id, [question, answer])
                ids.append(session.id)
        finally:
            await store.close()
        return ids

    ids = asyncio.run(fill())
    total = 0
    for cid in ids:
        for key in (f"sbscale:conv:{cid}", f"sbscale:conv:{cid}:turns"):
            total += int(client.memory_usage(key, samples=0) or 0)
    client.flushdb()
    per_conversation = total / conversations
    return {
        "conversations": conversations,
        "turns_each": turns,
        "bytes_per_conversation": per_conversation,
        "bytes_per_turn": per_conversation / turns,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--turns", type=int, default=10)
    args = parser.parse_args()
    print("1. open chat websockets on one API process (remote engine, scripted model):")
    with tempfile.TemporaryDirectory() as tmp:
        ws = websockets_figure(args.sockets, Path(tmp))
    print(
        f"  {ws['sockets']} idle websockets: RSS {ws['rss_before_mb']:.0f} MB -> "
        f"{ws['rss_with_sockets_mb']:.0f} MB, {ws['kb_per_socket']:.1f} KB per socket"
    )
    print(
        f"  a REST turn: median {ws['turn_idle_median_ms']:.0f} ms, p95 "
        f"{ws['turn_idle_p95_ms']:.0f} ms on an idle server (baseline); with the sockets open "
        f"median {ws['turn_with_sockets_median_ms']:.0f} ms, p95 "
        f"{ws['turn_with_sockets_p95_ms']:.0f} ms "
        f"({ws['turn_with_sockets_median_ms'] / ws['turn_idle_median_ms']:.2f}x)"
    )
    print(f"\n2. Redis memory per conversation ({args.turns} turns, real RedisSessionStore):")
    rd = redis_figure(args.conversations, args.turns)
    print(
        f"  {rd['bytes_per_conversation'] / 1024:.1f} KB per conversation, "
        f"{rd['bytes_per_turn']:.0f} bytes per turn ({rd['conversations']} conversations)"
    )


if __name__ == "__main__":
    main()
