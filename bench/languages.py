"""Customers who write in French, German or Spanish, through the demo's whole pipeline.

    .venv/bin/python bench/languages.py [--redis redis://127.0.0.1:6379/14]

The questions are bench/data/safety/questions_multilingual.jsonl (45 questions the demo help
center answers, each with its English wording, its article and the facts a right answer
holds) and, when present, bench/data/safety/heldout2/questions_unanswerable_foreign.jsonl
(questions it does not answer). Each is asked as a new conversation of `make demo`'s
configuration (the help center indexed, the demo policy), and again in English for the
answerable ones. Every reply is put in one class:

- correct: it holds every fact of the question (answerable only);
- routed: the honest "I can only answer in English for now", in the customer's language,
  with the offer of a person;
- English "I don't know": the help center's English no-answer reply;
- wrong: anything else (an answer without the facts, a block).

The target (issue 23): never the English "I don't know" where the English question is
answered. Flushes the Redis database of the URL (14 by default). Prints figures; not a
pass/fail test.
"""

from __future__ import annotations

import sys
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))
sys.path.insert(1, str(_BENCH))

import argparse
import asyncio
import json
import statistics
import tempfile
from collections import Counter
from typing import Any

from support_answers import KB, ask, demo_settings, isolated_settings  # type: ignore[import-not-found]

DATA = _BENCH / "data" / "safety"


def classify(reply: dict[str, Any], facts: list[str], routed: str, no_answer: str) -> str:
    text = " ".join(reply["answer"].replace("*", "").split()).lower()
    if facts and all(f.replace("*", "").lower() in text for f in facts):
        return "correct"
    if reply["answer"].startswith(routed[:20]):
        return "routed"
    if reply["answer"].startswith(no_answer[:30]):
        return "english-idk"
    return "wrong"


async def main(redis_url: str) -> None:
    import redis

    from bot.components import build_components
    from bot.language import only_in
    from knowledge.embeddings import MiniLMEmbedder
    from knowledge.ingest import ingest

    answerable = [json.loads(line) for line in (DATA / "questions_multilingual.jsonl").open()]
    unanswerable_file = DATA / "heldout2" / "questions_unanswerable_foreign.jsonl"
    unanswerable = (
        [json.loads(line) for line in unanswerable_file.open()]
        if unanswerable_file.exists()
        else []
    )
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    with tempfile.TemporaryDirectory(prefix="bench-languages-") as tmp:
        embedder = MiniLMEmbedder()
        embedder.warm_up()
        index = Path(tmp) / "index"
        ingest(KB, index, embedder, progress=False)
        settings = isolated_settings(demo_settings(Path(tmp) / "data", index, redis_url, None))
        parts = build_components(settings)
        await parts.start()
        no_answer = parts.manager.no_answer_text("web")
        results: dict[str, Counter[str]] = {}
        seconds: list[float] = []
        try:
            for row in answerable:
                for lang, text in (
                    (row["lang"], row["text"]),
                    ("en (same questions)", row["english"]),
                ):
                    reply = await ask(parts, text, None)
                    seconds.append(reply["seconds"])
                    routed = only_in("en", row["lang"] if lang != "en (same questions)" else "en")
                    kind = classify(reply, row["answer_facts"], routed, no_answer)
                    results.setdefault(f"answerable {lang}", Counter())[kind] += 1
            for row in unanswerable:
                reply = await ask(parts, row["text"], None)
                kind = classify(reply, [], only_in("en", row["lang"]), no_answer)
                results.setdefault(f"unanswerable {row['lang']}", Counter())[kind] += 1
        finally:
            await parts.close()
    print(f"{'set':32} {'n':>4} {'correct':>8} {'routed':>8} {'EN idk':>8} {'wrong':>8}")
    for name, counts in sorted(results.items()):
        n = sum(counts.values())
        cells = [
            f"{100 * counts[k] / n:7.1f}%" for k in ("correct", "routed", "english-idk", "wrong")
        ]
        print(f"{name:32} {n:>4} " + " ".join(cells))
    print(f"seconds per reply: median {statistics.median(seconds):.2f}, "
          f"p95 {sorted(seconds)[int(0.95 * len(seconds))]:.2f}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    asyncio.run(main(parser.parse_args().redis))
