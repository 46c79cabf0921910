"""Building the pipeline's stages from `Settings`, and warming them up.

Constructors are cheap; `warm_up()` loads the heavy parts (presidio/spaCy, embeddings,
the model). The app lifespan and the CLI both go through `build_components` and
`Components.start`, so every entry point runs the same pipeline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bot.errors import ConfigError
from bot.llm.base import LanguageModel
from bot.manager import ConversationManager
from bot.sessions import InMemorySessionStore, RedisSessionStore, SessionStore
from bot.settings import Settings
from knowledge.embeddings import Embedder
from knowledge.ingest import IngestReport
from knowledge.retriever import Retriever
from policies.engine import PolicyEngine

if TYPE_CHECKING:
    from knowledge.hybrid import HybridRetriever

log = logging.getLogger(__name__)


@dataclass
class Components:
    """The stages of one process's pipeline, and their readiness."""

    settings: Settings
    store: SessionStore
    policies: PolicyEngine
    retriever: Retriever
    llm: LanguageModel
    # The retriever's embedder, for re-indexing documents uploaded through the admin API.
    embedder: Embedder | None = None
    knowledge_error: str = ""
    started_s: float = 0.0
    manager: ConversationManager = field(init=False)
    _reindexing: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.manager = ConversationManager(
            self.settings, self.store, self.policies, self.retriever, self.llm
        )

    async def start(self) -> None:
        """Connect the store and warm up every stage.

        presidio/spaCy loads beside the torch models; the embedder and the LLM load one after
        the other, because transformers switches torch's process-wide default dtype while it
        builds a model, and a model built at the same time in another thread picks it up.
        """
        began = time.perf_counter()
        await self.store.start()
        await asyncio.gather(
            asyncio.to_thread(self.policies.warm_up),
            asyncio.to_thread(self._warm_torch_models),
        )
        self.started_s = time.perf_counter() - began
        log.info("ready in %.1fs", self.started_s)

    def _warm_torch_models(self) -> None:
        self._warm_knowledge()
        self.llm.warm_up()

    def _warm_knowledge(self) -> None:
        # A missing index degrades answers (no passages) but must not stop the service.
        try:
            self.retriever.warm_up()
        except (FileNotFoundError, ValueError) as exc:
            self.knowledge_error = str(exc)
            log.error("knowledge base unavailable: %s", exc)

    async def reindex(self) -> IngestReport:
        """Index `settings.documents_dir` again and switch retrieval to the new index.

        One re-index at a time; until the new index is complete the old one keeps serving.
        """
        from knowledge.ingest import ingest

        if self.embedder is None:
            raise ConfigError("this process was built without an embedder: cannot re-index")
        async with self._reindexing:
            report = await asyncio.to_thread(
                ingest,
                self.settings.documents_dir,
                self.settings.index_dir,
                self.embedder,
                progress=False,
                max_tokens=self.settings.knowledge.chunk_tokens,
                overlap=self.settings.knowledge.chunk_overlap,
            )
            reload = getattr(self.retriever, "reload", None)
            if reload is not None:
                await asyncio.to_thread(reload)
            self.knowledge_error = ""
            return report

    async def close(self) -> None:
        await self.llm.close()
        self.policies.close()
        await self.store.close()


def build_store(settings: Settings) -> SessionStore:
    if settings.redis_url is None:
        return InMemorySessionStore(settings.sessions)
    return RedisSessionStore(
        settings.redis_url.get_secret_value(), settings.sessions, settings.key_prefix
    )


def build_retriever(
    settings: Settings, embedder: Embedder, index_dir: Path | None = None
) -> HybridRetriever:
    """The production retriever: hybrid BM25 + dense, with the configured abstention model."""
    from knowledge.abstain import DEFAULT_PATH as BUNDLED_ABSTENTION_MODEL
    from knowledge.hybrid import HybridRetriever

    return HybridRetriever(
        index_dir or settings.index_dir,
        embedder,
        abstention=settings.knowledge.abstention_model or BUNDLED_ABSTENTION_MODEL,
    )


def build_components(settings: Settings) -> Components:
    """The production stages for `settings` (nothing heavy is loaded yet)."""
    from bot.llm.factory import build_language_model
    from knowledge.embeddings import MiniLMEmbedder

    embedder = MiniLMEmbedder(settings.knowledge.embedding_model)
    return Components(
        settings=settings,
        store=build_store(settings),
        policies=PolicyEngine.from_file(settings.policy_file),
        retriever=build_retriever(settings, embedder),
        llm=build_language_model(settings),
        embedder=embedder,
    )
