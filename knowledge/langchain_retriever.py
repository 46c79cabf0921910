"""LangChain adapter: any `Retriever` as a langchain-core `BaseRetriever`.

LangChain stays inside this module: the rest of Switchboard only sees `Passage`.
"""

from __future__ import annotations

import asyncio

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, SkipValidation

from bot.types import Passage
from knowledge.retriever import Retriever


class LangChainRetriever(BaseRetriever):
    """Wraps a warmed-up `Retriever`; each `Document` carries title, source, score, chunk_id.

    Prefer `ainvoke`; the sync `invoke` runs its own event loop, so it works only where no
    loop is running.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    # A structural Protocol cannot be checked with isinstance, so pydantic takes it as is.
    retriever: SkipValidation[Retriever]
    k: int = 4

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        # Our retrievers are async only; from inside a running loop, asyncio.run refuses
        # with a clear error, and `ainvoke` is the way.
        return [_document(p) for p in asyncio.run(self.retriever.search(query, self.k))]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        return [_document(p) for p in await self.retriever.search(query, self.k)]


def _document(passage: Passage) -> Document:
    return Document(
        page_content=passage.text,
        metadata={
            "title": passage.citation.title,
            "source": passage.citation.source,
            "score": passage.score,
            "chunk_id": passage.chunk_id,
        },
    )
