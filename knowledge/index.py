"""The embedded on-disk vector index: chunks, their embeddings and a manifest in one folder.

Every write is a new version, `versions/<id>/` with `chunks.jsonl`, `embeddings.npy` and a
copy of the manifest. The top-level `manifest.json` is the pointer to the live version: it is
written last and switched with one `os.replace`, so readers (several replicas may share the
folder) see the old version or the new one, never a half-written one, and a crash mid-write
leaves the previous version serving. Retired versions are deleted once they are older than
the last `KEEP_VERSIONS` and were retired more than `GRACE_SECONDS` ago, so a replica that
read the pointer just before a switch can still load the files it names.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
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

__all__ = [
    "EmbedderMismatch",
    "IndexCorrupt",
    "IndexNotFound",
    "VectorIndex",
    "current_version",
]

CHUNKS_FILE, EMBEDDINGS_FILE = "chunks.jsonl", "embeddings.npy"
VERSIONS_DIR = "versions"
KEEP_VERSIONS = 2
GRACE_SECONDS = 120.0
_STAGING = ".tmp-"
_POINTER_STAGING = f".{MANIFEST_FILE}{_STAGING}"
_LOAD_ATTEMPTS = 3
_VERSION_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]*")

log = logging.getLogger(__name__)


def current_version(directory: Path | str) -> str | None:
    """The live version of the index in `directory`: one file read, no chunks or embeddings.

    None if there is no index yet; "" for a format-1 index, which has no versions. Raises
    `IndexCorrupt` if the pointer can't be read.
    """
    path = Path(directory) / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise corrupt(Path(directory), f"unreadable {MANIFEST_FILE}: {exc}") from exc
    version = data.get("version", "") if isinstance(data, dict) else None
    if not isinstance(version, str):
        raise corrupt(Path(directory), f"{MANIFEST_FILE} has no valid version")
    return version


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

    @property
    def version(self) -> str:
        """The version this index was loaded from or written as ("" for a format-1 index)."""
        return self.manifest.version

    @classmethod
    def write(
        cls,
        directory: Path | str,
        chunks: Sequence[Chunk],
        embeddings: npt.ArrayLike,
        embedder_name: str,
        *,
        documents: Iterable[Document] = (),
        chunking: Mapping[str, int | str] | None = None,
    ) -> VectorIndex:
        """Write a new version into `directory` and make it the live one once complete."""
        directory = Path(directory).absolute()
        vectors = _checked(chunks, embeddings)
        _check_replaceable(directory)
        version = _new_version_id()
        manifest = IndexManifest(
            embedding_model=embedder_name,
            dim=int(vectors.shape[1]),
            chunk_count=len(chunks),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            documents=document_entries(chunks, documents),
            version=version,
            chunking=dict(chunking or {}),
        )
        manifest_bytes = json.dumps(asdict(manifest), indent=2).encode()
        versions = directory / VERSIONS_DIR
        versions.mkdir(parents=True, exist_ok=True)
        staging = versions / f"{_STAGING}{version}"
        staging.mkdir()
        try:
            _write_version(staging, chunks, vectors, manifest_bytes)
            os.rename(staging, versions / version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _fsync_dir(versions)
        _publish(directory, version, manifest_bytes)
        _prune(directory, version)
        return cls(chunks, vectors, manifest)

    @classmethod
    def load(cls, directory: Path | str, *, embedder_name: str | None = None) -> VectorIndex:
        """Read the live version; refuse it if `embedder_name` is given and differs from its
        model."""
        directory = Path(directory).absolute()
        for attempt in range(_LOAD_ATTEMPTS):
            located = _locate(directory)
            manifest = read_manifest(located)
            if embedder_name is not None and embedder_name != manifest.embedding_model:
                raise EmbedderMismatch(
                    f"the index at {directory} was built with embedding model "
                    f"{manifest.embedding_model!r}, but queries would be embedded with "
                    f"{embedder_name!r}; re-run `switchboard kb ingest PATH` with the same model"
                )
            try:
                return cls._read(_version_dir(located, manifest.version), manifest)
            except IndexCorrupt:
                # Its files may have been pruned after we read the pointer, which happens only
                # once newer versions went live: read the pointer again. Else it is broken.
                moved = current_version(located) != manifest.version
                if not moved or attempt == _LOAD_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _read(cls, directory: Path, manifest: IndexManifest) -> VectorIndex:
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


def _write_version(
    folder: Path, chunks: Sequence[Chunk], vectors: npt.NDArray[np.float32], manifest: bytes
) -> None:
    lines = "".join(json.dumps(asdict(chunk), ensure_ascii=False) + "\n" for chunk in chunks)
    _write_file(folder / CHUNKS_FILE, lines.encode("utf-8"))
    with open(folder / EMBEDDINGS_FILE, "wb") as out:
        np.save(out, vectors, allow_pickle=False)
        out.flush()
        os.fsync(out.fileno())
    _write_file(folder / MANIFEST_FILE, manifest)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    # Makes the renames inside `folder` durable: after a power cut the pointer never names a
    # version whose folder entry was lost. Not every platform can open a directory.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_version_id() -> str:
    # Sorts by creation time (microseconds); the suffix keeps two writers apart.
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


def _version_dir(directory: Path, version: str) -> Path:
    if not version:
        return directory  # format 1: the files sit beside the manifest
    if not _VERSION_ID.fullmatch(version):
        raise corrupt(directory, f"{MANIFEST_FILE} names an invalid version {version!r}")
    return directory / VERSIONS_DIR / version


def _publish(directory: Path, version: str, manifest: bytes) -> None:
    """Make `version` live: the one atomic step of a write."""
    pointer = directory / f"{_POINTER_STAGING}{version}"
    try:
        _write_file(pointer, manifest)
        os.replace(pointer, directory / MANIFEST_FILE)
    except BaseException:
        pointer.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)


def _prune(directory: Path, live: str) -> None:
    """Delete versions older than the last `KEEP_VERSIONS` once retired for `GRACE_SECONDS`,
    and staging folders left by crashed writers. Versions newer than `live` belong to a
    concurrent writer and are never touched."""
    now = time.time()
    versions = directory / VERSIONS_DIR
    folders = sorted(p for p in versions.iterdir() if _VERSION_ID.fullmatch(p.name))
    older = [p for p in folders if p.name < live]
    # A version was retired when its successor was written.
    retired = list(zip(older, [*older[1:], versions / live][: len(older)], strict=True))
    for folder, successor in retired[: max(len(retired) - (KEEP_VERSIONS - 1), 0)]:
        if now - _mtime(successor) > GRACE_SECONDS:
            shutil.rmtree(folder, ignore_errors=True)
    for staging in versions.glob(f"{_STAGING}*"):
        if now - _mtime(staging) > GRACE_SECONDS:
            shutil.rmtree(staging, ignore_errors=True)
    for pointer in directory.glob(f"{_POINTER_STAGING}*"):
        if now - _mtime(pointer) > GRACE_SECONDS:
            pointer.unlink(missing_ok=True)
    # Files of a format-1 index and folders retired by its interrupted swaps are superseded.
    for name in (CHUNKS_FILE, EMBEDDINGS_FILE):
        (directory / name).unlink(missing_ok=True)
    for leftover in directory.parent.glob(f".{directory.name}.old-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0  # deleted meanwhile by another writer's prune


def _check_replaceable(directory: Path) -> None:
    # A write deletes old versions: never let a mistyped path wipe an unrelated folder. A
    # folder holding only what a write starts with is an index whose first write crashed.
    if not directory.exists() or (directory / MANIFEST_FILE).is_file():
        return
    if directory.is_dir() and all(
        p.name == VERSIONS_DIR or p.name.startswith(_POINTER_STAGING) for p in directory.iterdir()
    ):
        return
    raise ValueError(
        f"{directory} exists and is not a knowledge index; "
        "choose an empty or new folder for the index"
    )


def _locate(directory: Path) -> Path:
    if (directory / MANIFEST_FILE).is_file() or directory.is_dir():
        return directory
    # A format-1 index whose swap (rename old aside, new in) was interrupted by a crash.
    retired = sorted(
        directory.parent.glob(f".{directory.name}.old-*"), key=lambda p: p.stat().st_mtime
    )
    if retired and (retired[-1] / MANIFEST_FILE).is_file():
        log.warning("index swap at %s was interrupted; serving %s", directory, retired[-1])
        return retired[-1]
    raise IndexNotFound(f"no knowledge index at {directory}: {INGEST_HINT}")
