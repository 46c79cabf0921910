"""Safety on data the rules were not written on: injection by family, harmful requests,
action claims, benign false blocks.

    .venv/bin/python bench/safety.py

The sets are in bench/data/safety/ (written for this benchmark; see its README): English
attacks by technique, the same techniques in six other languages, masked attacks (leetspeak,
spaced letters, look-alike letters, ROT13, base64, hex, reversed), customers who quote
attacks with a real question, ordinary customers in other languages, harmful requests with
their look-alikes, and answers that do or do not claim an action. Every set is split in two
halves by a hash of the text: the rules were written looking at the "tune" half only; the
"held-out" half is the figure to trust. Benign false blocks are also measured on the real
customer utterances in /work/shared/eval/utterances (BANKING77, CLINC150, DSTC10), when there.

"Stopped by the policy" counts the injection stage's own verdict (rules and classifier), not
the confidence gate: a blocked message, or (for quoted attacks) the quote removed.
Prints figures; not a pass/fail test.
"""

from __future__ import annotations

import sys
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

import hashlib
import json
import statistics
import time
from typing import Any

from policies.base import Context
from policies.harm import ClaimsRules, ClaimsStage, HarmRules, HarmStage
from policies.injection import InjectionRules, InjectionStage
from policies.verdicts import Allow, Block

DATA = _BENCH / "data" / "safety"
UTTERANCES = Path("/work/shared/eval/utterances")


def half(text: str) -> str:
    return "tune" if hashlib.sha256(text.encode()).digest()[0] % 2 == 0 else "held-out"


def rows(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / f"{name}.jsonl").open(encoding="utf-8")]


def rate(hits: list[bool]) -> str:
    return f"{100 * sum(hits) / len(hits):5.1f}% ({sum(hits)}/{len(hits)})" if hits else "-"


def stopped(verdict: object) -> bool:
    return isinstance(verdict, Block) or (
        isinstance(verdict, Allow) and any(f.rule == "quoted-attack" for f in verdict.findings)
    )


def main() -> None:
    stage = InjectionStage(InjectionRules(), "blocked")
    stage.warm_up()
    rules_only = InjectionStage(InjectionRules(classifier=False, meaning=False), "blocked")
    context = Context("input")
    timings: list[float] = []

    def judge(s: InjectionStage, text: str) -> object:
        started = time.perf_counter()
        verdict = s.check(text, context)
        timings.append(time.perf_counter() - started)
        return verdict

    print("First set (bench/data/safety/*.jsonl): the rules were first written on its tune half,")
    print("then on both halves, and the meaning classifiers are trained on all of it; its figures")
    print("show what is covered, not how it generalises: the second set below does that.")
    print("Injection: share stopped by the policy, all detectors / rules alone")
    print(f"{'set':34} {'half 1':>18} {'half 0':>18}   rules alone (half 1)")
    for name, attack in (
        ("attacks_written", True),
        ("attacks_multilingual", True),
        ("attacks_obfuscated", True),
        ("benign_quoting", False),
        ("benign_multilingual", False),
    ):
        data = rows(name)
        by: dict[str, list[bool]] = {"held-out": [], "tune": []}
        alone: list[bool] = []
        for row in data:
            verdict = judge(stage, row["text"])
            hit = stopped(verdict) if attack else isinstance(verdict, Block)
            by[half(row["text"])].append(hit)
            if half(row["text"]) == "held-out":
                v2 = rules_only.check(row["text"], context)
                alone.append(stopped(v2) if attack else isinstance(v2, Block))
        label = name + (" (blocked = false)" if not attack else "")
        print(f"{label:34} {rate(by['held-out']):>18} {rate(by['tune']):>18}   {rate(alone)}")
    for lang in ("fr", "de", "es", "it", "pt", "nl"):
        hits = [
            stopped(stage.check(r["text"], context))
            for r in rows("attacks_multilingual")
            if r["lang"] == lang and half(r["text"]) == "held-out"
        ]
        print(f"  multilingual held-out, {lang}: {rate(hits)}")
    techniques: dict[str, list[bool]] = {}
    for r in rows("attacks_obfuscated"):
        if half(r["text"]) == "held-out":
            techniques.setdefault(r["technique"], []).append(
                stopped(stage.check(r["text"], context))
            )
    print(
        "  obfuscated held-out by technique: "
        + ", ".join(f"{t} {sum(h)}/{len(h)}" for t, h in sorted(techniques.items()))
    )
    if UTTERANCES.exists():
        for path in sorted(UTTERANCES.glob("*.jsonl")):
            texts = [json.loads(line)["text"] for line in path.open(encoding="utf-8")]
            blocked = [isinstance(judge(stage, t), Block) for t in texts]
            print(f"benign {path.stem:30} false blocks {rate(blocked)}")
    else:
        print(f"({UTTERANCES} not found: the real-utterance false-block rates are skipped)")
    print(
        f"latency per message: median {1000 * statistics.median(timings):.2f} ms,"
        f" p95 {1000 * sorted(timings)[int(0.95 * len(timings))]:.2f} ms ({len(timings)} messages)"
    )

    harm = HarmStage(HarmRules())
    harm.warm_up()
    print("\nHarmful requests: share declined (half 1 | half 0)")
    for name, want in (("harmful", True), ("harmless_lookalikes", False)):
        by = {"held-out": [], "tune": []}
        cats: dict[str, list[bool]] = {}
        for r in rows(name):
            hit = isinstance(harm.check(r["text"], context), Block)
            by[half(r["text"])].append(hit)
            if want and half(r["text"]) == "held-out":
                cats.setdefault(r["category"], []).append(hit)
        print(f"{name:34} {rate(by['held-out']):>18} {rate(by['tune']):>18}")
        if cats:
            print(
                "  held-out by category: "
                + ", ".join(f"{c} {sum(h)}/{len(h)}" for c, h in sorted(cats.items()))
            )
    if UTTERANCES.exists():
        texts = [
            json.loads(line)["text"]
            for path in sorted(UTTERANCES.glob("*.jsonl"))
            for line in path.open(encoding="utf-8")
        ]
        declined = [isinstance(harm.check(t, context), Block) for t in texts]
        print(f"{'real customer utterances':34} false declines {rate(declined)}")

    second_set(stage, harm, context)
    whole_input_policy()

    claims = ClaimsStage(ClaimsRules())
    print("\nAction claims in answers: share judged right (held-out | tune)")
    print("(the claims rules were written on the tune half only)")
    for want in (True, False):
        by = {"held-out": [], "tune": []}
        for r in rows("action_claims"):
            if r["claims_action"] == want:
                by[half(r["text"])].append(claims.claims(r["text"]) == want)
        label = "claims an action: rewritten" if want else "no claim: left alone"
        print(f"{label:34} {rate(by['held-out']):>18} {rate(by['tune']):>18}")


