from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from knowledge.embeddings import BUILTIN_NAME, HashingEmbedder, MiniLMEmbedder, builtin_model_path


def test_hashing_rows_are_normalized_float32_when_embedding_texts() -> None:
    vectors = HashingEmbedder(dim=64).embed(["Refund timing", "Shipping takes 3-5 days", ""])
    assert vectors.shape == (3, 64)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, rtol=1e-6)
    assert not vectors[2].any()  # an empty text is a zero vector, not NaN


def test_hashing_is_deterministic_and_case_blind_when_called_twice() -> None:
    a = HashingEmbedder().embed(["Where is my REFUND?"])
    b = HashingEmbedder().embed(["where is my refund"])
    np.testing.assert_array_equal(a, b)


def test_shared_words_score_higher_when_comparing_with_hashing() -> None:
    q, related, unrelated = HashingEmbedder().embed(
        ["refund timing", "when does my refund arrive", "reset your password"]
    )
    assert float(q @ related) > float(q @ unrelated)


def test_hashing_rejects_dimension_when_not_positive() -> None:
    with pytest.raises(ValueError, match="dim"):
        HashingEmbedder(dim=0)


def test_builtin_model_folder_found_when_package_is_installed() -> None:
    folder = builtin_model_path()
    assert (folder / "model.safetensors").is_file()
    assert (folder / "modules.json").is_file()


def test_minilm_name_and_dim_known_without_loading_when_builtin() -> None:
    embedder = MiniLMEmbedder()
    assert (embedder.name, embedder.dim) == (BUILTIN_NAME, 384)


def test_minilm_dim_needs_warm_up_when_model_is_custom() -> None:
    with pytest.raises(RuntimeError, match="warm_up"):
        _ = MiniLMEmbedder("some-org/some-model").dim


def test_nothing_heavy_is_imported_when_knowledge_is_imported() -> None:
    # A fresh interpreter: this test process may already have torch loaded.
    code = (
        "import sys, knowledge, knowledge.ingest, knowledge.retriever\n"
        "from knowledge.embeddings import MiniLMEmbedder\n"
        "MiniLMEmbedder()\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
