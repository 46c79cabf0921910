"""Build the index from a folder of documents: load, chunk, embed, write."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm  # type: ignore[import-untyped]

from knowledge.chunking import chunk_document
from knowledge.embeddings import Embedder
from knowledge.index import VectorIndex
from knowledge.loaders import load_folder


@dataclass(frozen=True)
class IngestReport:
    """What one ingest did: how many documents and chunks, and how long it took."""

    documents: int
    chunks: int
    seconds: float


def ingest(
    path: Path | str,
    index_dir: Path | str,
    embedder: Embedder,
    *,
    progress: bool = True,
    max_chars: int = 1000,
    overlap: int = 150,
    batch_size: int = 64,
) -> IngestReport:
    """Index every document under `path` into `index_dir`, replacing the previous index.

    The old index keeps serving until the new one is completely written.
    """
    started = time.perf_counter()
    documents = load_folder(path)
    chunks = [
        chunk
        for doc in documents
        for chunk in chunk_document(doc, max_chars=max_chars, overlap=overlap)
    ]
    if not chunks:
        raise ValueError(f"the documents under {path} contain no text to index")
    embedder.warm_up()
    # Batches here (not only inside the embedder) so the progress bar moves during long runs.
    batches = []
    with tqdm(total=len(chunks), desc="Embedding", unit="chunk", disable=not progress) as bar:
        for start in range(0, len(chunks), batch_size):
            texts = [chunk.text for chunk in chunks[start : start + batch_size]]
            batches.append(embedder.embed(texts))
            bar.update(len(texts))
    VectorIndex.write(
        index_dir, chunks, np.concatenate(batches), embedder.name, documents=documents
    )
    return IngestReport(
        documents=len(documents), chunks=len(chunks), seconds=time.perf_counter() - started
    )
