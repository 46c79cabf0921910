"""Answers you can trust, measured on TechQA: quality, grounding, declining, turn time.

    .venv/bin/python bench/answers.py [--answerable 40] [--unanswerable 40] [--seed 0]
                                      [--mode quote|generate]
                                      [--save FILE.jsonl] [--load FILE.jsonl]

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

`--mode` picks how answers are made (`answers.mode`): quoted from the help center (the
default) or written by the model. With quotes, the "gate" below is the best quote's score
(`answers.min_score`), and every question gets its best quote before it is applied.
The pipeline runs with the "I don't know" gate off, so every question gets the model's
answer, and the gate's confidence is recorded: the figures apply the gate afterwards at the
bundled threshold (what the product does; a gated turn costs its retrieval time), then at
every threshold, printing the trade-off between unanswerable questions declined and
answerable ones wrongly declined. `--save` keeps the answers; `--load` prints a saved run's
figures without the model.
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
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from bench.turn_latency import pct
from bot.settings import AnswerSettings

MIN_SCORE = AnswerSettings().min_score  # quoted answers decline below it

if TYPE_CHECKING:
    from policies.grounding import GroundingChecker

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
    confidence: float  # the gate's: the probability that the help center answers
    gate_seconds: float  # retrieval alone: what a gated turn costs
    passages: list[str] = field(default_factory=list)
    checks: list[Any] = field(default_factory=list)

    def gated(self, threshold: float) -> bool:
        """Declined before the model: by the gate at `threshold`, or the pipeline's own
        "I don't know" (kind `no_answer`)."""
        return self.confidence < threshold or self.kind == "no_answer"

    def turn_seconds(self, threshold: float) -> float:
        return self.gate_seconds if self.confidence < threshold else self.seconds


def declined(answer: str, gated: bool) -> bool:
    return gated or not answer.strip() or bool(DECLINED.search(answer))


def figures(results: list[Result], grounded: bool, threshold: float) -> dict[str, float]:
    answerable = [r for r in results if r.answerable]
    unanswerable = [r for r in results if not r.answerable]

    def text(r: Result) -> str:
        if not grounded or r.gated(threshold):
            return r.answer
        return " ".join(c.text for c in r.checks if c.supported)

    def supported(r: Result) -> bool:
        if r.gated(threshold):
            return True
        return all(c.supported for c in r.checks) if not grounded else True

    def refused(r: Result) -> bool:
        return declined(text(r), r.gated(threshold))

    spoke = [r for r in results if not refused(r)]
    return {
        "f1": statistics.mean(f1(text(r), r.gold) for r in answerable) if answerable else 0.0,
        "supported": sum(supported(r) for r in spoke) / len(spoke) if spoke else 1.0,
        "unanswerable_declined": (
            sum(map(refused, unanswerable)) / len(unanswerable) if unanswerable else 0.0
        ),
        "answerable_declined": (
            sum(map(refused, answerable)) / len(answerable) if answerable else 0.0
        ),
    }


def sweep(results: list[Result], grounded: bool) -> list[tuple[float, dict[str, float]]]:
    """The figures at every gate threshold the confidences distinguish (and 0: no gate)."""
    cuts = sorted({0.0, *(r.confidence for r in results), 1.01})
    return [(cut, figures(results, grounded, cut)) for cut in cuts]


def trade_off(results: list[Result], threshold: float) -> None:
    """The gate's trade-off: for each share of unanswerable questions declined, the fewest
    answerable ones declined at any threshold; and whether the targets meet anywhere."""
    print("\n  the gate's threshold swept (the same answers; best threshold per row):")
    print(f"  {'unanswerable declined':<24} {'answerable wrongly declined':>28} {'threshold':>10}")
    for grounded in (False, True):
        curve = sweep(results, grounded)
        print(f"  grounding {'on' if grounded else 'off'}:")
        for want in (0.7, 0.8, 0.9, 0.95):
            ok = [(f["answerable_declined"], cut, f) for cut, f in curve
                  if f["unanswerable_declined"] >= want]  # fmt: skip
            if ok:
                cost, cut, f = min(ok, key=lambda row: row[:2])
                print(f"    >= {want:.0%} ({f['unanswerable_declined']:.1%}){'':<10} "
                      f"{cost:>20.1%} {cut:>17.3f}")  # fmt: skip
        met = [
            cut
            for cut, f in curve
            if f["unanswerable_declined"] >= 0.9 and f["answerable_declined"] <= 0.1
        ]
        print(
            f"    target (>= 90% declined, <= 10% wrongly): "
            f"{'met at ' + format(min(met), '.3f') if met else 'met at no threshold'}"
        )
    print(f"  (the bundled threshold is {threshold:.3f})")


def save(results: list[Result], path: Path) -> None:
    rows = [{**asdict(r), "checks": [asdict(c) for c in r.checks]} for r in results]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def load(path: Path) -> list[Result]:
    from policies.grounding import SentenceCheck

    results = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        checks = [SentenceCheck(**{**c, "missing": tuple(c["missing"])}) for c in row["checks"]]
        results.append(Result(**{**row, "checks": checks}))
    return results


async def run(args: argparse.Namespace) -> None:
    if args.load:
        from knowledge.abstain import AbstentionModel

        print_figures(load(args.load), AbstentionModel.load().threshold, args.seed)
        return
    from bot.components import build_components
    from bot.settings import Settings
    from bot.types import InboundMessage, Message
    from knowledge.embeddings import MiniLMEmbedder
    from knowledge.ingest import ingest
    from policies.grounding import GroundingChecker

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
            llm={"max_new_tokens": args.new_tokens},
            # The gate is off so every question gets the model's answer; the figures apply
            # it afterwards at the bundled threshold and at every other (`sweep`).
            knowledge={"index_dir": Path(tmp) / "index", "abstain": False},
            sessions={"rewrite_followups": "off", "summarize": False},
            # Quoted answers: every question gets its best quote (no decline), and the
            # "gate" swept below is the quote score (`answers.min_score`), not retrieval's.
            answers={"mode": args.mode, "min_score": 0.0, "sure_score": 0.0},
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
                started = time.perf_counter()
                found, confidence = await parts.retriever.search_with_confidence(
                    row["question"][:1500], settings.knowledge.top_k
                )
                if args.mode == "quote":
                    confidence = await quote_score(parts, row["question"][:1500])
                gate_seconds = time.perf_counter() - started
                passages = [p.text for p in found]
                result = Result(
                    row["question"], row["answerable"], row.get("gold_answer") or "",
                    final.text, final.kind, seconds, float(confidence or 0.0), gate_seconds,
                    passages,
                )  # fmt: skip
                if final.kind != "no_answer":
                    result.checks = checker.check_answer(final.text, passages)
                results.append(result)
                print(
                    f"  [{n}/{len(sample)}] {'A' if row['answerable'] else 'U'} "
                    f"p={result.confidence:.2f} {final.kind or 'answered':<9} {seconds:5.1f}s  "
                    f"{' '.join(final.text.split())[:90]!r}",
                    flush=True,
                )
        finally:
            threshold = MIN_SCORE if args.mode == "quote" else (parts.retriever.threshold or 0.0)
            await parts.close()
    if args.save:
        save(results, args.save)
    print_figures(results, threshold, args.seed, checker)


async def quote_score(parts: Any, question: str) -> float:
    """The best quote's score for `question`: what quoted answers decline on."""
    answers = parts.settings.answers
    passages, _ = await parts.retriever.search_articles(
        parts.retriever.fix_spelling(question), answers.articles, answers.sections_per_article
    )
    quotes = parts.manager.quotes
    return float(quotes.answer(question, passages).best) if quotes is not None else 0.0


