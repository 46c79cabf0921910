"""Turns under a burst and beside a flooding client, with and without admission control.

    .venv/bin/python bench/admission.py [--chats 32] [--turns 3] [--flood 45] [--polite 12]

A real `switchboard serve` process (Redis, presidio, MiniLM, the demo help center indexed
into a temporary folder, answers quoted from it) with a scripted model behind the OpenAI
engine (instant: the figures are the pipeline's, not a model's). Clients are told apart by
`X-Forwarded-For` (the server trusts loopback as its proxy), as customers behind an ingress
are. Two servers, side by side in one run:

- **admission on** (the defaults: bot/admission.py), and `on/N` with `--active N,...` slots;
- **admission off** (the baseline: every limit so high that every turn runs at once).

Each prints:
1. burst: `--chats` conversations from as many clients at once, `--turns` turns each (REST);
   every turn's time, the slowest conversation, and how many turns failed;
2. flood: one client keeps `--flood` turns in flight while a polite client (another address)
   asks `--polite` questions one after another; the polite client's median and p95 beside
   its figures alone on the same server, and how the flooder's turns ended.

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
import collections
import os
import statistics
import tempfile
import time
from typing import Any

import httpx

from bench.turn_latency import pct
from tests.openai_server import serve_openai
from tests.processes import ScriptedAnswers, ServerProcess, free_port

REDIS = "redis://127.0.0.1:6379/14"
ANSWER = "You can return unused items within 30 days of delivery."
QUESTIONS = [
    "How long do I have to return an item?",
    "How much does express shipping cost?",
    "Can I change my delivery address?",
    "How long does a refund take?",
]
OFF = {  # the baseline: no line, every turn at once
    "SWITCHBOARD_ADMISSION__ACTIVE": "100000",
    "SWITCHBOARD_ADMISSION__WAITING": "100000",
    "SWITCHBOARD_ADMISSION__PER_CLIENT": "100000",
}


async def turn(
    client: httpx.AsyncClient, base: str, ip: str, text: str, state: dict[str, str]
) -> tuple[float, int]:
    payload: dict[str, Any] = {"text": text}
    if state:
        payload |= state
    started = time.perf_counter()
    try:
        reply = await client.post(
            base + "/api/messages", json=payload, headers={"X-Forwarded-For": ip}
        )
    except httpx.HTTPError:
        return time.perf_counter() - started, 0
    if reply.status_code == 200:
        body = reply.json()
        state.update(
            conversation_id=body["conversation_id"],
            conversation_token=body["conversation_token"],
        )
    return time.perf_counter() - started, reply.status_code


async def chat(
    client: httpx.AsyncClient, base: str, ip: str, turns: int
) -> list[tuple[float, int]]:
    state: dict[str, str] = {}
    return [
        await turn(client, base, ip, QUESTIONS[i % len(QUESTIONS)], state) for i in range(turns)
    ]


async def burst(base: str, chats: int, turns: int) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=180, limits=httpx.Limits(max_connections=500)) as c:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(chat(c, base, f"10.1.{i // 250}.{i % 250 + 1}", turns) for i in range(chats))
        )
        wall = time.perf_counter() - started
    times = [t for conv in results for t, status in conv if status == 200]
    failed = collections.Counter(status for conv in results for _, status in conv if status != 200)
    slowest = max(sum(t for t, _ in conv) for conv in results)
    return {
        "ok": len(times),
        "failed": dict(failed),
        "p50": statistics.median(times) if times else float("nan"),
        "p95": pct(times, 0.95) if times else float("nan"),
        "max": max(times) if times else float("nan"),
        "slowest_chat": slowest,
        "wall": wall,
    }


async def polite_alone(base: str, count: int) -> list[float]:
    async with httpx.AsyncClient(timeout=180) as c:
        state: dict[str, str] = {}
        out = []
        for i in range(count):
            seconds, status = await turn(c, base, "10.9.0.1", QUESTIONS[i % 4], state)
            if status == 200:
                out.append(seconds)
        return out


async def flood(base: str, in_flight: int, polite: int) -> dict[str, Any]:
    stop = asyncio.Event()
    ended: collections.Counter[int] = collections.Counter()

    async def flooder(c: httpx.AsyncClient) -> None:
        while not stop.is_set():
            _, status = await turn(c, base, "10.66.0.1", QUESTIONS[0], {})
            ended[status] += 1
            if status != 200:
                await asyncio.sleep(0.05)  # a flooder, but not a tight error loop

    async with httpx.AsyncClient(timeout=180, limits=httpx.Limits(max_connections=500)) as c:
        tasks = [asyncio.create_task(flooder(c)) for _ in range(in_flight)]
        await asyncio.sleep(2)  # the flood is on
        started = time.perf_counter()
        times = await polite_alone(base, polite)
        wall = time.perf_counter() - started
        stop.set()
        await asyncio.gather(*tasks)
    return {"polite": times, "polite_wall": wall, "flooder": dict(ended)}


def demo_index(tmp: Path) -> Path:
    """demo/kb indexed with MiniLM under `tmp` (once per folder)."""
    from knowledge.embeddings import MiniLMEmbedder
    from knowledge.ingest import ingest

    target = tmp / "demo-index"
    if not (target / "manifest.json").exists():
        ingest(ROOT / "demo" / "kb", target, MiniLMEmbedder(), progress=False)
    return target


def run_server(tmp: Path, llm_url: str, extra: dict[str, str], name: str) -> ServerProcess:
    env = {
        **os.environ,
        "SWITCHBOARD_REDIS_URL": REDIS,
        "SWITCHBOARD_KEY_PREFIX": f"sbadm{name}:",
        "SWITCHBOARD_DATA_DIR": str(tmp / name),
        "SWITCHBOARD_LLM__ENGINE": "openai",
        "SWITCHBOARD_LLM__BASE_URL": llm_url,
        "SWITCHBOARD_LLM__MODEL": "scripted",
        "SWITCHBOARD_POLICY_FILE": str(ROOT / "demo" / "policy.yaml"),
        "SWITCHBOARD_KNOWLEDGE__DOCUMENTS_DIR": str(ROOT / "demo" / "kb"),
        "SWITCHBOARD_KNOWLEDGE__ABSTENTION_MODEL": str(ROOT / "demo" / "abstain.json"),
        "SWITCHBOARD_LOG_LEVEL": "warning",
        "HF_HUB_OFFLINE": "1",
        "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "",
        **extra,
    }
    # The demo help center's index: without one the server answers every turn from the
    # (instant, scripted) model alone, and the figures would miss the quote pipeline.
    env["SWITCHBOARD_KNOWLEDGE__INDEX_DIR"] = os.environ.get(
        "SWITCHBOARD_KNOWLEDGE__INDEX_DIR"
    ) or str(demo_index(tmp))
    server = ServerProcess(env, free_port(), tmp / f"{name}.log")
    server.start()
    server.wait_ready()
    return server


def measure(base: str, args: argparse.Namespace) -> dict[str, Any]:
    asyncio.run(polite_alone(base, 4))  # warm
    alone = asyncio.run(polite_alone(base, args.polite))
    bursts = asyncio.run(burst(base, args.chats, args.turns))
    flooded = asyncio.run(flood(base, args.flood, args.polite))
    return {"alone": alone, "burst": bursts, "flood": flooded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=32)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--flood", type=int, default=45)
    parser.add_argument("--polite", type=int, default=12)
    parser.add_argument(
        "--active",
        default="",
        help="also run admission with these slot counts, e.g. 2,4,8 (default: the default only)",
    )
    args = parser.parse_args()
    model = ScriptedAnswers({"": ANSWER}, delay_s=0.0)
    figures: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp, serve_openai(model, name="scripted") as llm:
        configs = [("on", {})]
        configs += [
            (f"on/{n}", {"SWITCHBOARD_ADMISSION__ACTIVE": n}) for n in args.active.split(",") if n
        ]
        for name, extra in [*configs, ("off", OFF)]:
            server = run_server(Path(tmp), llm.base_url, extra, name.replace("/", "-"))
            try:
                figures[name] = measure(server.url, args)
            finally:
                server.stop()
    print(f"load average: {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs")
    print(f"\nburst: {args.chats} chats x {args.turns} turns at once (REST, scripted model)")
    header = ("admission", "ok", "failed", "p50 s", "p95 s", "max s", "slowest chat s", "wall s")
    print("{:<10} {:>4} {:>14} {:>7} {:>7} {:>7} {:>15} {:>7}".format(*header))
    for name, f in figures.items():
        b = f["burst"]
        failed = str(b["failed"] or "-")
        cells = (b["p50"], b["p95"], b["max"], b["slowest_chat"], b["wall"])
        print(f"{name:<10} {b['ok']:>4} {failed:>14} " + " ".join(f"{c:>7.2f}" for c in cells))
    print(
        f"\nflood: one client with {args.flood} turns in flight; a polite client asks "
        f"{args.polite} questions one after another"
    )
    header = ("admission", "alone p50", "alone p95", "flooded p50", "flooded p95", "p95 ratio")
    print("{:<10} {:>10} {:>10} {:>12} {:>12} {:>10}  flooder's turns".format(*header))
    for name, f in figures.items():
        alone, flooded = f["alone"], f["flood"]["polite"]
        if not flooded:
            print(f"{name:<10} polite client got no answer; flooder {f['flood']['flooder']}")
            continue
        cells = (
            statistics.median(alone),
            pct(alone, 0.95),
            statistics.median(flooded),
            pct(flooded, 0.95),
            pct(flooded, 0.95) / pct(alone, 0.95),
        )
        answered = f"({len(flooded)}/{args.polite} polite answered)"
        print(
            "{:<10} {:>10.2f} {:>10.2f} {:>12.2f} {:>12.2f} {:>10.2f}".format(name, *cells)
            + f"  {f['flood']['flooder']} {answered}"
        )


if __name__ == "__main__":
    main()
