"""Split documents into retrieval-sized chunks that keep their heading context."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from langchain_text_splitters import RecursiveCharacterTextSplitter

from knowledge.embeddings import BUILTIN_MODEL, BUILTIN_NAME, builtin_model_path
from knowledge.loaders import Document

if TYPE_CHECKING:
    from tokenizers import Tokenizer

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
# Inside a section: paragraphs, then lines, then sentences, then words, then characters.
_SEPARATORS = [r"\n[ \t]*\n", r"\n", r"(?<=[.!?])\s+", r"\s+", ""]
HEADING_SEPARATOR = " > "
CONTEXT_SEPARATOR = " — "
# all-MiniLM-L6-v2 reads at most 256 word pieces, [CLS] and [SEP] included: a chunk of 224
# leaves room for them and for tokenizers that count a little differently.
DEFAULT_MAX_TOKENS = 224
DEFAULT_OVERLAP_TOKENS = 32


class TokenCounter:
    """Counts a text's tokens with the embedding model's own tokenizer (no special tokens).

    `tokenizer` is "builtin" (the packaged all-MiniLM-L6-v2), a local model folder holding a
    `tokenizer.json`, or a Hugging Face hub id (deployments with network access only). The
    tokenizer loads on first use; counting needs no model weights.
    """

    def __init__(self, tokenizer: str = BUILTIN_MODEL) -> None:
        self.tokenizer = tokenizer
        self._loaded: Tokenizer | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return BUILTIN_NAME if self.tokenizer == BUILTIN_MODEL else self.tokenizer

    def __call__(self, text: str) -> int:
        return len(self._tokenizer().encode(text, add_special_tokens=False).ids)

    def _tokenizer(self) -> Tokenizer:
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = _load_tokenizer(self.tokenizer)
        return self._loaded


def _load_tokenizer(tokenizer: str) -> Tokenizer:
    from tokenizers import Tokenizer

    folder = builtin_model_path() if tokenizer == BUILTIN_MODEL else Path(tokenizer)
    if folder.is_dir():
        file = folder / "tokenizer.json"
        if not file.is_file():
            raise FileNotFoundError(f"{folder} has no tokenizer.json to count chunk tokens with")
        loaded = Tokenizer.from_file(str(file))
    else:
        loaded = Tokenizer.from_pretrained(tokenizer)
    # The file may carry the model's truncation (128 for MiniLM): counting must see it all.
    loaded.no_truncation()
    loaded.no_padding()
    return loaded


@cache
def default_counter() -> TokenCounter:
    """The packaged MiniLM's tokenizer, shared (it is thread-safe and loads once)."""
    return TokenCounter()


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


def chunk_document(
    doc: Document,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    overlap: int = DEFAULT_OVERLAP_TOKENS,
    counter: Callable[[str], int] | None = None,
) -> list[Chunk]:
    """Split `doc` on headings first, then each section with LangChain's recursive splitter:
    paragraphs, lines, sentences, words, measured in the embedding model's tokens.

    Each chunk holds at most `max_tokens` tokens, its context line (title and heading path)
    included, and repeats up to `overlap` tokens of the chunk before it when a section needs
    more than one. `counter` counts tokens (default: the packaged MiniLM tokenizer).
    """
    if max_tokens <= 0 or not 0 <= overlap < max_tokens:
        raise ValueError(
            f"need max_tokens > 0 and 0 <= overlap < max_tokens, got {max_tokens=}, {overlap=}"
        )
    count = counter or default_counter()
    # Plain text and PDF text are not Markdown: a line starting with "#" is not a heading.
    markdown = not doc.source.lower().endswith((".txt", ".pdf"))
    chunks: list[Chunk] = []
    for path, body in _sections(doc.text, markdown=markdown):
        if not body.strip():
            continue
        context = _context_line(doc.title, path)
        # The context line counts against max_tokens, but never squeezes the body to nothing.
        budget = max(max_tokens - count(context) - 1, max_tokens // 2)
        for text in _split(body, budget, min(overlap, budget // 2), count):
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


def _split(body: str, budget: int, overlap: int, count: Callable[[str], int]) -> list[str]:
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=budget,
        chunk_overlap=overlap,
        length_function=count,
        separators=_SEPARATORS,
        is_separator_regex=True,
        keep_separator="end",
    )
    # Paragraph breaks inside a chunk come out as one blank line, whatever spacing they had.
    return [_PARAGRAPH_BREAK.sub("\n\n", piece) for piece in splitter.split_text(body.strip())]
