"""MiniLM in bfloat16 where the CPU computes it natively, the recent-texts cache, and the one
thread every embedding runs on."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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


def test_every_embedding_runs_on_one_thread_a_single_text_without_a_pool() -> None:
    import torch

    embedder = MiniLMEmbedder()
    embedder.warm_up()
    ran_on: list[tuple[int, int, int]] = []
    real = embedder._encode_here

    def recording(texts: Any) -> Any:
        ran_on.append((threading.get_ident(), len(texts), torch.get_num_threads()))
        return real(texts)

    embedder._encode_here = recording  # type: ignore[method-assign]
    threads = torch.get_num_threads()
    embedder.embed(["asked on the main thread"])
    with ThreadPoolExecutor(2) as pool:  # as the policy worker and `to_thread` calls ask
        list(pool.map(lambda text: embedder.embed([text]), ["one", "two", "three"]))
    embedder.embed(TEXTS)
    embedder.embed_soon("started early").result()
    assert len({ident for ident, _, _ in ran_on}) == 1, ran_on
    assert threading.get_ident() not in {ident for ident, _, _ in ran_on}
    # One text: one OpenMP thread there, while the rest of the process keeps its count.
    assert {n for _, size, n in ran_on if size == 1} == {1}, ran_on
    assert {n for _, size, n in ran_on if size > 1} == {threads}, ran_on
    assert torch.get_num_threads() == threads


def test_a_text_embedded_early_equals_its_embedding_and_is_not_remembered() -> None:
    embedder = MiniLMEmbedder(dtype="float32")
    early = embedder.embed_soon(TEXTS[1]).result()
    assert TEXTS[1] not in embedder._recent
    assert np.allclose(early, embedder.embed([TEXTS[1]]), atol=1e-6)
    embedder.remember("kept", early)
    assert np.array_equal(embedder.embed(["kept"]), early)
