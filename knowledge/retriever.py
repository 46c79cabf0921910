"""Retrieval: the `Retriever` protocol and the dense (embedding) implementation."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

from bot.types import Citation, Passage
from knowledge.chunking import Chunk
from knowledge.embeddings import Embedder
from knowledge.index import VectorIndex


class Retriever(Protocol):
    """Finds the passages of the knowledge base that best answer a query.

    `warm_up()` loads models and indexes (called once in the app lifespan); `search` is
    cheap to await from the event loop; `ready()` backs the readiness probe. A hybrid
    BM25 + dense retriever implements the same three methods.
    """

    def warm_up(self) -> None: ...

    async def search(self, query: str, k: int) -> list[Passage]: ...

    def ready(self) -> bool: ...


class DenseRetriever:
    """Embeds the query and takes the nearest chunks from the on-disk `VectorIndex`.

    Passages scoring below `min_score` (cosine) are dropped: an empty result is better
    grounding than a weakly related one.
    """

    def __init__(self, index_dir: Path | str, embedder: Embedder, min_score: float = 0.2) -> None:
        self._index_dir = Path(index_dir)
        self._embedder = embedder
        self._min_score = min_score
        self._index: VectorIndex | None = None

    def warm_up(self) -> None:
        if self._index is None:
            self.reload()

    def reload(self) -> None:
        """Load the index again (after a re-ingest). On failure the current index stays."""
        self._embedder.warm_up()
        # Assigning a fully loaded index is atomic, so concurrent searches see old or new.
        self._index = VectorIndex.load(self._index_dir, embedder_name=self._embedder.name)

    def ready(self) -> bool:
        return self._index is not None

    async def search(self, query: str, k: int) -> list[Passage]:
        index = self._index
        if index is None:
            raise RuntimeError("DenseRetriever.search() called before warm_up()")
        if not query.strip() or k <= 0:
            return []
        # Embedding is CPU-bound (tens of ms): keep it off the event loop.
        hits = await asyncio.to_thread(self._search_sync, index, query, k)
        return [
            Passage(
                text=chunk.text,
                citation=Citation(title=chunk.title, source=chunk.source),
                score=score,
                chunk_id=chunk.id,
                heading=chunk.heading,
            )
            for chunk, score in hits
        ]

    def _search_sync(self, index: VectorIndex, query: str, k: int) -> list[tuple[Chunk, float]]:
        vector = self._embedder.embed([query])[0]
        return index.search(vector, k, min_score=self._min_score)
