"""Building the pipeline's stages from `Settings`, and warming them up.

Constructors are cheap; `warm_up()` loads the heavy parts (presidio/spaCy, embeddings,
the model). The app lifespan and the CLI both go through `build_components` and
`Components.start`, so every entry point runs the same pipeline.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.errors import ConfigError
from bot.llm.base import LanguageModel
from bot.manager import ConversationManager
from bot.prompt_file import load_prompt, parse_prompt
from bot.sessions import InMemorySessionStore, RedisSessionStore, SessionStore
from bot.settings import Settings
from knowledge.embeddings import Embedder
from knowledge.ingest import IngestReport
from knowledge.retriever import Retriever
from policies.engine import PolicyEngine
from policies.reload import PolicyReloader
from policies.schema import PolicyFile

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
    # For rate limits (shared by the policy engines; None without Redis).
    redis: Any | None = None
    manager: ConversationManager = field(init=False)
    reloader: PolicyReloader | None = field(init=False, default=None)
    _reindexing: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)
    _watch: asyncio.Task[None] | None = field(init=False, default=None)
    _prompt_watch: asyncio.Task[None] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.manager = ConversationManager(
            self.settings, self.store, self.policies, self.retriever, self.llm
        )
        self.manager.embedder = self.embedder  # the grounding check's sentence embeddings
        if self.settings.actions_file is not None:
            from bot.actions.engine import ActionEngine
            from bot.actions.schema import load_actions

            if self.embedder is None:
                raise ConfigError("actions need the embedder (intent matching)")
            config = load_actions(self.settings.actions_file)  # ActionsFileError: refused
            self.manager.actions = ActionEngine(config, self.embedder, self.store)
        if self.settings.prompt_file is not None:  # PromptFileError: refused at start
            self.manager.prompts = load_prompt(
                self.settings.prompt_file, self.settings.company_name
            )

    async def start(self) -> None:
        """Connect the store and warm up every stage.

        presidio/spaCy loads beside the torch models; the embedder and the LLM load one after
        the other, because transformers switches torch's process-wide default dtype while it
        builds a model, and a model built at the same time in another thread picks it up.
        """
        began = time.perf_counter()
        await self.store.start()
        if self.embedder is not None:
            # Before anything else: the topics stage embeds its examples while warming up.
            await asyncio.to_thread(self.embedder.warm_up)
        if self.manager.actions is not None:
            await asyncio.to_thread(self.manager.actions.warm_up)
            await self.manager.actions.discover()
        warm = [
            asyncio.to_thread(self.policies.warm_up),
            asyncio.to_thread(self._warm_torch_models),
        ]
        if self.manager.language is not None:
            warm.append(asyncio.to_thread(self.manager.language.warm_up))
        await asyncio.gather(*warm)
        from knowledge.hybrid import settle_garbage_collector

        settle_garbage_collector()  # the models' objects: never walked again by a collection
        self._watch_policy_file()
        if self.settings.prompt_file is not None and self.settings.policy_reload_s > 0:
            self._prompt_watch = asyncio.create_task(self._watch_prompt_file(), name="prompt")
        self.started_s = time.perf_counter() - began
        log.info("ready in %.1fs", self.started_s)

    def _watch_policy_file(self) -> None:
        path, interval = self.settings.policy_file, self.settings.policy_reload_s
        if path is None or interval <= 0:
            return  # the bundled default does not change under a running process

        def build(policy: PolicyFile) -> PolicyEngine:
            return PolicyEngine(
                policy,
                embedder=self.embedder,
                redis=self.redis,
                audit=self.policies.audit,
                vocabulary=self.policies.vocabulary,
            )

        self.reloader = PolicyReloader(Path(path), build, self.swap_policies, interval)
        self._watch = asyncio.create_task(self.reloader.run(), name="policy-reloader")

    async def _watch_prompt_file(self) -> None:
        """Reload the prompt file when it changes (same interval as the policy file); a file
        that does not validate is refused with its line errors, the old one keeps serving."""
        path = Path(self.settings.prompt_file or "")
        while True:
            await asyncio.sleep(self.settings.policy_reload_s)
            try:
                text = await asyncio.to_thread(path.read_text, encoding="utf-8")
            except OSError as exc:
                log.warning("prompt file %s unreadable (%s); keeping the current one", path, exc)
                continue
            if not text.strip() or hashlib.sha256(text.encode()).hexdigest() == (
                self.manager.prompts.digest
            ):
                continue  # unchanged, or caught empty while an editor rewrites it
            try:
                prompts = parse_prompt(text, str(path), self.settings.company_name)
            except ConfigError as exc:
                log.error("prompt file refused, the old one keeps serving:\n%s", exc.message)
                self.manager.prompts.digest = hashlib.sha256(text.encode()).hexdigest()
                continue
            self.manager.prompts = prompts
            log.info("prompt file %s reloaded", path)

    def swap_policies(self, engine: PolicyEngine) -> PolicyEngine:
        """Serve `engine` from now on (new turns); return the one it replaces."""
        old, self.policies = self.policies, engine
        self.manager.policies = engine
        return old

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
        for task in (self._watch, self._prompt_watch):
            if task is not None:
                task.cancel()
        if self.manager.actions is not None:
            await self.manager.actions.close()
        await self.llm.close()
        self.policies.close()
        await self.store.close()
        if self.redis is not None:
            await self.redis.aclose()


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

    embedder = MiniLMEmbedder(
        settings.knowledge.embedding_model, dtype=settings.knowledge.embedding_dtype
    )
    client: Any | None = None
    if settings.redis_url is not None:
        from redis.asyncio import from_url

        client = from_url(settings.redis_url.get_secret_value())
    retriever = build_retriever(settings, embedder)
    policies = PolicyEngine.from_file(
        settings.policy_file,
        embedder=embedder,
        redis=client,
        vocabulary=getattr(retriever, "vocabulary", None),
    )
    return Components(
        settings=settings,
        store=build_store(settings),
        policies=policies,
        retriever=retriever,
        llm=build_language_model(settings),
        embedder=embedder,
        redis=client,
    )
