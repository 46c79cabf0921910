"""Ranking and abstention metrics, question files and the fit/report split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knowledge.abstain import FEATURES
from knowledge.evaluate import (
    Outcome,
    Question,
    auroc,
    hit_at,
    load_questions,
    recall_at,
    reciprocal_rank,
    split,
    summarize,
)

GOLD = frozenset({"b", "d"})


@pytest.mark.parametrize(
    ("ranked", "hit1", "hit3", "recall3", "rr"),
    [
        (["b", "x", "d"], 1.0, 1.0, 1.0, 1.0),
        (["x", "x", "d"], 0.0, 1.0, 0.5, 1 / 3),
        (["x", "y", "z", "b"], 0.0, 0.0, 0.0, 0.25),
        ([], 0.0, 0.0, 0.0, 0.0),
    ],
)
def test_metrics_match_hand_counts_when_scoring_a_ranking(
    ranked: list[str], hit1: float, hit3: float, recall3: float, rr: float
) -> None:
    assert hit_at(ranked, GOLD, 1) == hit1
    assert hit_at(ranked, GOLD, 3) == hit3
    assert recall_at(ranked, GOLD, 3) == recall3
    assert reciprocal_rank(ranked, GOLD) == pytest.approx(rr)


def test_a_gold_document_past_depth_ten_earns_nothing_when_computing_mrr() -> None:
    assert reciprocal_rank(["x"] * 10 + ["b"], GOLD) == 0.0


@pytest.mark.parametrize(
    ("scores", "labels", "expected"),
    [
        ([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0], 1.0),
        ([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0], 0.0),
        ([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0], 0.5),
        ([0.9, 0.3, 0.5, 0.1], [1, 1, 0, 0], 0.75),
    ],
)
def test_auroc_counts_correctly_ordered_pairs_when_scoring_confidence(
    scores: list[float], labels: list[int], expected: float
) -> None:
    assert auroc(scores, labels) == pytest.approx(expected)


def test_auroc_is_nan_when_only_one_class_is_present() -> None:
    assert auroc([0.1, 0.2], [1, 1]) != auroc([0.1, 0.2], [1, 1])


def test_gold_ids_become_sets_when_loading_questions(tmp_path: Path) -> None:
    rows = [
        {"id": "q1", "question": "How?", "gold_doc_ids": ["a", "b"]},
        {"question": "Unanswerable?", "gold_doc_ids": []},
    ]
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    first, second = load_questions(path)
    assert first == Question("q1", "How?", frozenset({"a", "b"}))
    assert first.answerable and not second.answerable
    assert second.id == "2"


def test_halves_are_disjoint_and_stable_when_splitting_questions() -> None:
    questions = [Question(f"q{i}", "?", frozenset()) for i in range(200)]
    fit, report = split(questions)
    assert {q.id for q in fit}.isdisjoint(q.id for q in report)
    assert len(fit) + len(report) == 200
    assert 70 < len(fit) < 130
    assert split(list(reversed(questions)))[0] == list(reversed(fit))


def _outcome(gold: set[str], ranked: list[str], confidence: float) -> Outcome:
    question = Question(str(id(ranked)), "?", frozenset(gold))
    return Outcome(question, tuple(ranked), (confidence,) * len(FEATURES), confidence)


def test_ranking_uses_answerable_and_abstention_uses_all_when_summarizing() -> None:
    outcomes = [
        _outcome({"a"}, ["a", "x"], 0.9),
        _outcome({"a"}, ["x", "a"], 0.4),
        _outcome(set(), ["x", "y"], 0.2),
        _outcome(set(), ["a", "y"], 0.6),
    ]
    report = summarize(outcomes, k=5, threshold=0.5)
    assert (report.questions, report.answerable) == (4, 2)
    assert report.hit_at_1 == 0.5
    assert report.hit_at_k == 1.0
    assert report.mrr_at_10 == 0.75
    assert report.auroc == 0.75
    assert report.abstain_accuracy_unanswerable == 0.5
    assert report.answer_accuracy_answerable == 0.5
    no_decision = summarize(outcomes, k=5)
    assert no_decision.abstain_accuracy_unanswerable != no_decision.abstain_accuracy_unanswerable
