"""Read help-center documents (Markdown and plain text) from a folder into `Document`s."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

SUPPORTED_SUFFIXES = frozenset({".md", ".markdown", ".txt"})
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})

_H1 = re.compile(r"^#[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
# Help-center exports (Jekyll, Hugo, Docusaurus...) often start with YAML front matter.
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)---[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_MATTER_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class Document:
    """One source document: `source` is its path relative to the folder that was loaded."""

    id: str
    title: str
    source: str
    text: str


def document_id(source: str) -> str:
    """A stable id for a document: derived from its relative path, not its content, so an
    edited article keeps its id across re-ingests."""
    return hashlib.sha1(source.encode("utf-8")).hexdigest()[:16]


def readable_stem(path: Path) -> str:
    """`refund-policy_v2.md` -> `Refund policy v2`."""
    words = re.sub(r"[-_\s]+", " ", path.stem).strip()
    return words[:1].upper() + words[1:] if words else path.name


def load_file(path: Path | str, root: Path | str) -> Document:
    """Load one `.md`, `.markdown` or `.txt` file; `root` is the folder `source` is relative to."""
    path, root = Path(path), Path(root)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise ValueError(f"{path}: unsupported document type {suffix!r} (supported: {supported})")
    try:
        # utf-8-sig drops the byte-order mark some Windows editors write.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path}: not valid UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc
    # abspath, not resolve(): a symlinked file inside the folder keeps its in-folder name.
    source = Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    title = None
    if suffix in MARKDOWN_SUFFIXES:
        text, title = _split_front_matter(text)
        heading = _H1.search(text)
        # A `# ` heading in the body wins over front matter: it is what readers see.
        if heading:
            title = heading.group(1)
    return Document(
        id=document_id(source), title=title or readable_stem(path), source=source, text=text
    )


def load_folder(path: Path | str) -> list[Document]:
    """Load every supported document under `path` (recursively, hidden files and folders
    skipped), sorted by relative path. A single supported file is accepted too."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"knowledge folder not found: {root}")
    if root.is_file():
        return [load_file(root, root.parent)]
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Pruning in place stops os.walk from descending into .git, .obsidian and the like.
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        files.extend(
            Path(dirpath, name)
            for name in filenames
            if not name.startswith(".") and Path(name).suffix.lower() in SUPPORTED_SUFFIXES
        )
    if not files:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise ValueError(f"no documents found under {root} (looked for {supported} files)")
    documents = [load_file(file, root) for file in files]
    return sorted(documents, key=lambda doc: doc.source)


def _split_front_matter(text: str) -> tuple[str, str | None]:
    """Remove a leading YAML front-matter block; return the rest and its `title:` if any."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return text, None
    title = _FRONT_MATTER_TITLE.search(match.group(1))
    value = title.group(1).strip("'\"") if title else None
    return text[match.end() :], value or None
