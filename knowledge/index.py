"""The embedded on-disk vector index: chunks, their embeddings and a manifest in one folder.

A folder holds `chunks.jsonl`, `embeddings.npy` and `manifest.json`. Writes build a sibling
folder and swap it in with renames, so readers only ever see a complete index.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from knowledge.chunking import Chunk
from knowledge.loaders import Document
from knowledge.manifest import (
    INGEST_HINT,
    MANIFEST_FILE,
    EmbedderMismatch,
    IndexCorrupt,
    IndexManifest,
    IndexNotFound,
    corrupt,
    document_entries,
    read_manifest,
)

__all__ = ["EmbedderMismatch", "IndexCorrupt", "IndexNotFound", "VectorIndex"]

CHUNKS_FILE, EMBEDDINGS_FILE = "chunks.jsonl", "embeddings.npy"

log = logging.getLogger(__name__)


class VectorIndex:
    """Chunks and their L2-normalized embeddings in memory; cosine search by dot product."""

    def __init__(
        self, chunks: Sequence[Chunk], embeddings: npt.NDArray[np.float32], manifest: IndexManifest
    ) -> None:
        self.chunks = list(chunks)
        self.embeddings = embeddings
        self.manifest = manifest

    def __len__(self) -> int:
        return len(self.chunks)

    @classmethod
    def write(
        cls,
        directory: Path | str,
        chunks: Sequence[Chunk],
        embeddings: npt.ArrayLike,
        embedder_name: str,
        *,
        documents: Iterable[Document] = (),
    ) -> VectorIndex:
        """Write an index to `directory`, replacing any previous one only once complete."""
        directory = Path(directory).absolute()
        vectors = _checked(chunks, embeddings)
        manifest = IndexManifest(
            embedding_model=embedder_name,
            dim=int(vectors.shape[1]),
            chunk_count=len(chunks),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            documents=document_entries(chunks, documents),
        )
        _check_replaceable(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.new-", dir=directory.parent))
        try:
            _write_file(
                staging / CHUNKS_FILE,
                "".join(
                    json.dumps(asdict(chunk), ensure_ascii=False) + "\n" for chunk in chunks
                ).encode("utf-8"),
            )
            with open(staging / EMBEDDINGS_FILE, "wb") as out:
                np.save(out, vectors, allow_pickle=False)
                out.flush()
                os.fsync(out.fileno())
            _write_file(staging / MANIFEST_FILE, json.dumps(asdict(manifest), indent=2).encode())
            _swap_in(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return cls(chunks, vectors, manifest)

    @classmethod
    def load(cls, directory: Path | str, *, embedder_name: str | None = None) -> VectorIndex:
        """Read an index; refuse it if `embedder_name` is given and differs from its model."""
        directory = _locate(Path(directory).absolute())
        manifest = read_manifest(directory)
        if embedder_name is not None and embedder_name != manifest.embedding_model:
            raise EmbedderMismatch(
                f"the index at {directory} was built with embedding model "
                f"{manifest.embedding_model!r}, but queries would be embedded with "
                f"{embedder_name!r}; re-run `switchboard kb ingest PATH` with the same model"
            )
        try:
            with open(directory / CHUNKS_FILE, encoding="utf-8") as lines:
                chunks = [Chunk(**json.loads(line)) for line in lines if line.strip()]
            vectors = np.load(directory / EMBEDDINGS_FILE, allow_pickle=False)
        except (OSError, ValueError, TypeError) as exc:
            raise corrupt(directory, str(exc)) from exc
        expected = (manifest.chunk_count, manifest.dim)
        if len(chunks) != manifest.chunk_count or vectors.shape != expected:
            raise corrupt(
                directory,
                f"{len(chunks)} chunks and embeddings of shape "
                f"{vectors.shape}, but the manifest says {expected}",
            )
        return cls(chunks, vectors.astype(np.float32, copy=False), manifest)

    def search(
        self, query_vec: npt.ArrayLike, k: int, min_score: float = -1.0
    ) -> list[tuple[Chunk, float]]:
        """The `k` chunks most similar to `query_vec` (normalized), best first."""
        query = np.asarray(query_vec, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.manifest.dim:
            raise ValueError(
                f"query has {query.shape[0]} dimensions, index has {self.manifest.dim}"
            )
        if k <= 0 or not self.chunks:
            return []
        scores = self.embeddings @ query
        k = min(k, len(scores))
        # argpartition is O(n); only the k winners get sorted (score desc, then index asc).
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]
        return [(self.chunks[i], float(scores[i])) for i in top if scores[i] >= min_score]


def _checked(chunks: Sequence[Chunk], embeddings: npt.ArrayLike) -> npt.NDArray[np.float32]:
    vectors = np.asarray(embeddings, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(chunks) or vectors.shape[1] == 0:
        raise ValueError(f"embeddings of shape {vectors.shape} do not fit {len(chunks)} chunks")
    if not np.isfinite(vectors).all():
        raise ValueError("embeddings contain NaN or infinite values")
    if len({chunk.id for chunk in chunks}) != len(chunks):
        raise ValueError("chunk ids are not unique")
    return vectors


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _check_replaceable(directory: Path) -> None:
    # The swap deletes what was there: never let a mistyped path wipe an unrelated folder.
    foreign = directory.exists() and not (directory / MANIFEST_FILE).is_file()
    if foreign and (not directory.is_dir() or any(directory.iterdir())):
        raise ValueError(
            f"{directory} exists and is not a knowledge index; "
            "choose an empty or new folder for the index"
        )


def _swap_in(staging: Path, directory: Path) -> None:
    """Replace `directory` with `staging`: old aside, new in, old deleted.

    Two renames are not one atomic step: a crash between them leaves only the retired
    folder, which `_locate` falls back to, so the previous index keeps serving.
    """
    retired = None
    if directory.exists():
        retired = directory.with_name(f".{directory.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(directory, retired)
    try:
        os.rename(staging, directory)
    except BaseException:
        if retired is not None:
            os.rename(retired, directory)
        raise
    # Also sweeps folders retired by an earlier interrupted swap: this index supersedes them.
    for leftover in directory.parent.glob(f".{directory.name}.old-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _locate(directory: Path) -> Path:
    if directory.is_dir():
        return directory
    retired = sorted(
        directory.parent.glob(f".{directory.name}.old-*"), key=lambda p: p.stat().st_mtime
    )
    if retired and (retired[-1] / MANIFEST_FILE).is_file():
        log.warning("index swap at %s was interrupted; serving %s", directory, retired[-1])
        return retired[-1]
    raise IndexNotFound(f"no knowledge index at {directory}: {INGEST_HINT}")
