"""Build the index from a folder of documents: load, chunk, embed, write.

Re-ingests are incremental: a document whose content hash matches the live version keeps its
chunks and embeddings, so only new and changed documents are embedded. Any change of embedding
model or chunking parameters (or `rebuild=True`) re-embeds everything.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm import tqdm  # type: ignore[import-untyped]

from knowledge.chunking import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_OVERLAP_TOKENS,
    Chunk,
    TokenCounter,
    chunk_document,
)
from knowledge.embeddings import BUILTIN_MODEL, Embedder
from knowledge.index import IndexCorrupt, IndexNotFound, VectorIndex
from knowledge.loaders import Document, load_folder, load_url_list
from knowledge.manifest import content_hash

log = logging.getLogger(__name__)
Chunking = dict[str, int | str]


@dataclass(frozen=True)
class IngestReport:
    """What one ingest did: documents by fate, chunks in the index and chunks embedded.

    `rebuilt` is true when every chunk was embedded afresh (first ingest, `rebuild=True`, or
    another model or chunking); `version` is the live version afterwards, unchanged when
    nothing changed (no new version is written then).
    """

    documents: int
    chunks: int
    seconds: float
    added: int
    changed: int
    unchanged: int
    removed: int
    embedded: int
    rebuilt: bool
    version: str
    skipped: tuple[str, ...] = ()  # why each unreadable file or missing page was left out


@dataclass
class _Plan:
    """The new index's chunks in document order; `rows[i]` is chunk i's row in the previous
    index's embeddings, or None when it must be embedded."""

    chunks: list[Chunk]
    rows: list[int | None]
    added: int = 0
    changed: int = 0
    unchanged: int = 0


def ingest(
    path: Path | str,
    index_dir: Path | str,
    embedder: Embedder,
    *,
    rebuild: bool = False,
    progress: bool = True,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    overlap: int = DEFAULT_OVERLAP_TOKENS,
    tokenizer: str | None = None,
    batch_size: int = 64,
    urls: Path | str | None = None,
) -> IngestReport:
    """Index every document under `path` into `index_dir` as a new version.

    With `urls` (a sitemap or a file of URLs), `path` is a local mirror of the site and the
    listed pages are indexed (see `loaders.load_url_list`) instead of the whole folder.

    Chunks hold at most `max_tokens` tokens of `tokenizer` (default: the embedder's own,
    else the packaged MiniLM's) with `overlap` tokens repeated between a section's chunks.

    The previous version keeps serving until the new one is completely written; if anything
    fails (embedding included), it stays live. Ingests into one `index_dir` take turns (a
    lock file beside it): a second one waits rather than build on a version being replaced.
    """
    with _exclusive(Path(index_dir)):
        return _ingest(
            path,
            Path(index_dir),
            embedder,
            rebuild,
            progress,
            max_tokens,
            overlap,
            tokenizer,
            batch_size,
            urls,
        )


@contextmanager
def _exclusive(index_dir: Path) -> Iterator[None]:
    # Beside the index, not in it: an index folder must hold only what the writer puts there.
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = index_dir.parent / f".{index_dir.name}.ingest.lock"
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another ingest into %s is running; waiting for it to finish", index_dir)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _ingest(
    path: Path | str,
    index_dir: Path,
    embedder: Embedder,
    rebuild: bool,
    progress: bool,
    max_tokens: int,
    overlap: int,
    tokenizer: str | None,
    batch_size: int,
    urls: Path | str | None,
) -> IngestReport:
    started = time.perf_counter()
    skipped: list[str] = []
    documents = load_url_list(urls, path, skipped) if urls else load_folder(path, skipped)
    counter = TokenCounter(tokenizer or str(getattr(embedder, "tokenizer", BUILTIN_MODEL)))
    chunking: Chunking = {"max_tokens": max_tokens, "overlap": overlap, "tokenizer": counter.name}
    previous = _current(index_dir)
    reuse = not rebuild and previous is not None and _compatible(previous, embedder, chunking)
    plan = _plan(documents, previous, chunking, counter, reuse=reuse)
    if not plan.chunks:
        raise ValueError(f"the documents under {path} contain no text to index")
    ids = {doc.id for doc in documents}
    removed = 0 if previous is None else len(set(previous.manifest.documents) - ids)
    fresh = [chunk for chunk, row in zip(plan.chunks, plan.rows, strict=True) if row is None]
    if reuse and previous and not fresh and not removed and plan.added == plan.changed == 0:
        version = previous.version  # nothing to do: replicas need not reload
    else:
        fresh_vectors = _embed(embedder, fresh, batch_size, progress)
        vectors = _assemble(plan, previous if reuse else None, fresh_vectors)
        written = VectorIndex.write(
            index_dir, plan.chunks, vectors, embedder.name, documents=documents, chunking=chunking
        )
        version = written.version
    return IngestReport(
        documents=len(documents),
        chunks=len(plan.chunks),
        seconds=time.perf_counter() - started,
        added=plan.added,
        changed=plan.changed,
        unchanged=plan.unchanged,
        removed=removed,
        embedded=len(fresh),
        rebuilt=not reuse,
        version=version,
        skipped=tuple(skipped),
    )


