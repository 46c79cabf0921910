"""The index manifest (`manifest.json`) and the errors raised when an index can't be used."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot.errors import ConfigError
from knowledge.chunking import Chunk
from knowledge.loaders import Document

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
INGEST_HINT = "run `switchboard kb ingest PATH` first"


class IndexNotFound(ConfigError, FileNotFoundError):
    """There is no index in the folder (nothing ingested yet)."""

    code = "index_missing"


class IndexCorrupt(ConfigError, ValueError):
    """The index folder exists but cannot be read back consistently."""

    code = "index_corrupt"


class EmbedderMismatch(ConfigError, ValueError):
    """The index was built with another embedding model than the one asked to query it."""

    code = "index_model_mismatch"


@dataclass(frozen=True)
class IndexedDocument:
    """What the manifest records per document; `sha256` of its text lets re-ingests skip it."""

    source: str
    title: str
    sha256: str | None
    chunks: int


@dataclass(frozen=True)
class IndexManifest:
    """The index's `manifest.json`, written last so a folder with one is complete."""

    embedding_model: str
    dim: int
    chunk_count: int
    created: str
    documents: dict[str, IndexedDocument] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_json(cls, data: dict[str, object]) -> IndexManifest:
        raw_docs = data.get("documents", {})
        if not isinstance(raw_docs, dict):
            raise TypeError("documents is not an object")
        docs = {str(k): IndexedDocument(**v) for k, v in raw_docs.items()}
        fields = {k: v for k, v in data.items() if k != "documents"}
        return cls(**fields, documents=docs)  # type: ignore[arg-type]


def document_entries(
    chunks: Sequence[Chunk], documents: Iterable[Document]
) -> dict[str, IndexedDocument]:
    """The manifest's per-document entries: source, title, content sha256, chunk count."""
    hashes = {doc.id: hashlib.sha256(doc.text.encode("utf-8")).hexdigest() for doc in documents}
    counts: dict[str, int] = {}
    for chunk in chunks:
        counts[chunk.doc_id] = counts.get(chunk.doc_id, 0) + 1
    first = {chunk.doc_id: chunk for chunk in reversed(chunks)}
    return {
        doc_id: IndexedDocument(first[doc_id].source, first[doc_id].title, hashes.get(doc_id), n)
        for doc_id, n in counts.items()
    }


def read_manifest(directory: Path) -> IndexManifest:
    """Read and check `manifest.json`; missing means never ingested, unreadable is corrupt."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise IndexNotFound(
            f"no knowledge index at {directory} (no {MANIFEST_FILE}): {INGEST_HINT}"
        )
    try:
        manifest = IndexManifest.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise corrupt(directory, f"unreadable {MANIFEST_FILE}: {exc}") from exc
    if manifest.format_version != FORMAT_VERSION:
        raise corrupt(
            directory,
            f"format version {manifest.format_version}, this version of "
            f"Switchboard reads {FORMAT_VERSION}",
        )
    return manifest


def corrupt(directory: Path, reason: str) -> IndexCorrupt:
    """The error for an index that exists but can't be used, with the way out."""
    return IndexCorrupt(
        f"the knowledge index at {directory} is unusable ({reason}): "
        f"{INGEST_HINT.replace('first', 'again')}"
    )
