"""Retriever behaviour, run against DenseRetriever with the hashing embedder.

The integration suite runs the same path with the real MiniLM model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.types import Citation
from knowledge.embeddings import HashingEmbedder
from knowledge.index import EmbedderMismatch, IndexNotFound
from knowledge.ingest import ingest
from knowledge.retriever import DenseRetriever, Retriever


@pytest.fixture
def index_dir(help_center: Path, tmp_path: Path) -> Path:
    ingest(help_center, tmp_path / "index", HashingEmbedder(), progress=False)
    return tmp_path / "index"


@pytest.fixture
def retriever(index_dir: Path) -> DenseRetriever:
    retriever = DenseRetriever(index_dir, HashingEmbedder(), min_score=0.1)
    retriever.warm_up()
    return retriever


async def test_passage_carries_citation_and_heading_when_a_chunk_matches(
    retriever: DenseRetriever,
) -> None:
    passages = await retriever.search("refund timing 30 days", k=3)
    top = passages[0]
    assert top.citation == Citation(title="Returns policy", source="returns.md")
    assert top.heading == "Returns policy > Refund timing"
    assert top.text.startswith("Returns policy — Refund timing\n\n")
    assert top.chunk_id.endswith(":0001")
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)


@pytest.mark.parametrize(
    ("query", "source"),
    [
        ("how many business days does delivery take", "shipping/delivery.md"),
        ("I forgot my password", "account/password-reset.txt"),
        ("when will my refund reach my card", "returns.md"),
    ],
)
async def test_right_document_is_first_when_query_shares_its_words(
    retriever: Retriever, query: str, source: str
) -> None:
    passages = await retriever.search(query, k=2)
    assert passages[0].citation.source == source


async def test_weak_matches_are_dropped_when_below_min_score(index_dir: Path) -> None:
    strict = DenseRetriever(index_dir, HashingEmbedder(), min_score=0.99)
    strict.warm_up()
    assert await strict.search("refund", k=4) == []


async def test_nothing_returned_when_query_is_blank_or_k_is_zero(retriever: Retriever) -> None:
    assert await retriever.search("   ", k=4) == []
    assert await retriever.search("refund", k=0) == []


async def test_search_raises_when_not_warmed_up(index_dir: Path) -> None:
    retriever = DenseRetriever(index_dir, HashingEmbedder())
    assert not retriever.ready()
    with pytest.raises(RuntimeError, match="warm_up"):
        await retriever.search("refund", k=1)
    retriever.warm_up()
    assert retriever.ready()


def test_warm_up_tells_to_ingest_when_index_is_missing(tmp_path: Path) -> None:
    retriever = DenseRetriever(tmp_path / "index", HashingEmbedder())
    with pytest.raises(IndexNotFound, match="switchboard kb ingest"):
        retriever.warm_up()
    assert not retriever.ready()


def test_warm_up_refused_when_index_was_built_by_another_model(index_dir: Path) -> None:
    with pytest.raises(EmbedderMismatch):
        DenseRetriever(index_dir, HashingEmbedder(dim=128)).warm_up()


async def test_reload_serves_new_documents_when_reingested(
    retriever: DenseRetriever, help_center: Path, index_dir: Path
) -> None:
    (help_center / "gift-cards.md").write_text("# Gift cards\n\nGift cards never expire.\n")
    ingest(help_center, index_dir, HashingEmbedder(), progress=False)
    before = await retriever.search("do gift cards expire", k=1)
    retriever.reload()
    after = await retriever.search("do gift cards expire", k=1)
    assert all(p.citation.source != "gift-cards.md" for p in before)
    assert after[0].citation.source == "gift-cards.md"


async def test_old_index_keeps_serving_when_reload_fails(
    retriever: DenseRetriever, index_dir: Path
) -> None:
    (index_dir / "manifest.json").write_text("{broken")
    with pytest.raises(ValueError, match="unusable"):
        retriever.reload()
    assert retriever.ready()
    assert (await retriever.search("refund", k=1))[0].citation.source == "returns.md"