def print_figures(
    results: list[Result], threshold: float, seed: int, checker: GroundingChecker | None = None
) -> None:
    """The figures at the gate's `threshold`, the trade-off at every threshold, and the
    grounding check's catch rate on planted numbers (with `checker`, or a new one)."""
    from knowledge.embeddings import MiniLMEmbedder
    from policies.grounding import GroundingChecker, plant_number

    off = figures(results, grounded=False, threshold=threshold)
    on = figures(results, grounded=True, threshold=threshold)
    times = [r.turn_seconds(threshold) for r in results]
    answerable = sum(r.answerable for r in results)
    print(
        f"\n{len(results)} questions: {answerable} answerable, {len(results) - answerable} not; "
        f"the gate at its bundled threshold {threshold:.3f}"
    )
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
        f"{statistics.median([r.gate_seconds for r in results if r.gated(threshold)] or [0]):.2f}"
        " s)"
    )
    trade_off(results, threshold)
    if checker is None:
        checker = GroundingChecker(MiniLMEmbedder())
        checker.warm_up()
    spoken = [r for r in results if not r.gated(threshold) and r.answer.strip()]
    caught = alarms = 0
    planting = random.Random(seed)
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
    parser.add_argument(
        "--mode",
        choices=["quote", "generate"],
        default="quote",
        help="answers.mode: quoted (the default; the swept threshold is the quote score) or "
        "written by the model (the swept threshold is the retrieval gate's)",
    )
    parser.add_argument("--save", type=Path, help="write every answer to this JSONL file")
    parser.add_argument("--load", type=Path, help="print the figures of a --save file")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
