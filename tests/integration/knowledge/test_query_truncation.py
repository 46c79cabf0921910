"""Long search queries are cut at MiniLM's training length, on a token boundary."""

from __future__ import annotations

import pytest

from knowledge.embeddings import HashingEmbedder, MiniLMEmbedder, query_text

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder(query_max_tokens=32)


def test_short_query_is_kept_whole_when_within_the_limit(minilm: MiniLMEmbedder) -> None:
    assert query_text(minilm, "How do I reset my password?") == "How do I reset my password?"


def test_long_query_is_cut_after_whole_tokens_when_over_the_limit(minilm: MiniLMEmbedder) -> None:
    query = " ".join(f"SQLCODE-{i:03d} failure in WebSphere" for i in range(40))
    cut = query_text(minilm, query)
    assert query.startswith(cut) and len(cut) < len(query)
    assert query[len(cut)] in " -"  # ends at a token boundary, never mid word piece
    tokens = minilm._model.tokenizer(cut, add_special_tokens=True)["input_ids"]  # type: ignore[union-attr]
    assert len(tokens) == 32  # [CLS] + 30 pieces + [SEP]


def test_embedders_without_a_limit_get_the_query_unchanged() -> None:
    assert query_text(HashingEmbedder(), "x " * 500) == "x " * 500