def _current(index_dir: Path) -> VectorIndex | None:
    """The live index (to compare against and reuse from), None if there is none usable."""
    try:
        return VectorIndex.load(index_dir)
    except IndexNotFound:
        return None
    except IndexCorrupt as exc:
        log.warning("rebuilding the whole index: the current one is unusable (%s)", exc)
        return None


def _compatible(previous: VectorIndex, embedder: Embedder, chunking: Chunking) -> bool:
    """Whether `previous`'s chunks and embeddings are what this ingest would produce."""
    manifest = previous.manifest
    if manifest.embedding_model != embedder.name:
        log.info("rebuilding the whole index: the embedding model changed")
        return False
    if manifest.chunking != chunking:
        log.info("rebuilding the whole index: chunking changed to %s", chunking)
        return False
    return True


def _plan(
    documents: Sequence[Document],
    previous: VectorIndex | None,
    chunking: Chunking,
    counter: TokenCounter,
    *,
    reuse: bool,
) -> _Plan:
    old_rows: dict[str, list[int]] = {}
    for row, chunk in enumerate(previous.chunks if previous else ()):
        old_rows.setdefault(chunk.doc_id, []).append(row)
    known = previous.manifest.documents if previous else {}
    plan = _Plan(chunks=[], rows=[])
    for doc in documents:
        entry = known.get(doc.id)
        rows = old_rows.get(doc.id, [])
        same = entry is not None and entry.sha256 == content_hash(doc)
        # A chunk count that disagrees with the manifest means an inconsistent index: redo it.
        if same and reuse and previous is not None and entry and entry.chunks == len(rows):
            plan.unchanged += 1
            plan.chunks.extend(previous.chunks[row] for row in rows)
            plan.rows.extend(rows)
            continue
        if same:
            plan.unchanged += 1
        elif entry is None:
            plan.added += 1
        else:
            plan.changed += 1
        chunks = chunk_document(
            doc, int(chunking["max_tokens"]), int(chunking["overlap"]), counter=counter
        )
        plan.chunks.extend(chunks)
        plan.rows.extend([None] * len(chunks))
    return plan


def _embed(
    embedder: Embedder, chunks: Sequence[Chunk], batch_size: int, progress: bool
) -> npt.NDArray[np.float32] | None:
    if not chunks:
        return None  # no model load when every document is unchanged
    embedder.warm_up()
    # Batches here (not only inside the embedder) so the progress bar moves during long runs.
    batches = []
    with tqdm(total=len(chunks), desc="Embedding", unit="chunk", disable=not progress) as bar:
        for start in range(0, len(chunks), batch_size):
            texts = [chunk.text for chunk in chunks[start : start + batch_size]]
            batches.append(embedder.embed(texts))
            bar.update(len(texts))
    return np.concatenate(batches).astype(np.float32, copy=False)


def _assemble(
    plan: _Plan, previous: VectorIndex | None, fresh: npt.NDArray[np.float32] | None
) -> npt.NDArray[np.float32]:
    """The embedding matrix in chunk order: reused rows from `previous`, the rest `fresh`."""
    if fresh is None:
        assert previous is not None  # no fresh chunks means every chunk was reused
        return previous.embeddings[[row for row in plan.rows if row is not None]]
    if previous is None:
        return fresh
    if fresh.shape[1] != previous.manifest.dim:
        raise ValueError(
            f"{fresh.shape[1]}-dimensional embeddings cannot join an index of "
            f"{previous.manifest.dim}; ingest with rebuild=True"
        )
    vectors = np.empty((len(plan.chunks), fresh.shape[1]), dtype=np.float32)
    new = [i for i, row in enumerate(plan.rows) if row is None]
    old = [(i, row) for i, row in enumerate(plan.rows) if row is not None]
    vectors[new] = fresh
    vectors[[i for i, _ in old]] = previous.embeddings[[row for _, row in old]]
    return vectors