def second_set(stage: InjectionStage, harm: HarmStage, context: Context) -> None:
    """The second set, written blind after the rules and classifiers (never trained on)."""
    folder = DATA / "heldout2"
    if not folder.exists():
        return
    load = lambda name: [json.loads(line) for line in (folder / name).open(encoding="utf-8")]  # noqa: E731
    print("\nSecond blind set (bench/data/safety/heldout2): written after the rules and the")
    print("classifiers, never used to write or train them")
    groups: dict[str, list[bool]] = {}
    for row in load("attacks.jsonl"):
        technique = row["technique"]
        obfuscated = row["lang"] == "en" and technique.startswith(("obf", "enc"))
        group = (
            "masked (English)"
            if obfuscated
            else ("English" if row["lang"] == "en" else "other languages")
        )
        groups.setdefault(group, []).append(stopped(stage.check(row["text"], context)))
    for group, hits in sorted(groups.items()):
        print(f"  attacks stopped by the policy, {group:22} {rate(hits)}")
    print(
        f"  attacks stopped by the policy, {'all':22}"
        f" {rate([h for v in groups.values() for h in v])}"
    )
    kinds: dict[str, list[bool]] = {}
    for row in load("benign.jsonl"):
        blocked = isinstance(stage.check(row["text"], context), Block) or isinstance(
            harm.check(row["text"], context), Block
        )
        kinds.setdefault(row["kind"], []).append(blocked)
    for kind, hits in sorted(kinds.items()):
        print(f"  ordinary messages ({kind}) falsely blocked: {rate(hits)}")
    cats: dict[str, list[bool]] = {}
    for row in load("harmful.jsonl"):
        cats.setdefault(row["category"], []).append(
            isinstance(harm.check(row["text"], context), Block)
        )
    print(
        f"  harmful requests declined: {rate([h for v in cats.values() for h in v])}  ("
        + ", ".join(f"{c} {sum(h)}/{len(h)}" for c, h in sorted(cats.items()))
        + ")"
    )
    lookalikes = [isinstance(harm.check(r["text"], context), Block) for r in load("harmless.jsonl")]
    print(f"  harmless look-alikes falsely declined: {rate(lookalikes)}")


def whole_input_policy() -> None:
    """Ordinary messages through every input stage of the bundled policy (PII, injection,
    harm, toxicity, topics): what a real customer meets."""
    import asyncio

    from policies.engine import PolicyEngine

    engine = PolicyEngine.from_file()
    engine.warm_up()
    sets = {
        "customers in other languages (fr/de/es/it/pt)": [
            r["text"] for r in rows("benign_multilingual")
        ]
        + [r["text"] for r in rows("questions_multilingual")],
    }
    second = DATA / "heldout2"
    if second.exists():
        for name in ("benign.jsonl", "harmless.jsonl"):
            sets[f"heldout2/{name}"] = [
                json.loads(line)["text"] for line in (second / name).open(encoding="utf-8")
            ]
    print("\nThe whole input policy (policies/default.yaml) on ordinary messages: falsely blocked")

    async def judge(texts: list[str]) -> list[tuple[bool, str]]:
        out = []
        for text in texts:
            verdict = await engine.check_input(text, Context("input"))
            stages = sorted({f.stage for f in verdict.findings if f.action == "block"})
            out.append((isinstance(verdict, Block), ",".join(stages)))
        return out

    for name, texts in sets.items():
        results = asyncio.run(judge(texts))
        by_stage: dict[str, int] = {}
        for blocked, stages in results:
            if blocked:
                by_stage[stages or "?"] = by_stage.get(stages or "?", 0) + 1
        print(f"  {name:48} {rate([b for b, _ in results])}  {by_stage or ''}")
    engine.close()


if __name__ == "__main__":
    main()
