"""MiniLM in bfloat16 where the CPU computes it natively, and the recent-texts cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from knowledge.embeddings import MiniLMEmbedder, cpu_has_bf16

pytestmark = pytest.mark.integration

TEXTS = [
    "Where is my parcel? It was due on Monday.",
    "Can I return the boots I bought last week?",
]


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ("flags : fpu sse avx512f avx512_bf16 amx_tile", True),
        ("flags : fpu sse amx_bf16 amx_tile", True),
        ("flags : fpu sse avx2 avx512f", False),
    ],
)
def test_bf16_is_native_only_with_its_cpu_flags(tmp_path: Path, flags: str, native: bool) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor : 0\n{flags}\n")
    assert cpu_has_bf16(cpuinfo) is native
    assert cpu_has_bf16(tmp_path / "missing") is False


def test_bf16_vectors_agree_with_float32_ones() -> None:
    exact = MiniLMEmbedder(dtype="float32")
    fast = MiniLMEmbedder(dtype="bfloat16")
    a, b = exact.embed(TEXTS), fast.embed(TEXTS)
    assert b.dtype == np.float32 and b.shape == a.shape
    assert (a * b).sum(axis=1).min() > 0.999
    assert exact.dtype_for("cpu") == "float32" and fast.dtype_for("cpu") == "bfloat16"
    assert MiniLMEmbedder().dtype_for("cuda") == "float32"  # auto: bf16 on capable CPUs only


def test_a_text_embedded_again_comes_from_the_cache_unchanged() -> None:
    embedder = MiniLMEmbedder(dtype="float32")
    first = embedder.embed([TEXTS[0]])
    first[0, 0] = 42.0  # a caller changing its copy does not change the cache
    again = embedder.embed([TEXTS[0]])
    assert again[0, 0] != 42.0
    assert np.allclose(again, embedder.embed(TEXTS)[:1], atol=1e-5)  # same as a batch
    assert list(embedder._recent) == [TEXTS[0]]
