"""HybridRetriever plumbing with the hashing embedder (the integration suite runs MiniLM)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.types import Citation
from knowledge.abstain import FEATURES, AbstentionModel
from knowledge.chunking import Chunk
from knowledge.embeddings import HashingEmbedder
from knowledge.hybrid import HybridRetriever
from knowledge.index import IndexNotFound, VectorIndex
from knowledge.ingest import ingest
from knowledge.retriever import Retriever

ZEROS = (0.0,) * len(FEATURES)


@pytest.fixture
def index_dir(help_center: Path, tmp_path: Path) -> Path:
    ingest(help_center, tmp_path / "index", HashingEmbedder(), progress=False)
    return tmp_path / "index"


def _model(tmp_path: Path, intercept: float) -> Path:
    """A model that ignores the features: its probability is sigmoid(intercept)."""
    model = AbstentionModel(FEATURES, ZEROS, (1.0,) * len(FEATURES), ZEROS, intercept, 0.5)
    model.save(tmp_path / f"abstain-{intercept}.json")
    return tmp_path / f"abstain-{intercept}.json"


@pytest.fixture
def retriever(index_dir: Path) -> HybridRetriever:
    retriever = HybridRetriever(index_dir, HashingEmbedder())
    retriever.warm_up()
    return retriever


async def test_passage_carries_citation_and_heading_when_a_chunk_matches(
    retriever: HybridRetriever,
) -> None:
    conforms: Retriever = retriever  # checked by mypy: the protocol is not runtime-checkable
    assert conforms.ready()
    passages, confidence = await retriever.search_with_confidence("refund timing 30 days", k=3)
    assert passages[0].citation == Citation(title="Returns policy", source="returns.md")
    assert passages[0].heading == "Returns policy > Refund timing"
    assert passages[0].score > 0
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)
    assert 0.0 <= confidence <= 1.0


async def test_at_most_two_chunks_per_article_when_capping_by_default(
    retriever: HybridRetriever,
) -> None:
    passages, _ = await retriever.search_with_confidence("returns refund shipping password", 6)
    sources = [p.citation.source for p in passages]
    assert max(sources.count(s) for s in sources) <= 2
    assert len(set(sources)) == 3


async def test_search_abstains_when_the_model_says_the_kb_does_not_answer(
    index_dir: Path, tmp_path: Path
) -> None:
    doubtful = HybridRetriever(
        index_dir, HashingEmbedder(), abstention=_model(tmp_path, -3.0), abstain=True
    )
    doubtful.warm_up()
    assert await doubtful.search("refund timing", 3) == []
    passages, confidence = await doubtful.search_with_confidence("refund timing", 3)
    assert passages and confidence == pytest.approx(0.0474, abs=1e-3)
    assert await doubtful.relevance("refund timing") == pytest.approx(confidence)
    sure = HybridRetriever(
        index_dir, HashingEmbedder(), abstention=_model(tmp_path, 3.0), abstain=True
    )
    sure.warm_up()
    assert len(await sure.search("refund timing", 3)) == 3


async def test_search_returns_passages_when_abstaining_is_left_to_the_caller(
    index_dir: Path, tmp_path: Path
) -> None:
    retriever = HybridRetriever(index_dir, HashingEmbedder(), abstention=_model(tmp_path, -3.0))
    retriever.warm_up()
    assert len(await retriever.search("refund timing", 3)) == 3


async def test_nothing_is_returned_when_the_query_is_blank_or_k_is_zero(
    retriever: HybridRetriever,
) -> None:
    assert await retriever.search("   ", 3) == []
    assert await retriever.search("refund", 0) == []


@pytest.mark.parametrize("mode", ["bm25", "dense"])
async def test_one_ranking_alone_is_used_when_a_mode_is_chosen(index_dir: Path, mode: str) -> None:
    retriever = HybridRetriever(index_dir, HashingEmbedder(), mode=mode)  # type: ignore[arg-type]
    retriever.warm_up()
    found = await retriever.retrieve("track parcel order page", 2)
    assert found.passages[0].citation.source == "shipping/delivery.md"
    assert len(found.features) == len(FEATURES)


async def test_search_is_refused_when_not_warmed_up(index_dir: Path) -> None:
    with pytest.raises(RuntimeError, match="warm_up"):
        await HybridRetriever(index_dir, HashingEmbedder()).search("refund", 3)


def test_the_index_stays_when_a_reload_fails(
    retriever: HybridRetriever, index_dir: Path, tmp_path: Path
) -> None:
    missing = HybridRetriever(tmp_path / "nowhere", HashingEmbedder())
    with pytest.raises(IndexNotFound):
        missing.warm_up()
    assert not missing.ready()
    shutil.rmtree(index_dir)
    with pytest.raises(IndexNotFound):
        retriever.reload()
    assert retriever.ready()


async def test_new_chunks_are_found_when_reloaded_after_a_reingest(
    retriever: HybridRetriever, help_center: Path, index_dir: Path
) -> None:
    (help_center / "gift-cards.md").write_text("# Gift cards\n\nGift cards never expire.\n")
    ingest(help_center, index_dir, HashingEmbedder(), progress=False)
    retriever.reload()
    passages = await retriever.search("gift cards expire", 1)
    assert passages[0].citation.source == "gift-cards.md"


async def test_every_article_shows_its_closest_chunk_first_when_chunks_are_stored_interleaved(
    tmp_path: Path,
) -> None:
    # Chunks of two articles stored out of article order (another writer than `ingest`).
    texts = {
        "gifts:0": ("gifts", "Gift cards can be bought in any amount."),
        "promo:0": ("promo", "Promotion codes are entered at checkout."),
        "gifts:1": ("gifts", "Gift cards never expire and work with promotion codes."),
    }
    chunks = [
        Chunk(id, doc, doc.title(), f"{doc}.md", "", text) for id, (doc, text) in texts.items()
    ]
    embedder = HashingEmbedder()
    vectors = embedder.embed([text for _, text in texts.values()])
    VectorIndex.write(tmp_path / "index", chunks, vectors, embedder.name)
    retriever = HybridRetriever(tmp_path / "index", embedder, abstention=None)
    retriever.warm_up()
    found = await retriever.retrieve("do gift cards expire", 3)
    assert [p.chunk_id for p in found.passages] == ["gifts:1", "promo:0", "gifts:0"]
    assert found.passages[0].score > found.passages[1].score
