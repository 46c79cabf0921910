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

# 2: chunks live in `versions/<version>/`; 1 (still readable): chunks beside the manifest.
FORMAT_VERSION = 2
READABLE_FORMATS = frozenset({1, 2})
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
    """What the manifest records per document; `sha256` (see `content_hash`) lets re-ingests
    reuse its chunks and embeddings when the document has not changed."""

    source: str
    title: str
    sha256: str | None
    chunks: int


@dataclass(frozen=True)
class IndexManifest:
    """The index's `manifest.json`, written last so a folder with one is complete.

    The top-level copy is also the pointer to the live version: `version` names the folder
    under `versions/` holding its chunks (empty for a format-1 index, whose chunks sit beside
    the manifest). `chunking` records the parameters the chunks were cut with, so a re-ingest
    with other parameters re-chunks everything.
    """

    embedding_model: str
    dim: int
    chunk_count: int
    created: str
    documents: dict[str, IndexedDocument] = field(default_factory=dict)
    version: str = ""
    chunking: dict[str, int | str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_json(cls, data: dict[str, object]) -> IndexManifest:
        raw_docs = data.get("documents", {})
        if not isinstance(raw_docs, dict):
            raise TypeError("documents is not an object")
        docs = {str(k): IndexedDocument(**v) for k, v in raw_docs.items()}
        fields = {k: v for k, v in data.items() if k != "documents"}
        return cls(**fields, documents=docs)  # type: ignore[arg-type]


def content_hash(doc: Document) -> str:
    """The sha256 of what a document's chunks are made of: its title and its text (the title
    can come from front matter, which is not part of `text`). The id stands for the source."""
    return hashlib.sha256(f"{doc.title}\0{doc.text}".encode()).hexdigest()


def document_entries(
    chunks: Sequence[Chunk], documents: Iterable[Document]
) -> dict[str, IndexedDocument]:
    """The manifest's per-document entries: source, title, content hash, chunk count.

    Documents without chunks (blank ones) are listed too, so re-ingests see them as unchanged.
    """
    counts: dict[str, int] = {}
    for chunk in chunks:
        counts[chunk.doc_id] = counts.get(chunk.doc_id, 0) + 1
    entries = {
        doc.id: IndexedDocument(doc.source, doc.title, content_hash(doc), counts.get(doc.id, 0))
        for doc in documents
    }
    for chunk in chunks:
        if chunk.doc_id not in entries:
            entries[chunk.doc_id] = IndexedDocument(
                chunk.source, chunk.title, None, counts[chunk.doc_id]
            )
    return entries


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
    if manifest.format_version not in READABLE_FORMATS:
        raise corrupt(
            directory,
            f"format version {manifest.format_version}, this version of "
            f"Switchboard reads {' and '.join(map(str, sorted(READABLE_FORMATS)))}",
        )
    return manifest


def corrupt(directory: Path, reason: str) -> IndexCorrupt:
    """The error for an index that exists but can't be used, with the way out."""
    return IndexCorrupt(
        f"the knowledge index at {directory} is unusable ({reason}): "
        f"{INGEST_HINT.replace('first', 'again')}"
    )
