"""Abstention: a calibrated probability that the knowledge base answers a query.

A few retrieval signals (`FEATURES`) go through a logistic regression fitted in numpy on a
labelled question set. The fitted coefficients ship as `knowledge/abstain.json`; refit them
with `switchboard kb eval --kb DIR --questions FILE --fit-abstention knowledge/abstain.json`.
The coefficients belong to one embedding model and chunking: refit after changing either.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

DEFAULT_PATH = Path(__file__).with_name("abstain.json")
FEATURES = (
    "dense_top",  # cosine of the best chunk
    "dense_margin",  # best cosine minus the best cosine of another article
    "bm25_margin_per_term",  # best article's BM25 minus the runner-up's, per query term
    "fused_margin",  # best article's fused score (z-scores) minus the second article's
)
# Per article (see `knowledge.hybrid`). On TechQA, fitted on one half of `evaluate.split`,
# AUROC on the other: the five chunk-level features before these 0.768, these four 0.790,
# fused_margin alone (unfitted) 0.805; the differences are within noise (about 0.03 on
# 225 questions). Left out: the best fused score and its gap to the fifth (0.794 with
# both, but a z-score's top grows with the number of articles, so a model fitted on
# TechQA's 337 misjudged the 12-article demo: 5 of its 6 test queries right against 6 of
# 6), the two rankers agreeing on the best article (or top three), BM25's best per term,
# and the share of the query's rare (high-IDF) terms in the best article (no gain).

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class AbstentionModel:
    """Logistic regression on standardized features; `threshold` is the abstain cut-off.

    `probability` below `threshold` means "the knowledge base does not answer this".
    """

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float = 0.5
    note: str = ""

    def probability(self, features: Sequence[float]) -> float:
        x = (np.asarray(features, dtype=np.float64) - self.mean) / np.asarray(self.scale)
        return float(_sigmoid(np.asarray(x @ np.asarray(self.coef) + self.intercept)))

    @classmethod
    def load(cls, path: Path | str = DEFAULT_PATH) -> AbstentionModel:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("version") != 1:
            raise ValueError(f"{path}: unsupported abstention model version {data.get('version')}")
        model = cls(
            features=tuple(data["features"]),
            mean=tuple(data["mean"]),
            scale=tuple(data["scale"]),
            coef=tuple(data["coef"]),
            intercept=float(data["intercept"]),
            threshold=float(data["threshold"]),
            note=str(data.get("note", "")),
        )
        if model.features != FEATURES:
            raise ValueError(f"{path}: fitted on features {model.features}, expected {FEATURES}")
        return model

    def save(self, path: Path | str) -> None:
        data = {"version": 1, **asdict(self)}
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def fit_logistic(
    x: npt.ArrayLike, y: npt.ArrayLike, l2: float = 1e-2, iterations: int = 50
) -> tuple[Floats, float]:
    """Weights and intercept minimizing log-loss + `l2`·|w|² (Newton's method, numpy only).

    The small L2 term keeps the Hessian invertible when a feature separates the data.
    """
    features = np.asarray(x, dtype=np.float64)
    labels = np.asarray(y, dtype=np.float64)
    design = np.hstack([features, np.ones((len(features), 1))])
    penalty = np.full(design.shape[1], l2)
    penalty[-1] = 0.0  # the intercept is not shrunk
    weights = np.zeros(design.shape[1])
    for _ in range(iterations):
        p = _sigmoid(design @ weights)
        gradient = design.T @ (p - labels) / len(labels) + penalty * weights
        hessian = (design.T * (p * (1 - p))) @ design / len(labels) + np.diag(penalty)
        step = np.linalg.solve(hessian + 1e-9 * np.eye(len(weights)), gradient)
        weights -= step
        if np.abs(step).max() < 1e-8:
            break
    return weights[:-1], float(weights[-1])


def fit_abstention(x: npt.ArrayLike, answerable: npt.ArrayLike, note: str = "") -> AbstentionModel:
    """Standardize, fit, and pick the threshold with the best balanced accuracy on the data."""
    features = np.asarray(x, dtype=np.float64)
    labels = np.asarray(answerable, dtype=np.float64)
    if len(set(labels.tolist())) != 2:
        raise ValueError("fitting abstention needs both answerable and unanswerable questions")
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale == 0] = 1.0
    coef, intercept = fit_logistic((features - mean) / scale, labels)
    model = AbstentionModel(
        FEATURES, tuple(mean.tolist()), tuple(scale.tolist()), tuple(coef.tolist()), intercept
    )
    probabilities = np.array([model.probability(row) for row in features])
    threshold = best_threshold(probabilities, labels)
    return AbstentionModel(**{**asdict(model), "threshold": threshold, "note": note})


def best_threshold(probabilities: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """The cut-off maximizing balanced accuracy (mean of per-class accuracies)."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    best, best_score = 0.5, -1.0
    for cut in np.unique(p):
        score = ((p[y] >= cut).mean() + (p[~y] < cut).mean()) / 2
        if score > best_score:
            best, best_score = float(cut), float(score)
    return best


def _sigmoid(z: Floats) -> Floats:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -35, 35))), dtype=np.float64)
