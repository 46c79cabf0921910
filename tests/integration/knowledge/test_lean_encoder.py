"""The lean TorchScript pass that embeds single texts: the same vectors as
sentence-transformers, only for the models it reproduces, and without Python's lock."""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from knowledge import lean_encoder as lean_module
from knowledge.embeddings import _TORCH, MiniLMEmbedder

pytestmark = pytest.mark.integration

MESSAGE = (
    "Hi, I ordered a blue winter jacket three weeks ago and it still has not arrived. The "
    "tracking page says it is stuck in a depot since last Tuesday. Can you tell me whether it "
    "is lost and how I can get a refund or a replacement sent out quickly? Order 88412."
)


@pytest.fixture(scope="module")
def pair() -> tuple[MiniLMEmbedder, MiniLMEmbedder]:
    """The default embedder (lean single texts) and one that always uses sentence-transformers."""
    lean, plain = MiniLMEmbedder(), MiniLMEmbedder(lean=False)
    lean.warm_up()
    plain.warm_up()
    assert lean._lean is not None and plain._lean is None
    return lean, plain


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a",
        "Where is my parcel?",
        "Où est ma commande ? 東京の倉庫 🙂",
        MESSAGE,
        "word " * 600,  # past the model's 256 tokens: cut where sentence-transformers cuts
    ],
    ids=["empty", "one-char", "question", "unicode", "300-chars", "too-long"],
)
def test_a_single_text_gets_sentence_transformers_vector(
    pair: tuple[MiniLMEmbedder, MiniLMEmbedder], text: str
) -> None:
    lean, plain = pair
    got, expected = lean.embed([text]), plain.embed([text])
    assert got.dtype == np.float32 and got.shape == expected.shape == (1, 384)
    assert abs(float(np.linalg.norm(got)) - 1.0) < 1e-5
    assert float((got @ expected.T)[0, 0]) > 0.9995


def test_float32_lean_vectors_match_exactly_enough() -> None:
    lean, plain = MiniLMEmbedder(dtype="float32"), MiniLMEmbedder(dtype="float32", lean=False)
    assert np.allclose(lean.embed([MESSAGE]), plain.embed([MESSAGE]), atol=1e-5)
    assert lean._lean is not None


def test_batches_still_go_through_sentence_transformers(
    pair: tuple[MiniLMEmbedder, MiniLMEmbedder],
) -> None:
    lean, plain = pair
    texts = ["Where is my parcel?", MESSAGE, "Can I return the boots?"]
    assert np.array_equal(lean.embed(texts), plain.embed(texts))


def _model_with(*extra: Any, pooling: str = "mean") -> Any:
    from sentence_transformers import SentenceTransformer, models

    base = MiniLMEmbedder(lean=False)
    base.warm_up()
    assert base._model is not None
    transformer = base._model[0]
    dim = transformer.get_embedding_dimension()
    return SentenceTransformer(
        modules=[transformer, models.Pooling(dim, pooling_mode=pooling), *extra], device="cpu"
    )


def test_a_model_it_does_not_reproduce_keeps_sentence_transformers() -> None:
    from sentence_transformers import models

    assert _TORCH.run(lean_module.lean_encoder, _model_with()) is not None
    assert _TORCH.run(lean_module.lean_encoder, _model_with(pooling="cls")) is None
    dense = models.Dense(384, 128)
    assert _TORCH.run(lean_module.lean_encoder, _model_with(dense)) is None


def test_a_lean_vector_that_disagrees_is_not_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(lean_module, "AGREEMENT", 1.01)  # no vector can be that close
    embedder = MiniLMEmbedder()
    with caplog.at_level(logging.WARNING, logger="knowledge.lean_encoder"):
        embedder.warm_up()
    assert embedder._lean is None
    assert "disagrees with sentence-transformers" in caplog.text
    assert embedder.embed([MESSAGE]).shape == (1, 384)


def _median_ms(embed: Callable[[], object], runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        embed()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def test_it_runs_beside_a_busy_python_thread_without_waiting_on_the_lock(
    pair: tuple[MiniLMEmbedder, MiniLMEmbedder],
) -> None:
    """The PII stage runs Python on the policy worker while the topics stage embeds: the
    sentence-transformers pass waits for the lock at each of its Python calls (about 50 times
    slower here); the TorchScript pass holds it only to start and to return."""
    lean, plain = pair
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            sum(range(200))

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        lean_ms = _median_ms(lambda: lean._encode([MESSAGE]))
        plain_ms = _median_ms(lambda: plain._encode([MESSAGE]))
    finally:
        stop.set()
        thread.join()
    assert lean_ms * 4 < plain_ms, (lean_ms, plain_ms)


def test_every_length_is_warmed_once_per_process_and_model_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    monkeypatch.setattr(lean_module, "_WARMED", set())
    lengths: list[int] = []
    graph = lambda ids: lengths.append(ids.shape[1])  # noqa: E731
    minilm = (torch.bfloat16, 384, 1536)
    lean_module.LeanEncoder(graph, None, minilm, longest=512).warm()
    warmed = list(range(3, lean_module.WARM_TOKENS + 1))
    assert lengths == warmed
    lean_module.LeanEncoder(graph, None, minilm, longest=512).warm()
    assert lengths == warmed  # oneDNN keeps them: not again
    lean_module.LeanEncoder(graph, None, (torch.float32, 384, 1536), longest=40).warm()
    assert lengths[len(warmed) :] == list(range(3, 41))  # a new dtype, capped at its longest
    lean_module.LeanEncoder(graph, None, (torch.float32, 768, 3072), longest=40).warm()
    assert len(lengths) == len(warmed) + 2 * 38  # another model's matrix sizes: warmed too
