"""Retrieval: the `Retriever` protocol, the dense (embedding) implementation, and the
watcher that swaps in new index versions written by `switchboard kb ingest`."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from bot.types import Citation, Passage
from knowledge.chunking import Chunk
from knowledge.embeddings import Embedder, query_text
from knowledge.index import VectorIndex, current_version

log = logging.getLogger(__name__)


class Retriever(Protocol):
    """Finds the passages of the knowledge base that best answer a query.

    `warm_up()` loads models and indexes (called once in the app lifespan); `search` is
    cheap to await from the event loop; `ready()` backs the readiness probe.
    `search_with_confidence` adds the probability that the knowledge base answers the query
    (None where the retriever has no such signal), and `threshold` the confidence below
    which the turn says "I don't know" instead of guessing (None: never).
    """

    @property
    def threshold(self) -> float | None: ...

    def warm_up(self) -> None: ...

    async def search(self, query: str, k: int) -> list[Passage]: ...

    async def search_with_confidence(
        self, query: str, k: int
    ) -> tuple[list[Passage], float | None]: ...

    def ready(self) -> bool: ...


class VersionWatcher:
    """Notices a new live index version: `poll` looks at most every `interval` seconds (one
    caller at a time; the others go on at once) and calls `reload` when the version differs.

    Polling from the search path needs no task to start or stop: a replica picks up a new
    version with its first search after the interval. `interval=None` never looks.
    """

    def __init__(
        self,
        index_dir: Path | str,
        interval: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._index_dir = Path(index_dir)
        self._interval = interval
        self._clock = clock
        # The owner loads the live version when it starts: the first look is due after that.
        self._checked = clock()
        self._lock = threading.Lock()

    def poll(self, loaded: str | None, reload: Callable[[], object]) -> None:
        """Reload if due and the live version is not `loaded`; never raises."""
        if self._interval is None or not self._lock.acquire(blocking=False):
            return
        try:
            now = self._clock()
            if now - self._checked < self._interval:
                return
            self._checked = now
            live = current_version(self._index_dir)
            if live is None or live == loaded:
                return
            reload()
            log.info("now serving index version %s (was %s)", live, loaded)
        except Exception:
            # A broken new version must not break searches: keep serving the loaded one and
            # try again after the interval (the next ingest may fix it).
            log.exception(
                "could not load the new index version at %s; still serving %s",
                self._index_dir,
                loaded,
            )
        finally:
            self._lock.release()


class DenseRetriever:
    """Embeds the query and takes the nearest chunks from the on-disk `VectorIndex`.

    Passages scoring below `min_score` (cosine) are dropped: an empty result is better
    grounding than a weakly related one. Every `reload_interval` seconds at most, a search
    first checks for a new index version and swaps it in (see `VersionWatcher`); `version`
    is the one being served.
    """

    def __init__(
        self,
        index_dir: Path | str,
        embedder: Embedder,
        min_score: float = 0.2,
        *,
        reload_interval: float | None = 5.0,
    ) -> None:
        self._index_dir = Path(index_dir)
        self._embedder = embedder
        self._min_score = min_score
        self._index: VectorIndex | None = None
        self._watcher = VersionWatcher(index_dir, reload_interval)

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

    @property
    def version(self) -> str | None:
        """The index version being served (None before `warm_up()`)."""
        index = self._index
        return None if index is None else index.version

    threshold: float | None = None  # no abstention signal: `min_score` filters instead

    async def search_with_confidence(
        self, query: str, k: int
    ) -> tuple[list[Passage], float | None]:
        return await self.search(query, k), None

    async def search(self, query: str, k: int) -> list[Passage]:
        if self._index is None:
            raise RuntimeError("DenseRetriever.search() called before warm_up()")
        if not query.strip() or k <= 0:
            return []
        # Embedding (and the occasional reload) is CPU-bound: keep it off the event loop.
        hits = await asyncio.to_thread(self._search_sync, query, k)
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

    def _search_sync(self, query: str, k: int) -> list[tuple[Chunk, float]]:
        self._watcher.poll(self.version, self.reload)
        index = self._index
        assert index is not None  # set by warm_up(), never unset
        vector = self._embedder.embed([query_text(self._embedder, query)])[0]
        return index.search(vector, k, min_score=self._min_score)
