"""The numpy logistic regression and the abstention model file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from knowledge.abstain import (
    DEFAULT_PATH,
    FEATURES,
    AbstentionModel,
    best_threshold,
    fit_abstention,
    fit_logistic,
)


def test_known_coefficients_are_recovered_when_fitting_logistic_regression() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 2))
    p = 1 / (1 + np.exp(-(2.0 * x[:, 0] - 1.0 * x[:, 1] + 0.5)))
    y = rng.random(4000) < p
    coef, intercept = fit_logistic(x, y, l2=0.0)
    np.testing.assert_allclose(coef, [2.0, -1.0], atol=0.2)
    assert intercept == pytest.approx(0.5, abs=0.15)


def test_weights_stay_finite_when_a_feature_separates_the_classes() -> None:
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    coef, intercept = fit_logistic(x, [0, 0, 1, 1])
    assert np.isfinite(coef).all()
    assert np.isfinite(intercept)
    assert coef[0] > 0


def test_the_cut_maximizes_balanced_accuracy_when_choosing_a_threshold() -> None:
    assert best_threshold([0.1, 0.2, 0.6, 0.9], [0, 0, 1, 1]) == 0.6
    assert best_threshold([0.1, 0.7, 0.6, 0.9], [0, 0, 1, 1]) == 0.6


def _toy_features(n: int, answerable: bool, rng: np.random.Generator) -> np.ndarray:
    shift = 1.0 if answerable else -1.0
    return rng.standard_normal((n, len(FEATURES))) + shift


def test_answerable_queries_get_higher_probability_when_fitting_abstention(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(1)
    x = np.vstack([_toy_features(50, True, rng), _toy_features(50, False, rng)])
    y = [True] * 50 + [False] * 50
    model = fit_abstention(x, y, note="toy")
    assert model.probability([2.0] * len(FEATURES)) > model.threshold
    assert model.probability([-2.0] * len(FEATURES)) < model.threshold
    model.save(tmp_path / "abstain.json")
    assert AbstentionModel.load(tmp_path / "abstain.json") == model


def test_fitting_is_refused_when_all_questions_are_answerable() -> None:
    with pytest.raises(ValueError, match="both answerable and unanswerable"):
        fit_abstention(np.zeros((3, len(FEATURES))), [True, True, True])


def test_a_model_for_other_features_is_refused_when_loading(tmp_path: Path) -> None:
    data = json.loads(DEFAULT_PATH.read_text(encoding="utf-8"))
    data["features"] = ["something_else"]
    (tmp_path / "abstain.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="fitted on features"):
        AbstentionModel.load(tmp_path / "abstain.json")


def test_the_shipped_model_loads_when_using_the_default_path() -> None:
    model = AbstentionModel.load()
    assert model.features == FEATURES
    assert 0.0 < model.threshold < 1.0
    # A plausible query: cosine 0.6, clear margins over the second article.
    assert 0.0 <= model.probability([0.6, 0.1, 0.5, 1.0]) <= 1.0
