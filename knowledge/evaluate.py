"""Retrieval quality on a labelled question set: hit@k, recall@k, MRR@10, abstention AUROC.

A question file is JSON lines with `question` and `gold_doc_ids` (document ids are source
file stems; an empty list marks a question the knowledge base does not answer). Ranking
metrics count passages as the model sees them: hit@5 means a gold article's chunk is among
the first five passages. `switchboard kb eval` is the command-line front end.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from knowledge.abstain import DEFAULT_PATH, AbstentionModel, fit_abstention
from knowledge.embeddings import Embedder
from knowledge.hybrid import HybridRetriever, Retrieval
from knowledge.ingest import ingest

MRR_DEPTH = 10


@dataclass(frozen=True)
class Question:
    """One labelled question; `gold` is empty when the knowledge base does not answer it."""

    id: str
    text: str
    gold: frozenset[str]

    @property
    def answerable(self) -> bool:
        return bool(self.gold)


@dataclass(frozen=True)
class Outcome:
    """What retrieval returned for one question: ranked document ids, features, confidence."""

    question: Question
    ranked_docs: tuple[str, ...]
    features: tuple[float, ...]
    confidence: float


@dataclass
class EvalReport:
    """Aggregate figures; ranking metrics are over answerable questions only."""

    questions: int
    answerable: int
    k: int
    hit_at_1: float
    hit_at_k: float
    recall_at_k: float
    mrr_at_10: float
    auroc: float
    baseline_auroc: float  # the plain top-1 cosine as the confidence
    threshold: float | None
    abstain_accuracy_unanswerable: float
    answer_accuracy_answerable: float
    notes: list[str] = field(default_factory=list)


def load_questions(path: Path | str) -> list[Question]:
    questions = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                row = json.loads(line)
                gold = frozenset(str(doc) for doc in row.get("gold_doc_ids") or ())
                questions.append(Question(str(row.get("id", number)), row["question"], gold))
    return questions


def split(questions: Sequence[Question]) -> tuple[list[Question], list[Question]]:
    """A fixed half/half split by a hash of the question id (stable under reordering)."""
    halves: tuple[list[Question], list[Question]] = ([], [])
    for question in questions:
        halves[hashlib.sha1(question.id.encode()).digest()[0] % 2].append(question)
    return halves


def hit_at(ranked: Sequence[str], gold: frozenset[str], k: int) -> float:
    return 1.0 if gold.intersection(ranked[:k]) else 0.0


def recall_at(ranked: Sequence[str], gold: frozenset[str], k: int) -> float:
    return len(gold.intersection(ranked[:k])) / len(gold) if gold else 0.0


def reciprocal_rank(ranked: Sequence[str], gold: frozenset[str], depth: int = MRR_DEPTH) -> float:
    return next((1.0 / rank for rank, d in enumerate(ranked[:depth], 1) if d in gold), 0.0)


def auroc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties half."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    positives, negatives = s[y], s[~y]
    if not len(positives) or not len(negatives):
        return float("nan")
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(positives) * len(negatives)))


async def run_questions(
    retriever: HybridRetriever, questions: Sequence[Question], k: int
) -> list[Outcome]:
    outcomes = []
    for question in questions:
        found = await retriever.retrieve(question.text, max(k, MRR_DEPTH))
        outcomes.append(_outcome(question, found))
    return outcomes


def _outcome(question: Question, found: Retrieval) -> Outcome:
    docs = tuple(Path(p.citation.source).stem for p in found.passages)
    return Outcome(question, docs, found.features, found.confidence)


def summarize(
    outcomes: Sequence[Outcome],
    k: int,
    model: AbstentionModel | None = None,
    threshold: float | None = None,
) -> EvalReport:
    """Figures for `outcomes`. With `model`, confidences are recomputed from the stored
    features and its threshold applies; otherwise the outcomes' own confidences and
    `threshold` (None: no abstain decision to score)."""
    answerable = [o for o in outcomes if o.question.answerable]
    conf = np.array([model.probability(o.features) if model else o.confidence for o in outcomes])
    labels = np.array([o.question.answerable for o in outcomes], dtype=bool)
    threshold = model.threshold if model else threshold

    def mean(values: Sequence[float]) -> float:
        return float(np.mean(values)) if len(values) else float("nan")

    def share(mask: npt.NDArray[np.bool_]) -> float:
        return mean(mask.astype(float).tolist()) if threshold is not None else float("nan")

    cut = threshold if threshold is not None else 0.0
    return EvalReport(
        questions=len(outcomes),
        answerable=len(answerable),
        k=k,
        hit_at_1=mean([hit_at(o.ranked_docs, o.question.gold, 1) for o in answerable]),
        hit_at_k=mean([hit_at(o.ranked_docs, o.question.gold, k) for o in answerable]),
        recall_at_k=mean([recall_at(o.ranked_docs, o.question.gold, k) for o in answerable]),
        mrr_at_10=mean([reciprocal_rank(o.ranked_docs, o.question.gold) for o in answerable]),
        auroc=auroc(conf, labels),
        baseline_auroc=auroc([o.features[0] for o in outcomes], labels),
        threshold=threshold,
        abstain_accuracy_unanswerable=share(conf[~labels] < cut),
        answer_accuracy_answerable=share(conf[labels] >= cut),
    )


async def evaluate_folder(
    kb: Path | str,
    questions_file: Path | str,
    embedder: Embedder,
    *,
    k: int = 5,
    fit_to: Path | str | None = None,
) -> EvalReport:
    """Ingest `kb` into a temporary index and evaluate the hybrid retriever on it.

    With `fit_to`, the abstention model is fitted on one half of the questions (see `split`),
    written to `fit_to`, and every figure is reported on the other half only.
    """
    questions = load_questions(questions_file)
    with tempfile.TemporaryDirectory(prefix="switchboard-eval-") as tmp:
        ingest(kb, Path(tmp) / "index", embedder, progress=False)
        # When fitting, the retriever computes features only; the model comes next.
        abstention = None if fit_to else DEFAULT_PATH
        retriever = HybridRetriever(Path(tmp) / "index", embedder, abstention=abstention)
        retriever.warm_up()
        outcomes = await run_questions(retriever, questions, k)
    if fit_to is None:
        return summarize(outcomes, k, threshold=retriever.threshold)
    fit_half, report_half = split(questions)
    fit_ids = {q.id for q in fit_half}
    fitted = [o for o in outcomes if o.question.id in fit_ids]
    note = f"fitted on {len(fitted)} of {len(outcomes)} questions of {Path(questions_file).name}"
    model = fit_abstention(
        [o.features for o in fitted], [o.question.answerable for o in fitted], note=note
    )
    model.save(fit_to)
    report = summarize([o for o in outcomes if o.question.id not in fit_ids], k, model)
    report.notes.append(f"{note}; figures are on the other {len(report_half)} (held out)")
    report.notes.append(f"abstention model written to {fit_to}")
    return report
