"""Answers you can trust, measured on TechQA: quality, grounding, declining, turn time.

    .venv/bin/python bench/answers.py [--answerable 40] [--unanswerable 40] [--seed 0]

The TechQA help center (../shared/eval/techqa/kb) is indexed with MiniLM; questions go
through the real pipeline in-process (input policy, hybrid retrieval with the bundled
TechQA-calibrated "I don't know" gate, the default model, the output policy): a sample of
the answerable questions whose gold answer is inside the knowledge-base text, and of the 96
unanswerable ones. For each answer:

- token-level F1 against the gold answer (SQuAD normalisation), answerable questions only;
- whether the grounding check marks every claim supported by the passages retrieved;
- declined: the "I don't know" gate answered, or the model said it does not know.

Printed twice, side by side from the same answers: with the grounding check off (the answer
as generated) and on (its `drop` action: unsupported sentences removed; an answer left empty
counts as declined). Then the grounding check's catch rate on answers with a planted number
that the passages do not contain, and its false alarms on the same answers unplanted.
Medians and p95 of turn time. Figures, not a pass/fail test.
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
import random
import re
import statistics
import string
import tempfile
import time
from collections import Counter
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from bench.turn_latency import pct

TECHQA = ROOT.parent / "shared" / "eval" / "techqa"
DECLINED = re.compile(
    r"\b(don't know|do not know|not sure|cannot find|can't find|no information|not covered|"
    r"does not (?:contain|say|mention)|doesn't (?:contain|say|mention)|unable to (?:find|answer))",
    re.IGNORECASE,
)


def normalize(text: str) -> list[str]:
    text = text.lower()
    text = "".join(c for c in text if c not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return text.split()


def f1(prediction: str, gold: str) -> float:
    said, wanted = normalize(prediction), normalize(gold)
    common = Counter(said) & Counter(wanted)
    same = sum(common.values())
    if not said or not wanted or same == 0:
        return 0.0
    precision, recall = same / len(said), same / len(wanted)
    return 2 * precision * recall / (precision + recall)


@dataclass
class Result:
    question: str
    answerable: bool
    gold: str
    answer: str
    kind: str
    seconds: float
    passages: list[str] = field(default_factory=list)
    checks: list[Any] = field(default_factory=list)

    @property
    def gated(self) -> bool:
        return self.kind == "no_answer"


def declined(answer: str, gated: bool) -> bool:
    return gated or not answer.strip() or bool(DECLINED.search(answer))


def figures(results: list[Result], grounded: bool) -> dict[str, float]:
    answerable = [r for r in results if r.answerable]
    unanswerable = [r for r in results if not r.answerable]

    def text(r: Result) -> str:
        if not grounded or r.gated:
            return r.answer
        return " ".join(c.text for c in r.checks if c.supported)

    def supported(r: Result) -> bool:
        if r.gated:
            return True
        return all(c.supported for c in r.checks) if not grounded else True

    spoke = [r for r in results if not declined(text(r), r.gated)]
    return {
        "f1": statistics.mean(f1(text(r), r.gold) for r in answerable) if answerable else 0.0,
        "supported": sum(supported(r) for r in spoke) / len(spoke) if spoke else 1.0,
        "unanswerable_declined": (
            sum(declined(text(r), r.gated) for r in unanswerable) / len(unanswerable)
            if unanswerable
            else 0.0
        ),
        "answerable_declined": (
            sum(declined(text(r), r.gated) for r in answerable) / len(answerable)
            if answerable
            else 0.0
        ),
    }


async def run(args: argparse.Namespace) -> None:
    from bot.components import build_components
    from bot.settings import Settings
    from bot.types import InboundMessage, Message
    from knowledge.embeddings import MiniLMEmbedder
    from knowledge.ingest import ingest
    from policies.grounding import GroundingChecker, plant_number

    rows = [json.loads(line) for line in (TECHQA / "questions.jsonl").open()]
    rng = random.Random(args.seed)
    answerable = [r for r in rows if r["answerable"] and r.get("answer_span_in_kb_text")]
    unanswerable = [r for r in rows if not r["answerable"]]
    sample = rng.sample(answerable, min(args.answerable, len(answerable))) + rng.sample(
        unanswerable, min(args.unanswerable, len(unanswerable))
    )
    with tempfile.TemporaryDirectory(prefix="bench-answers-") as tmp:
        embedder = MiniLMEmbedder()
        embedder.warm_up()
        report = ingest(TECHQA / "kb", Path(tmp) / "index", embedder, progress=False)
        print(f"TechQA help center: {report.documents} documents, {report.chunks} chunks")
        # The pipeline runs without the grounding check, so "off" is the answer as generated;
        # "on" applies the check's `drop` action to the same answers.
        import yaml

        from policies.schema import default_policy_path

        policy = yaml.safe_load(default_policy_path().read_text())
        policy["grounding"] = {"enabled": False}
        (Path(tmp) / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
        settings = Settings(
            policy_file=Path(tmp) / "policy.yaml",
            data_dir=Path(tmp),
            company_name="the software company",
            knowledge={"index_dir": Path(tmp) / "index"},
            llm={"max_new_tokens": args.new_tokens},
            sessions={"rewrite_followups": "off", "summarize": False},
        )
        parts = build_components(settings)
        await parts.start()
        checker = GroundingChecker(parts.embedder or embedder)
        checker.warm_up()
        results: list[Result] = []
        try:
            for n, row in enumerate(sample, 1):
                started = time.perf_counter()
                final: Message | None = None
                inbound = InboundMessage(row["question"][:1500], "bench")
                async with aclosing(parts.manager.respond(inbound)) as events:
                    async for event in events:
                        if isinstance(event, Message):
                            final = event
                seconds = time.perf_counter() - started
                assert final is not None
                found, _ = await parts.retriever.search_with_confidence(
                    row["question"][:1500], settings.knowledge.top_k
                )
                passages = [p.text for p in found]
                result = Result(
                    row["question"], row["answerable"], row.get("gold_answer") or "",
                    final.text, final.kind, seconds, passages,
                )  # fmt: skip
                if not result.gated:
                    result.checks = checker.check_answer(final.text, passages)
                results.append(result)
                print(
                    f"  [{n}/{len(sample)}] {'A' if row['answerable'] else 'U'} "
                    f"{final.kind or 'answered':<9} {seconds:5.1f}s  "
                    f"{' '.join(final.text.split())[:90]!r}",
                    flush=True,
                )
        finally:
            await parts.close()

    off, on = figures(results, grounded=False), figures(results, grounded=True)
    times = [r.seconds for r in results]
    print(f"\n{len(results)} questions: {args.answerable} answerable, {args.unanswerable} not")
    print(f"  {'':<44} {'grounding off':>14} {'grounding on':>14}")
    for key, label in (
        ("f1", "token F1 vs the gold answer (answerable)"),
        ("supported", "answers whose claims are all supported"),
        ("unanswerable_declined", "unanswerable questions declined"),
        ("answerable_declined", "answerable questions wrongly declined"),
    ):
        print(f"  {label:<44} {off[key]:>14.3f} {on[key]:>14.3f}")
    print(
        f"  turn time: median {statistics.median(times):.1f} s, p95 {pct(times, 0.95):.1f} s "
        f"(gate answers: median "
        f"{statistics.median([r.seconds for r in results if r.gated] or [0]):.2f} s)"
    )
    spoken = [r for r in results if not r.gated and r.answer.strip()]
    caught = alarms = 0
    planting = random.Random(args.seed)
    for r in spoken:
        planted = plant_number(r.answer, r.passages, planting)
        caught += not all(c.supported for c in checker.check_answer(planted, r.passages))
        alarms += not all(c.supported for c in r.checks)
    if spoken:
        print(
            f"  planted numbers: the grounding check caught {caught}/{len(spoken)} "
            f"({caught / len(spoken):.0%}); on the same answers unplanted it flagged "
            f"{alarms}/{len(spoken)} ({alarms / len(spoken):.0%})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answerable", type=int, default=40)
    parser.add_argument("--unanswerable", type=int, default=40)
    parser.add_argument("--new-tokens", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
