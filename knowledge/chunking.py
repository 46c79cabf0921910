"""Split documents into retrieval-sized chunks that keep their heading context."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from knowledge.loaders import Document

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
# Split points keep the separator so a split paragraph can be glued back unchanged.
_SENTENCE_BREAK = re.compile(r"((?<=[.!?])\s+|\n+)")
_WORD_BREAK = re.compile(r"(\s+)")
HEADING_SEPARATOR = " > "
CONTEXT_SEPARATOR = " — "


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: `heading` is its heading path ("Returns > Refund timing"), and
    `text` starts with the title and headings so the embedding sees that context too."""

    id: str
    doc_id: str
    title: str
    source: str
    heading: str
    text: str


def chunk_document(doc: Document, max_chars: int = 1000, overlap: int = 150) -> list[Chunk]:
    """Split `doc` on headings, then paragraphs, and pack paragraphs into chunks of at most
    `max_chars` characters (context line included). A paragraph that does not fit is split on
    sentence, then word boundaries, each piece repeating up to `overlap` characters of the last."""
    if max_chars <= 0 or not 0 <= overlap < max_chars:
        raise ValueError(
            f"need max_chars > 0 and 0 <= overlap < max_chars, got {max_chars=}, {overlap=}"
        )
    # Plain text and PDF text are not Markdown: a line starting with "#" is not a heading.
    markdown = not doc.source.lower().endswith((".txt", ".pdf"))
    chunks: list[Chunk] = []
    for path, body in _sections(doc.text, markdown=markdown):
        context = _context_line(doc.title, path)
        # The context line counts against max_chars, but never squeezes the body to nothing.
        budget = max(max_chars - len(context) - 2, max_chars // 2)
        for text in _pack(_paragraphs(body), budget, min(overlap, budget // 2)):
            chunks.append(
                Chunk(
                    id=f"{doc.id}:{len(chunks):04d}",
                    doc_id=doc.id,
                    title=doc.title,
                    source=doc.source,
                    heading=HEADING_SEPARATOR.join(path),
                    text=f"{context}\n\n{text}",
                )
            )
    return chunks


def _sections(text: str, *, markdown: bool) -> Iterator[tuple[tuple[str, ...], str]]:
    """Yield (heading path, body) for each heading section; fenced code is never a heading."""
    stack: list[tuple[int, str]] = []
    lines: list[str] = []
    in_fence = False
    for line in text.splitlines():
        if markdown and _FENCE.match(line):
            in_fence = not in_fence
        heading = _HEADING.match(line) if markdown and not in_fence else None
        if heading is None:
            lines.append(line)
            continue
        yield tuple(title for _, title in stack), "\n".join(lines)
        level = len(heading.group(1))
        stack = [(lvl, title) for lvl, title in stack if lvl < level]
        stack.append((level, heading.group(2)))
        lines = []
    yield tuple(title for _, title in stack), "\n".join(lines)


def _context_line(title: str, path: tuple[str, ...]) -> str:
    # The first heading is usually the title itself; repeating it only dilutes the embedding.
    parts = list(path[1:] if path and path[0] == title else path)
    return CONTEXT_SEPARATOR.join([title, *parts])


def _paragraphs(body: str) -> list[str]:
    return [p.strip() for p in _PARAGRAPH_BREAK.split(body) if p.strip()]


def _pack(paragraphs: list[str], budget: int, overlap: int) -> list[str]:
    """Greedily join paragraphs (split first if too long) into pieces of at most `budget`."""
    pieces = [
        piece
        for paragraph in paragraphs
        for piece in (
            [paragraph] if len(paragraph) <= budget else _split_long(paragraph, budget, overlap)
        )
    ]
    packed: list[str] = []
    for piece in pieces:
        if packed and len(packed[-1]) + 2 + len(piece) <= budget:
            packed[-1] = f"{packed[-1]}\n\n{piece}"
        else:
            packed.append(piece)
    return packed


def _split_long(text: str, budget: int, overlap: int) -> list[str]:
    """Split one paragraph on sentences (words, then characters, as fallbacks)."""
    units = [
        word
        for sentence in _units(text, _SENTENCE_BREAK)
        for word in ([sentence] if len(sentence) <= budget else _units(sentence, _WORD_BREAK))
    ]
    units = [unit[i : i + budget] for unit in units for i in range(0, len(unit), budget)]
    pieces: list[str] = []
    current = ""
    for unit in units:
        if current.strip() and len((current + unit).strip()) > budget:
            pieces.append(current.strip())
            current = _tail(pieces[-1], overlap, budget - len(unit.rstrip()))
        current += unit
    if current.strip():
        pieces.append(current.strip())
    return pieces


def _units(text: str, pattern: re.Pattern[str]) -> list[str]:
    """Split on `pattern`, each unit keeping the separator that followed it."""
    parts = pattern.split(text)
    return [part + sep for part, sep in zip(parts[::2], [*parts[1::2], ""], strict=True) if part]


def _tail(piece: str, overlap: int, room: int) -> str:
    """The last `overlap` characters of `piece` (fewer if `room` is short), starting at a word."""
    size = min(overlap, room - 1)
    if size <= 0:
        return ""
    tail = piece[-size:]
    if len(piece) > size and not piece[-size - 1].isspace():
        # Drop the partial first word: overlap should repeat whole words only.
        tail = re.split(r"\s", tail, maxsplit=1)[-1] if re.search(r"\s", tail) else ""
    return f"{tail.strip()} " if tail.strip() else ""
